// The type-erased face of an entity type, as the persistent actor sees it. runtime/
// implements it from a user's typed entity definition (runtime/entity.hpp); actors/ never
// sees user types. Flow: command -> decide (here) -> journal -> apply (here).
#pragma once

#include "persistence/journal.hpp"

#include <boost/json/value.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace longhaul::actors {

/// A command or domain event addressed to one instance, as it travels through the runtime.
struct command_envelope {
  std::string entity_type;       ///< registered type name, e.g. "payment"
  std::string entity_id;         ///< instance id, non-empty
  std::string name;              ///< command name ("retrieve_payment") or event name
  boost::json::value payload;    ///< the command encoded by its codec
  /// Non-empty when the command comes from the outbox, a subscription or a timer: the
  /// instance stores it with its events and ignores a second delivery (exactly-once).
  std::string message_id;
  /// For timer firings: how late the timer fired, in milliseconds (0 otherwise).
  std::int64_t late_by_ms = 0;
  /// Timer that delivered this command (empty otherwise); its removal is stored with the
  /// resulting events.
  std::string timer_name;
  /// Due time of that timer: a firing whose timer was replaced or cancelled meanwhile is
  /// stale and ignored.
  persistence::time_ms timer_due_ms = 0;
  /// The command as the C++ object it was sent as (runtime::envelope), or empty. `payload`
  /// then stays null: an entity type that decides this type (entity_behavior::decides_typed)
  /// takes the object as it is, with no JSON in between; for any other receiver the
  /// persistent actor fills in the payload first (materialize_payload).
  std::shared_ptr<const void> typed;
  /// Identifies the type of `typed` (typed_tag<C>()).
  const void* typed_tag = nullptr;
  /// Encodes `typed` with its codec, as `payload` would hold it.
  boost::json::value (*typed_encode)(const void*) = nullptr;
  /// Non-zero for a delivery of the outbox dispatcher, which sends it as an asynchronous
  /// message: the instance (or the supervisor, for a command it cannot route) answers with
  /// a delivery_answer carrying this number instead of a response (outbox_dispatcher_actor).
  std::uint64_t delivery = 0;
};

/// A distinct address per C++ type: identifies the type of command_envelope::typed.
template <class T>
const void* typed_tag() {
  static const char tag = 0;
  return &tag;
}

/// The command's payload as JSON: `payload`, or `typed` encoded.
[[nodiscard]] boost::json::value payload_of(const command_envelope& cmd);

/// Replaces `typed` with its JSON in `payload` (nothing to do for a JSON command).
void materialize_payload(command_envelope& cmd);

/// Erased per-instance state; the concrete type belongs to runtime/.
class entity_state {
public:
  virtual ~entity_state() = default;
};

/// A command for another instance, stored in the outbox with the decision's events.
struct outgoing_command {
  std::string entity_type;
  std::string entity_id;
  std::string name;
  boost::json::value payload;
  /// When non-empty and the command cannot be delivered (dead letter), the sender gets a
  /// "longhaul.delivery_failed" command carrying this tag (flows use it for retries).
  std::string failure_tag;
};

/// A domain event for subscribers, stored in the outbox with the decision's events.
struct published_event {
  std::string name;
  boost::json::value payload;
};

/// A durable timer the decision sets; fires `command_name` at its own instance.
struct timer_request {
  std::string name;
  persistence::time_ms due_ms = 0;
  /// When >= 0, the timer is due this many ms after the decision is stored (runtime
  /// clock) and `due_ms` is ignored.
  std::int64_t delay_ms = -1;
  std::string command_name;
  boost::json::value payload;
};

/// What one decision produced, encoded and ready for one atomic journal write.
struct decision_record {
  std::vector<persistence::new_event> events;
  /// Applies the decision's (typed) events to the state after the journal stored them.
  /// Called at most once (never for a write that failed), so it may move from what it
  /// captured.
  std::function<void(entity_state&)> apply;
  std::optional<boost::json::value> reply;
  std::vector<outgoing_command> sends;
  std::vector<published_event> publishes;
  std::vector<timer_request> timers_to_set;
  std::vector<std::string> timers_to_cancel;
  bool snapshot_requested = false;
  bool finished = false;  ///< the instance is done: all its timers are removed
};

/// Per-entity-type settings.
struct entity_options {
  std::uint64_t snapshot_every = 0;     ///< snapshot after this many events (0 = never)
  bool delete_events_on_snapshot = false;
  std::uint32_t max_failures = 3;       ///< same command failing this often -> incident
};

/// An entity type, erased. Implementations are immutable after registration and shared
/// by all instances of the type (thread-safe by being const).
class entity_behavior {
public:
  virtual ~entity_behavior() = default;

  /// The stable type name ("payment").
  [[nodiscard]] virtual const std::string& type_name() const = 0;

  /// Settings of this type.
  [[nodiscard]] virtual const entity_options& options() const = 0;

  /// A fresh state, as before the first event.
  [[nodiscard]] virtual std::unique_ptr<entity_state> initial_state() const = 0;

  /// Decodes `cmd` and decides against `state`. Fails with unknown_command,
  /// undecodable_command or rejected (domain error); exceptions thrown by user code
  /// propagate to the caller (the persistent actor).
  [[nodiscard]] virtual caf::expected<decision_record>
  decide(const entity_state& state, const command_envelope& cmd) const = 0;

  /// Upcasts (older schema versions), decodes and applies one stored event. Fails with
  /// instance_failed naming the id, sequence number and event name.
  [[nodiscard]] virtual caf::error apply_stored(entity_state& state,
                                                const persistence::event_record& ev) const = 0;

  /// The state as JSON, for snapshots.
  [[nodiscard]] virtual caf::expected<std::string> encode_state(const entity_state& s) const = 0;

  /// A state from a snapshot's JSON.
  [[nodiscard]] virtual caf::expected<std::unique_ptr<entity_state>>
  decode_state(std::string_view json) const = 0;

  /// True if commands named `name` can be delivered to this type (timer validation).
  [[nodiscard]] virtual bool accepts(std::string_view name) const = 0;

  /// True if decide() takes a command_envelope::typed object of the type `tag` names as it
  /// is; false (the default) makes the persistent actor hand it over as JSON.
  [[nodiscard]] virtual bool decides_typed(const void* tag) const {
    (void) tag;
    return false;
  }
};

/// Persistence id of an instance: "<type>/<id>". Type names never contain '/'.
[[nodiscard]] std::string persistence_id_of(std::string_view type, std::string_view id);

/// Splits a persistence id into (type, id); nullopt if it has no '/'.
[[nodiscard]] std::optional<std::pair<std::string, std::string>>
split_persistence_id(std::string_view pid);

}  // namespace longhaul::actors
