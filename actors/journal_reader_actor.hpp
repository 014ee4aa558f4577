// Journal readers: detached actors (own threads) that run the blocking journal reads of
// recovery, the snapshot writes and a duplicate's outcome, so CAF's worker threads never
// wait on SQLite.
// Flow: persistent entity --load_request--> reader pool --loaded_chunk--> entity.
#pragma once

#include "actors/entity_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <memory>

namespace longhaul::actors {

/// Spawns a round-robin pool of `threads` detached journal readers over `journal`.
/// Handles (load_atom, load_request) -> loaded_chunk, (snapshot_atom, snapshot_request) and
/// (processed_atom, persistence id, message id) -> std::optional<processed_message>.
[[nodiscard]] caf::actor spawn_journal_readers(caf::actor_system& sys,
                                               std::shared_ptr<persistence::journal> journal,
                                               std::shared_ptr<spdlog::logger> log,
                                               std::size_t threads);

}  // namespace longhaul::actors
