// Implementation of persistence error values (see persistence_error.hpp).
#include "persistence/persistence_error.hpp"

#include <caf/deep_to_string.hpp>
#include <caf/make_message.hpp>
#include <caf/sec.hpp>

#include <map>
#include <mutex>

namespace longhaul::persistence {

std::string_view to_string(persistence_errc code) noexcept {
  switch (code) {
    case persistence_errc::ok: return "ok";
    case persistence_errc::invalid_argument: return "invalid_argument";
    case persistence_errc::invalid_payload: return "invalid_payload";
    case persistence_errc::payload_too_large: return "payload_too_large";
    case persistence_errc::sequence_conflict: return "sequence_conflict";
    case persistence_errc::duplicate_message: return "duplicate_message";
    case persistence_errc::read_only: return "read_only";
    case persistence_errc::io_error: return "io_error";
    case persistence_errc::disk_full: return "disk_full";
    case persistence_errc::busy: return "busy";
    case persistence_errc::closed: return "closed";
    case persistence_errc::locked_by_other_process: return "locked_by_other_process";
    case persistence_errc::schema_too_new: return "schema_too_new";
    case persistence_errc::cannot_open: return "cannot_open";
    case persistence_errc::corrupt: return "corrupt";
    case persistence_errc::internal: return "internal";
  }
  return "unknown";
}

caf::error make_persistence_error(persistence_errc code, std::string detail) {
  return caf::error{static_cast<std::uint8_t>(code), persistence_category,
                    caf::make_message(std::move(detail))};
}

persistence_errc persistence_code(const caf::error& err) noexcept {
  if (!err || err.category() != persistence_category)
    return persistence_errc::ok;
  return static_cast<persistence_errc>(err.code());
}

bool is_rejection(const caf::error& err) noexcept {
  auto code = persistence_code(err);
  return code != persistence_errc::ok && static_cast<std::uint8_t>(code) < 32;
}

namespace {

struct category_names {
  std::mutex mtx;
  std::map<caf::atom_value, std::string_view (*)(std::uint8_t)> names;
};

category_names& registry() {
  static category_names instance;
  return instance;
}

} // namespace

void register_error_names(caf::atom_value category, std::string_view (*name_of)(std::uint8_t)) {
  auto& reg = registry();
  std::lock_guard guard{reg.mtx};
  reg.names[category] = name_of;
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  std::string detail;
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    detail = ctx.get_as<std::string>(0);
  else if (!ctx.empty())
    detail = caf::deep_to_string(ctx);
  if (err.category() == persistence_category) {
    std::string out{to_string(static_cast<persistence_errc>(err.code()))};
    if (!detail.empty())
      out += ": " + detail;
    return out;
  }
  std::string out;
  {
    auto& reg = registry();
    std::lock_guard guard{reg.mtx};
    if (auto it = reg.names.find(err.category()); it != reg.names.end())
      out = std::string{it->second(err.code())};
  }
  if (out.empty() && err.category() == caf::atom("system"))
    out = "caf " + caf::to_string(static_cast<caf::sec>(err.code()));
  if (out.empty())
    out = caf::to_string(err.category()) + " error " + std::to_string(err.code());
  if (!detail.empty())
    out += ": " + detail;
  return out;
}

}  // namespace longhaul::persistence
