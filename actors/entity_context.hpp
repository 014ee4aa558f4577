// What every actor of one runtime shares: the journal, the reader pool, the outbox
// dispatcher, settings, logger and clock. Built by runtime/, read-only afterwards.
#pragma once

#include "actors/actors_protocol.hpp"
#include "actors/clock.hpp"
#include "persistence/journal.hpp"

#include <caf/actor.hpp>
#include <spdlog/logger.h>

#include <functional>
#include <memory>

namespace longhaul::actors {

/// Shared, immutable runtime context of the actors (one per runtime).
struct entity_context {
  std::shared_ptr<persistence::journal> journal;  ///< thread-safe; outlives all actors
  caf::actor readers;        ///< pool of detached journal readers (unused if inline_reads)
  actor_settings settings;
  std::shared_ptr<spdlog::logger> log;            ///< never null
  std::shared_ptr<const clock> time;              ///< the runtime's clock, never null
};

}  // namespace longhaul::actors
