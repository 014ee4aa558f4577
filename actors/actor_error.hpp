// Errors of actors/: what a command's sender can get back besides persistence errors
// (which pass through unchanged). Rendered by describe() in persistence_error.hpp.
#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace longhaul::actors {

/// Error codes of the runtime's actors.
enum class actor_errc : std::uint8_t {
  ok = 0,
  unknown_entity_type = 1,  ///< no entity type registered under that name (nothing stored)
  invalid_id,               ///< empty or oversized instance id (nothing stored)
  unknown_command,          ///< the entity type has no command/event of that name
  undecodable_command,      ///< the payload does not convert to the command type
  rejected,                 ///< decide() returned a domain error (nothing stored)
  decide_threw,             ///< decide() threw; the instance restarts from the journal
  incident,                 ///< the instance is an open incident; resume it first
  instance_failed,          ///< recovery failed (unknown event, bad payload); see text
  stopping,                 ///< the runtime is stopping; the command was not handled
  timeout,                  ///< no reply within the ask timeout (outcome unknown)
  not_started,              ///< the runtime was not started
};

/// Category atom of actor errors inside `caf::error`.
inline constexpr caf::atom_value actor_category = caf::atom("lh_actor");

/// Stable lower-case name of a code.
[[nodiscard]] std::string_view to_string(actor_errc code) noexcept;

/// Builds a `caf::error` of the actor category with `detail` as context.
[[nodiscard]] caf::error make_actor_error(actor_errc code, std::string detail);

/// The actor code of `err`, or `ok` if `err` is empty or of another category.
[[nodiscard]] actor_errc actor_code(const caf::error& err) noexcept;

/// True if delivering the same message again can only give the same answer (unknown
/// type, bad id, unknown or undecodable command, domain rejection, failed instance, or a
/// persistence rejection other than a sequence conflict): dead-letter it, don't retry.
[[nodiscard]] bool is_permanent(const caf::error& err) noexcept;

}  // namespace longhaul::actors
