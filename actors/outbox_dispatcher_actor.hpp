// The outbox dispatcher: delivers committed outbox rows (commands for other instances and
// published domain events) through the supervisor, at least once and also across
// crashes; receivers apply each at most once. Undeliverable messages become dead letters.
// Flow: entity --nudge--> dispatcher --command_envelope--> supervisor --> entity, and back
// entity --delivery_answer--> dispatcher once the entity's write is durable. A delivery is
// an asynchronous message numbered in command_envelope::delivery (not a CAF request, whose
// pending responses CAF 0.17 searches linearly); the supervisor reports an instance actor
// that terminated (instance_down_atom), whose unanswered deliveries are sent again.
#pragma once

#include "actors/entity_context.hpp"
#include "actors/request_deadlines.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace longhaul::actors {

/// Routes a published domain event to one instance of a subscribing entity type.
struct subscription {
  std::string entity_type;
  /// The instance id for an event payload (e.g. payload.order_id), or an error that
  /// dead-letters the event for this subscriber.
  std::function<caf::expected<std::string>(const boost::json::value&)> correlate;
};

/// Subscriptions by event name.
using subscription_table = std::unordered_map<std::string, std::vector<subscription>>;

/// State of the dispatcher (a detached actor: its journal calls block).
struct outbox_dispatcher_state {
  static inline const char* name = "longhaul.outbox";

  struct delivery {
    persistence::outbox_record row;  ///< the row; answer handlers find it here by seq
    std::size_t outstanding = 0;     ///< deliveries not yet answered
    bool retry = false;              ///< some delivery failed in a way worth retrying
  };

  std::shared_ptr<const entity_context> ctx;
  caf::actor_addr supervisor;  ///< weak: the supervisor holds us strongly
  subscription_table subscriptions;
  std::map<std::uint64_t, delivery> in_flight;  ///< by outbox_seq
  std::uint64_t cursor = 0;       ///< highest outbox_seq read so far
  std::uint64_t retry_from = 0;   ///< lowest seq that needs another try (0 = none)
  std::vector<std::uint64_t> delivered;  ///< done, not yet removed from the outbox
  bool poll_queued = false;
  bool tick_armed = false;
  bool flush_armed = false;
  bool sweep_armed = false;
  request_deadlines deadlines;  ///< deliveries awaiting an answer, with their deadlines
  /// A delivery awaiting its delivery_answer, by its number (its deadline's token).
  struct awaiting_answer {
    std::uint64_t seq = 0;         ///< the row's outbox_seq
    bool is_notification = false;  ///< a longhaul.delivery_failed for the sender
    std::string receiver;          ///< persistence id it was routed to
  };
  std::unordered_map<std::uint64_t, awaiting_answer> awaiting;
  std::uint64_t dead_letters = 0;
};

/// Spawn function of the dispatcher (spawn it detached).
caf::behavior outbox_dispatcher_actor(caf::stateful_actor<outbox_dispatcher_state>* self,
                                      std::shared_ptr<const entity_context> ctx,
                                      caf::actor_addr supervisor, subscription_table subs);

/// dispatcher -> itself: the periodic poll.
using outbox_tick_atom = caf::atom_constant<caf::atom("oboxtick")>;
/// dispatcher -> itself: remove delivered rows from the outbox (batched).
using outbox_flush_atom = caf::atom_constant<caf::atom("oboxflush")>;

}  // namespace longhaul::actors
