// Parsing runtime options from text (see runtime_config.hpp).
#include "runtime/runtime_config.hpp"

#include "persistence/persistence_error.hpp"

#include <charconv>

namespace longhaul {

namespace {

caf::error bad(std::string_view key, std::string_view value, std::string_view expected) {
  return persistence::make_persistence_error(
    persistence::persistence_errc::invalid_argument,
    "option '" + std::string{key} + "': '" + std::string{value} + "' is not " + std::string{expected});
}

template <class T>
caf::error parse_number(std::string_view key, std::string_view value, T& out) {
  T tmp{};
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), tmp);
  if (ec != std::errc{} || end != value.data() + value.size())
    return bad(key, value, "a non-negative whole number");
  out = tmp;
  return {};
}

caf::error parse_ms(std::string_view key, std::string_view value, std::chrono::milliseconds& out) {
  std::uint64_t n = 0;
  if (auto err = parse_number(key, value, n))
    return err;
  out = std::chrono::milliseconds{static_cast<std::int64_t>(n)};
  return {};
}

caf::error parse_bool(std::string_view key, std::string_view value, bool& out) {
  if (value == "true" || value == "on" || value == "1")
    out = true;
  else if (value == "false" || value == "off" || value == "0")
    out = false;
  else
    return bad(key, value, "true or false");
  return {};
}

}  // namespace

caf::error set_option(runtime_config& cfg, std::string_view key, std::string_view value) {
  if (key == "storage") {
    if (value == "sqlite")
      cfg.storage = storage_kind::sqlite;
    else if (value == "memory")
      cfg.storage = storage_kind::memory;
    else
      return bad(key, value, "sqlite or memory");
    return {};
  }
  if (key == "database_path") {
    if (value.empty())
      return bad(key, value, "a file path");
    cfg.database_path = std::string{value};
    return {};
  }
  if (key == "sync") {
    auto mode = persistence::parse_sync_mode(value);
    if (!mode)
      return bad(key, value, "full, normal or off");
    cfg.sync = *mode;
    return {};
  }
  if (key == "log_level") {
    for (auto level : {"trace", "debug", "info", "warn", "error", "off"})
      if (value == level) {
        cfg.log_level = std::string{value};
        return {};
      }
    return bad(key, value, "trace, debug, info, warn, error or off");
  }
  if (key == "clock") {
    if (value == "real") {
      cfg.clock = std::make_shared<actors::real_clock>();
      return {};
    }
    if (value == "virtual") {
      cfg.clock = std::make_shared<actors::virtual_clock>();
      return {};
    }
    constexpr std::string_view prefix = "accelerated:";
    if (value.substr(0, prefix.size()) == prefix) {
      std::uint64_t factor = 0;
      auto rest = value.substr(prefix.size());
      auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), factor);
      if (ec == std::errc{} && end == rest.data() + rest.size() && factor > 0) {
        cfg.clock = std::make_shared<actors::accelerated_clock>(static_cast<double>(factor),
                                                                actors::real_clock{}.now());
        return {};
      }
    }
    return bad(key, value, "real, virtual or accelerated:<factor> (factor >= 1)");
  }
  if (key == "timer_window")
    return parse_number(key, value, cfg.timer_window);
  if (key == "cache_mb")
    return parse_number(key, value, cfg.cache_mb);
  if (key == "writer_cache_mb")
    return parse_number(key, value, cfg.writer_cache_mb);
  if (key == "snapshot_every")
    return parse_number(key, value, cfg.snapshot_every);
  if (key == "max_concurrent_recoveries")
    return parse_number(key, value, cfg.max_concurrent_recoveries);
  if (key == "remembered_streams")
    return parse_number(key, value, cfg.remembered_streams);
  if (key == "worker_threads")
    return parse_number(key, value, cfg.worker_threads);
  if (key == "scheduling") {
    if (value == "sharing")
      cfg.scheduling = worker_scheduling::sharing;
    else if (value == "work_stealing")
      cfg.scheduling = worker_scheduling::work_stealing;
    else
      return bad(key, value, "sharing or work_stealing");
    return {};
  }
  if (key == "yield_to_writer")
    return parse_bool(key, value, cfg.yield_to_writer);
  if (key == "sqlite_memory_status")
    return parse_bool(key, value, cfg.sqlite_memory_status);
  if (key == "reader_threads")
    return parse_number(key, value, cfg.reader_threads);
  if (key == "max_id_bytes")
    return parse_number(key, value, cfg.max_id_bytes);
  if (key == "passivate_after_ms")
    return parse_ms(key, value, cfg.passivate_after);
  if (key == "ask_timeout_ms")
    return parse_ms(key, value, cfg.ask_timeout);
  if (key == "stop_timeout_ms")
    return parse_ms(key, value, cfg.stop_timeout);
  return persistence::make_persistence_error(persistence::persistence_errc::invalid_argument,
                                             "unknown option '" + std::string{key} + "'");
}

}  // namespace longhaul
