// The supervisor: routes commands by (type, id) to persistent entity actors, activates
// them on demand, passivates idle ones, bounds concurrent recoveries, and stops them all.
// Flow: facade / outbox dispatcher --command_envelope--> supervisor --> entity.
#pragma once

#include "actors/entity_behavior.hpp"
#include "actors/entity_context.hpp"

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/actor_addr.hpp>
#include <caf/response_promise.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace longhaul::actors {

/// The persistence ids of passivated instances that have a stream, the newest `capacity`
/// of them, as 64-bit hashes (about 50 bytes each). A command activating one of them
/// recovers first: presuming it new would cost a refused write. A hash collision only
/// makes a new id recover first (a read that finds nothing), so a hash is enough.
class remembered_streams {
public:
  explicit remembered_streams(std::size_t capacity = 0) : capacity_(capacity) {}

  /// Remembers `pid`, forgetting the oldest id once `capacity` are remembered.
  void remember(const std::string& pid) {
    if (capacity_ == 0)
      return;
    auto h = std::hash<std::string>{}(pid);
    if (!set_.insert(h).second)
      return;
    if (ring_.size() < capacity_) {
      ring_.push_back(h);
      return;
    }
    set_.erase(ring_[next_]);
    ring_[next_] = h;
    next_ = (next_ + 1) % capacity_;
  }

  [[nodiscard]] bool contains(const std::string& pid) const {
    return !set_.empty() && set_.count(std::hash<std::string>{}(pid)) != 0;
  }

  [[nodiscard]] std::size_t size() const noexcept { return set_.size(); }

private:
  std::size_t capacity_;
  std::unordered_set<std::uint64_t> set_;
  std::vector<std::uint64_t> ring_;  ///< insertion order; next_ is the oldest once full
  std::size_t next_ = 0;
};

/// State of the supervisor actor.
struct supervisor_state {
  static inline const char* name = "longhaul.supervisor";

  struct entry;
  /// A live activation's place in idle_order.
  struct idle_slot {
    entry* instance;
    caf::actor_clock::time_point since;  ///< last routed to, or last checked for idleness
  };
  struct entry {
    caf::actor actor;
    std::uint64_t routed = 0;  ///< commands routed to this activation
    std::list<idle_slot>::iterator slot;
  };

  std::shared_ptr<const entity_context> ctx;
  std::unordered_map<std::string, std::shared_ptr<const entity_behavior>> types;
  std::unordered_map<std::string, entry> instances;  ///< live activations by persistence id
  /// Every live activation, the one routed to (or checked) longest ago first. A sweep
  /// every quarter of passivate_after sends the idle check to those at the front whose
  /// time has come; each decides from its own last activity whether to ask to be
  /// passivated (S1). No timer per instance: a timer message held a stopped instance's
  /// actor in memory until it fired (passivate_after, two minutes by default).
  std::list<idle_slot> idle_order;
  bool sweep_armed = false;
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
  /// Passivated ids known to have a stream: not presumed new when activated again.
  remembered_streams stored_passivated;
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
