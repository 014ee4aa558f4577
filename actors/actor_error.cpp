// Implementation of actor error values (see actor_error.hpp).
#include "actors/actor_error.hpp"

#include "persistence/persistence_error.hpp"

#include <caf/make_message.hpp>

namespace longhaul::actors {

std::string_view to_string(actor_errc code) noexcept {
  switch (code) {
    case actor_errc::ok: return "ok";
    case actor_errc::unknown_entity_type: return "unknown_entity_type";
    case actor_errc::invalid_id: return "invalid_id";
    case actor_errc::unknown_command: return "unknown_command";
    case actor_errc::undecodable_command: return "undecodable_command";
    case actor_errc::rejected: return "rejected";
    case actor_errc::decide_threw: return "decide_threw";
    case actor_errc::incident: return "incident";
    case actor_errc::instance_failed: return "instance_failed";
    case actor_errc::stopping: return "stopping";
    case actor_errc::timeout: return "timeout";
    case actor_errc::not_started: return "not_started";
  }
  return "unknown";
}

caf::error make_actor_error(actor_errc code, std::string detail) {
  // Registered on first use: every actor error is built here before it can be described.
  static const bool registered = [] {
    persistence::register_error_names(actor_category, [](std::uint8_t c) {
      return to_string(static_cast<actor_errc>(c));
    });
    return true;
  }();
  (void) registered;
  return caf::error{static_cast<std::uint8_t>(code), actor_category,
                    caf::make_message(std::move(detail))};
}

actor_errc actor_code(const caf::error& err) noexcept {
  if (!err || err.category() != actor_category)
    return actor_errc::ok;
  return static_cast<actor_errc>(err.code());
}

bool is_permanent(const caf::error& err) noexcept {
  switch (actor_code(err)) {
    case actor_errc::unknown_entity_type:
    case actor_errc::invalid_id:
    case actor_errc::unknown_command:
    case actor_errc::undecodable_command:
    case actor_errc::rejected:
    case actor_errc::instance_failed:
      return true;
    default:
      return persistence::is_rejection(err)
             && persistence::persistence_code(err)
                  != persistence::persistence_errc::sequence_conflict;
  }
}

}  // namespace longhaul::actors
