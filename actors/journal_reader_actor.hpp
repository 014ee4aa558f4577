// Journal readers: detached actors (own threads) that run the blocking journal reads of
// recovery and the snapshot writes, so CAF's worker threads never wait on SQLite.
// Flow: persistent entity --load_request--> reader pool --loaded_chunk--> entity.
#pragma once

#include "actors/entity_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <memory>

namespace longhaul::actors {

/// Spawns a round-robin pool of `threads` detached journal readers over `journal`.
/// Handles (load_atom, load_request) -> loaded_chunk and (snapshot_atom, snapshot_request).
[[nodiscard]] caf::actor spawn_journal_readers(caf::actor_system& sys,
                                               std::shared_ptr<persistence::journal> journal,
                                               std::shared_ptr<spdlog::logger> log,
                                               std::size_t threads);

}  // namespace longhaul::actors
