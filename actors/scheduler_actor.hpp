// The scheduler: owns the durable timers stored in the journal. Keeps a bounded window of
// the earliest timers in memory, refills it as time moves, and fires each due timer by
// delivering its command to its instance (activating it if passivated). Exactly once:
// the instance stores the timer's removal with the command's effects.
// Flow: entity --timer_change--> scheduler --command_envelope--> supervisor --> entity.
#pragma once

#include "actors/entity_context.hpp"
#include "actors/request_deadlines.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace longhaul::actors {

/// State of the scheduler actor (detached with real clocks: its journal reads block).
struct scheduler_state {
  static inline const char* name = "longhaul.scheduler";

  /// Window order: due time, then persistence id, then name (the journal's index order).
  using key = std::tuple<persistence::time_ms, std::string, std::string>;

  struct pending {
    std::string payload_json;
    persistence::time_ms not_before = 0;  ///< retry backoff (0: fire when due)
    std::uint32_t attempts = 0;
  };

  std::shared_ptr<const entity_context> ctx;
  caf::actor_addr supervisor;
  /// Every stored timer with key <= loaded_through, except those in flight (S2).
  std::map<key, pending> window;
  /// Where each windowed or in-flight timer is, by (persistence id, name).
  std::unordered_map<std::string, persistence::time_ms> due_of;
  std::map<key, pending> in_flight;    ///< delivered, awaiting the instance's answer
  /// How far the window is complete (S2): every stored timer with a key <= this one is in
  /// `window` or `in_flight`. `{t + 1, "", ""}` after a read that reached its time bound
  /// t (no stored timer has an empty id); the last row read after a read that stopped at
  /// its row limit. Only grows: each read continues after it (keyset paging).
  key loaded_through;
  bool loaded = false;         ///< false until the first read: nothing is covered
  bool stopped_at_row = false;  ///< the last read hit its row limit: more may follow at once
  persistence::time_ms read_retry_at = -1;  ///< after a failed read: when to try again
  /// Detached actor that reads pages off the scheduler's thread (null with inline reads).
  caf::actor page_reader;
  bool read_pending = false;  ///< a page is being read: timer changes wait in `held`
  /// Timer changes that arrived while a page was read, applied in order once it is
  /// merged (S2: the page may or may not include them; applying them after is right
  /// either way, since a change replaces or removes by name).
  std::vector<timer_change> held;
  persistence::time_ms armed_for = -1;  ///< clock time of the pending wake-up (-1: none)
  request_deadlines deadlines;  ///< deliveries awaiting an answer, with their deadlines
  bool sweep_armed = false;
  std::uint64_t fired = 0;
  std::uint64_t dead = 0;
};

/// Spawn function of the scheduler.
caf::behavior scheduler_actor(caf::stateful_actor<scheduler_state>* self,
                              std::shared_ptr<const entity_context> ctx,
                              caf::actor_addr supervisor);

}  // namespace longhaul::actors
