// The supervisor: routes commands by (type, id) to persistent entity actors, activates
// them on demand, passivates idle ones, bounds concurrent recoveries, and stops them all.
// Flow: facade / outbox dispatcher --command_envelope--> supervisor --> entity.
#pragma once

#include "actors/entity_behavior.hpp"
#include "actors/entity_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/response_promise.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace longhaul::actors {

/// State of the supervisor actor.
struct supervisor_state {
  static inline const char* name = "longhaul.supervisor";

  struct entry {
    caf::actor actor;
    std::uint64_t routed = 0;  ///< commands routed to this activation
  };

  std::shared_ptr<const entity_context> ctx;
  std::unordered_map<std::string, std::shared_ptr<const entity_behavior>> types;
  std::unordered_map<std::string, entry> instances;  ///< live activations by persistence id
  caf::actor outbox;
  caf::actor scheduler;
  /// Activations holding a recovery permit (at most max_concurrent_recoveries). A holder
  /// that dies or stops without permit_done gives its permit back through the supervisor.
  std::vector<caf::actor_addr> permit_holders;
  struct permit_wait {
    caf::actor_addr requester;
    caf::response_promise promise;
  };
  /// Activations waiting for a permit, in arrival order; dead ones are dropped.
  std::deque<permit_wait> waiting_for_permit;
  std::uint64_t activations = 0;
  std::uint64_t passivations = 0;
  /// Scratch space for the persistence id of the command being routed (see activation).
  std::string pid_buffer;
};

/// Spawn function of the supervisor. `types` holds every registered entity type.
caf::behavior supervisor_actor(
  caf::stateful_actor<supervisor_state>* self, std::shared_ptr<const entity_context> ctx,
  std::unordered_map<std::string, std::shared_ptr<const entity_behavior>> types);

/// supervisor: set the outbox dispatcher and the scheduler that new instances talk to.
using set_outbox_atom = caf::atom_constant<caf::atom("setobox")>;
/// supervisor (request): number of live instances (for tests and benchmarks).
using count_atom = caf::atom_constant<caf::atom("count")>;

}  // namespace longhaul::actors
