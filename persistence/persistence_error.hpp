// Errors of persistence/: one enum, turned into caf::error values so every layer above
// passes them along unchanged. Outcome classes (rejected vs failed) follow JOURNAL.md §Failures.
#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace longhaul::persistence {

/// Error codes of the journal. Codes below `io_error` mean "rejected: definitely not
/// stored, nothing changed"; codes from `io_error` on mean "failed: the caller cannot
/// know more than the journal tells on the next read" (see `is_rejection`).
enum class persistence_errc : std::uint8_t {
  ok = 0,
  // --- rejected: definitely not stored -------------------------------------
  invalid_argument = 1,   ///< empty/oversized id, empty write, bad ranges or names
  invalid_payload,        ///< a payload is not valid JSON
  payload_too_large,      ///< a payload is larger than the configured limit
  sequence_conflict,      ///< expected sequence number is not highest + 1
  duplicate_message,      ///< the processed message id is already stored for this id
  read_only,              ///< a write on a journal opened read-only
  // --- failed: outcome must be learned from the journal ----------------------
  io_error = 32,          ///< SQLite reported an I/O error (write, fsync, read)
  disk_full,              ///< SQLITE_FULL: the file system is full
  busy,                   ///< the database stayed locked past the busy timeout
  closed,                 ///< the journal was closed before the write completed
  // --- open-time errors -------------------------------------------------------
  locked_by_other_process = 64,  ///< another process holds the writer lock
  schema_too_new,         ///< the file was written by a newer longhaul
  cannot_open,            ///< the file cannot be opened or is not a journal
  corrupt,                ///< SQLite reports corruption
  internal,               ///< an unexpected SQLite error (message names it)
};

/// The category atom of persistence errors inside `caf::error`.
inline constexpr caf::atom_value persistence_category = caf::atom("lh_persist");

/// Stable lower-case name of a code, e.g. "sequence_conflict".
[[nodiscard]] std::string_view to_string(persistence_errc code) noexcept;

/// Builds a `caf::error` of the persistence category carrying `detail` as context.
[[nodiscard]] caf::error make_persistence_error(persistence_errc code, std::string detail);

/// Returns the persistence code of `err`, or `ok` if `err` is empty or of another category.
[[nodiscard]] persistence_errc persistence_code(const caf::error& err) noexcept;

/// True when `err` says the write was definitely not stored (see JOURNAL.md §Failures).
[[nodiscard]] bool is_rejection(const caf::error& err) noexcept;

/// Registers the code names of another error category for `describe` (actors/ and
/// runtime/ register theirs when they first build an error). Thread-safe.
void register_error_names(caf::atom_value category, std::string_view (*name_of)(std::uint8_t));

/// Human-readable text of any longhaul error: "sequence_conflict: expected 4, highest 5".
/// Falls back to CAF's rendering for other categories.
[[nodiscard]] std::string describe(const caf::error& err);

}  // namespace longhaul::persistence
