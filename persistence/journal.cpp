// Backend-independent parts of the journal: input validation (run on the caller's
// thread before a write is queued) and the blocking write helper.
#include "persistence/journal.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <future>

namespace longhaul::persistence {

namespace {

/// A Boost.JSON parse handler that accepts everything: validating with it checks the
/// syntax (and nesting limits) without building a value tree, ~4x faster on the append
/// hot path than parsing into a boost::json::value.
struct null_handler {
  using ec_t = boost::json::error_code;
  using sv = boost::json::string_view;
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_array_begin(ec_t&) { return true; }
  bool on_array_end(std::size_t, ec_t&) { return true; }
  bool on_object_begin(ec_t&) { return true; }
  bool on_object_end(std::size_t, ec_t&) { return true; }
  bool on_string_part(sv, std::size_t, ec_t&) { return true; }
  bool on_string(sv, std::size_t, ec_t&) { return true; }
  bool on_key_part(sv, std::size_t, ec_t&) { return true; }
  bool on_key(sv, std::size_t, ec_t&) { return true; }
  bool on_number_part(sv, ec_t&) { return true; }
  bool on_int64(std::int64_t, sv, ec_t&) { return true; }
  bool on_uint64(std::uint64_t, sv, ec_t&) { return true; }
  bool on_double(double, sv, ec_t&) { return true; }
  bool on_bool(bool, ec_t&) { return true; }
  bool on_null(ec_t&) { return true; }
  bool on_comment_part(sv, ec_t&) { return true; }
  bool on_comment(sv, ec_t&) { return true; }
};

}  // namespace

bool is_valid_json(std::string_view text) noexcept {
  boost::json::basic_parser<null_handler> p{boost::json::parse_options{}};
  boost::json::error_code ec;
  auto n = p.write_some(false, text.data(), text.size(), ec);
  return !ec && n == text.size();
}

bool is_valid_utf8(std::string_view text) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    if (end - p >= 8) {  // ASCII, 8 bytes at a time
      std::uint64_t word;
      std::memcpy(&word, p, sizeof(word));
      if ((word & 0x8080808080808080ull) == 0) {
        p += 8;
        continue;
      }
    }
    auto c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::ptrdiff_t more = 0;  // continuation bytes
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      more = 1;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      more = 2;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      more = 3;
      cp = c & 0x07u;
    } else {
      return false;  // a continuation byte first, 0xC0/0xC1 (overlong), or above 0xF4
    }
    if (end - p <= more)
      return false;
    for (std::ptrdiff_t i = 1; i <= more; ++i) {
      if ((p[i] & 0xC0u) != 0x80u)
        return false;
      cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if (more == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
      return false;  // overlong, or a surrogate
    if (more == 3 && (cp < 0x10000 || cp > 0x10FFFF))
      return false;  // overlong, or above U+10FFFF
    p += more + 1;
  }
  return true;
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.reserve(out.size() + text.size() + 2);
  out += '"';
  std::size_t plain = 0;  // start of the run of bytes copied as they are
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    out.append(text.data() + plain, i - plain);
    plain = i + 1;
    out += '\\';
    switch (c) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '\b': out += 'b'; break;
      case '\f': out += 'f'; break;
      case '\n': out += 'n'; break;
      case '\r': out += 'r'; break;
      case '\t': out += 't'; break;
      default:
        out += "u00";
        out += hex[c >> 4];
        out += hex[c & 0xf];
    }
  }
  out.append(text.data() + plain, text.size() - plain);
  out += '"';
}

void append_json(std::string& out, const boost::json::value& v) {
  boost::json::serializer sr;
  sr.reset(&v);
  while (!sr.done()) {
    if (out.capacity() - out.size() < 256)
      out.reserve(out.capacity() * 2 + 256);
    auto used = out.size();
    out.resize(out.capacity());
    auto written = sr.read(out.data() + used, out.size() - used);
    out.resize(used + written.size());
  }
}

namespace {

caf::error check_name(std::string_view what, std::string_view name, std::size_t max) {
  if (name.empty())
    return make_persistence_error(persistence_errc::invalid_argument,
                                  std::string{what} + " must not be empty");
  if (name.size() > max)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  std::string{what} + " is " + std::to_string(name.size())
                                    + " bytes, limit " + std::to_string(max));
  return {};
}

/// A payload's JSON test. `serialized`: the text comes from a JSON serializer
/// (atomic_write::payloads_serialized), so its structure is right and only its UTF-8 can
/// be wrong.
bool json_ok(std::string_view json, bool serialized) {
  return serialized ? is_valid_utf8(json) : is_valid_json(json);
}

/// check_payload's test without its message: true if `json` passes.
bool payload_ok(std::string_view json, const write_limits& limits, bool serialized) {
  return json.size() <= limits.max_payload_bytes && json_ok(json, serialized);
}

caf::error check_payload(std::string_view what, std::string_view json,
                         const write_limits& limits, bool serialized) {
  if (json.size() > limits.max_payload_bytes)
    return make_persistence_error(persistence_errc::payload_too_large,
                                  std::string{what} + " is " + std::to_string(json.size())
                                    + " bytes, limit "
                                    + std::to_string(limits.max_payload_bytes));
  if (!json_ok(json, serialized))
    return make_persistence_error(persistence_errc::invalid_payload,
                                  std::string{what} + " is not valid JSON");
  return {};
}

}  // namespace

caf::error validate_write(const atomic_write& w, const write_limits& limits) {
  if (auto err = check_name("persistence id", w.persistence_id, limits.max_id_bytes))
    return err;
  if (w.expected_seq == 0)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "expected sequence number must be >= 1");
  if (w.new_stream && w.expected_seq != 1)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "a write for a new stream of '" + w.persistence_id
                                    + "' must expect sequence number 1");
  if (w.events.empty() && w.timers_to_set.empty() && w.timers_to_cancel.empty()
      && w.outbox.empty() && !w.processed_message_id && !w.cancel_all_timers)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "write for '" + w.persistence_id + "' stores nothing");
  for (std::size_t i = 0; i < w.events.size(); ++i) {
    const auto& ev = w.events[i];
    // Fast path: a valid event costs no message text; only a bad one builds it below.
    auto name_ok = [&](const std::string& s) {
      return !s.empty() && s.size() <= limits.max_name_bytes;
    };
    if (name_ok(ev.type) && ev.schema_version != 0
        && std::all_of(ev.tags.begin(), ev.tags.end(), name_ok)
        && payload_ok(ev.payload_json, limits, w.payloads_serialized))
      continue;
    auto what = "event " + std::to_string(i) + " of '" + w.persistence_id + "'";
    if (auto err = check_name(what + " type", ev.type, limits.max_name_bytes))
      return err;
    if (ev.schema_version == 0)
      return make_persistence_error(persistence_errc::invalid_argument,
                                    what + " has schema version 0 (versions start at 1)");
    for (const auto& tag : ev.tags)
      if (auto err = check_name(what + " tag", tag, limits.max_name_bytes))
        return err;
    if (auto err = check_payload(what + " payload (" + ev.type + ")", ev.payload_json, limits,
                                 w.payloads_serialized))
      return err;
  }
  for (const auto& t : w.timers_to_set) {
    if (auto err = check_name("timer name", t.name, limits.max_name_bytes))
      return err;
    if (t.due_ms < 0)
      return make_persistence_error(persistence_errc::invalid_argument,
                                    "timer '" + t.name + "' is due before the epoch");
    if (payload_ok(t.payload_json, limits, w.payloads_serialized))
      continue;  // a valid timer payload costs no message text
    if (auto err = check_payload("timer '" + t.name + "' payload", t.payload_json, limits,
                                 w.payloads_serialized))
      return err;
  }
  for (const auto& t : w.timers_to_cancel)
    if (auto err = check_name("cancelled timer name", t.name, limits.max_name_bytes))
      return err;
  for (const auto& m : w.outbox) {
    if (auto err = check_name("outbox message id", m.message_id, limits.max_name_bytes))
      return err;
    if (auto err = check_name("outbox destination", m.destination, limits.max_id_bytes))
      return err;
    if (payload_ok(m.payload_json, limits, w.payloads_serialized))
      continue;
    if (auto err = check_payload("outbox message '" + m.message_id + "' payload",
                                 m.payload_json, limits, w.payloads_serialized))
      return err;
  }
  if (w.processed_message_id)
    if (auto err = check_name("processed message id", *w.processed_message_id,
                              limits.max_name_bytes))
      return err;
  if (w.processed_rejection) {
    if (!w.processed_message_id)
      return make_persistence_error(persistence_errc::invalid_argument,
                                    "write for '" + w.persistence_id
                                      + "' has a processed rejection but no processed message id");
    if (w.processed_rejection->size() > limits.max_payload_bytes)
      return make_persistence_error(persistence_errc::payload_too_large,
                                    "processed rejection of '" + w.persistence_id + "' is "
                                      + std::to_string(w.processed_rejection->size())
                                      + " bytes, limit "
                                      + std::to_string(limits.max_payload_bytes));
  }
  return {};
}

caf::expected<std::optional<processed_message>>
journal::processed_outcome(std::string_view id, std::string_view message_id) {
  auto processed = is_processed(id, message_id);
  if (!processed)
    return processed.error();
  if (!*processed)
    return std::optional<processed_message>{};
  return std::optional<processed_message>{processed_message{std::string{message_id}, {}, 0}};
}

void journal::submit(std::shared_ptr<write_ticket> t) {
  auto w = std::move(t->w);
  write(std::move(w), [t = std::move(t)](caf::expected<write_result> r) { t->done(std::move(r)); });
}

caf::expected<recovery_start> journal::load_recovery_start(std::string_view id,
                                                           std::uint64_t max_events) {
  recovery_start out;
  auto snap = load_snapshot(id, {});
  if (!snap)
    return snap.error();
  out.snapshot = std::move(*snap);
  auto from = out.snapshot ? out.snapshot->seq + 1 : 1;
  auto events = replay(id, from, max_sequence_nr, max_events);
  if (!events)
    return events.error();
  out.events = std::move(*events);
  auto timers = timers_of(id);
  if (!timers)
    return timers.error();
  out.timers = std::move(*timers);
  return out;
}

void journal::outbox_delivered_async(std::vector<std::uint64_t> seqs,
                                     std::function<void(caf::error)> done) {
  done(outbox_delivered(std::move(seqs)));
}

caf::expected<write_result> journal::write_and_wait(atomic_write w) {
  std::promise<caf::expected<write_result>> done;
  auto result = done.get_future();
  write(std::move(w), [&done](caf::expected<write_result> r) { done.set_value(std::move(r)); });
  return result.get();
}

}  // namespace longhaul::persistence
