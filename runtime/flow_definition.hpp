// Flow definitions: a long-running process (saga) as data. Steps send commands, wait for
// domain events (with timeouts), decide on flow data, end; steps may declare the command
// that compensates them. Written with the C++ builder below or loaded from JSON
// (flow_json.hpp); both produce the same flow_definition, checked by validate().
// Executed by flow instances (flow_engine.hpp); drawn by flow_diagram.hpp.
#pragma once

#include <boost/json/value.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace longhaul {

/// A command to send: target entity type, the flow-data field holding the target id, the
/// command name, and the payload. Payload strings of the form "$field" or "$a.b" are
/// replaced by flow data when the command is sent; everything else is copied as is.
struct flow_command {
  std::string entity_type;
  std::string id_from;        ///< flow-data path of the target instance id
  std::string command;        ///< command name, e.g. "retrieve_payment"
  boost::json::value payload; ///< template (object), "$path" strings filled from data
};

/// Retry policy of a send step: if the command cannot be delivered (the target rejects
/// it or does not exist), send it again after a backoff, up to `max_attempts` in total.
struct retry_policy {
  std::uint32_t max_attempts = 1;
  std::chrono::milliseconds initial_interval{1000};
  double factor = 2.0;
  std::string on_exhausted;  ///< step to go to when attempts run out (e.g. an end step)
};

/// Send a command, then go to `next`.
struct send_step {
  flow_command command;
  std::optional<retry_policy> retry;
  std::string next;
};

/// Wait for a domain event whose `correlation` field equals the flow's key. On arrival
/// the event's fields listed in `merge` (data field <- event field) go into flow data.
struct wait_step {
  std::string event;        ///< event name, e.g. "payment.received"
  std::string correlation;  ///< event field holding the flow key, e.g. "order_id"
  std::vector<std::pair<std::string, std::string>> merge;  ///< (data path, event path)
  std::optional<std::chrono::milliseconds> timeout;
  std::string on_timeout;   ///< step after a timeout (required with a timeout)
  std::string next;
  /// Other events that also end this wait, each with its own next step (e.g.
  /// payment.failed -> "payment failed"); same correlation field, fields merged too.
  std::vector<std::pair<std::string, std::string>> alternatives;  ///< (event, next)
};

/// One branch of a decide step: when data at `path` compares to `value` with `op`
/// ("==", "!=", "<", "<=", ">", ">=", "exists", "missing"), go to `next`.
struct decide_branch {
  std::string path;
  std::string op = "==";
  boost::json::value value;
  std::string next;
};

/// Branch on flow data; the first matching branch wins, else `otherwise`.
struct decide_step {
  std::vector<decide_branch> branches;
  std::string otherwise;
};

/// How a flow ends.
enum class flow_outcome { completed, failed, canceled };

/// [[nodiscard]] Stable name: "completed", "failed", "canceled".
[[nodiscard]] const char* to_string(flow_outcome o) noexcept;

/// End the flow. With `compensate`, the compensations of completed steps run first (in
/// reverse order). An optional domain event is published (e.g. order.completed) with the
/// flow data as payload. A reason of the form "$field" is taken from flow data.
struct end_step {
  flow_outcome outcome = flow_outcome::completed;
  std::string reason;
  bool compensate = false;
  std::optional<std::string> publish_event;  ///< event name; payload is the flow data
};

/// A step: a unique name, its kind, and an optional compensation (send steps).
struct flow_step {
  std::string name;
  std::variant<send_step, wait_step, decide_step, end_step> kind;
  std::optional<flow_command> compensation;  ///< sent if the flow compensates later
};

/// How instances start: by a domain event (keyed by one of its fields) and/or by an
/// explicit start command carrying the initial data.
struct flow_trigger {
  std::string event;  ///< e.g. "order.placed"; empty: started only through the API
};

/// A whole flow. The instance id (the flow key) is the value of data field `key`.
struct flow_definition {
  std::string name;     ///< entity type name of its instances, e.g. "order"
  std::string key;      ///< data field that identifies an instance, e.g. "order_id"
  flow_trigger trigger;
  std::vector<flow_step> steps;  ///< the first step is where a flow starts
  std::chrono::milliseconds early_event_ttl{std::chrono::hours{1}};  ///< buffer for early events
};

/// Checks a definition: non-empty names, unique step names, known target steps, every
/// step reachable from the first, waits with a correlation key and a timeout target when
/// they time out, no cycle without a wait, and retry policies that make sense. The error
/// (invalid_argument) names the step and the field.
[[nodiscard]] caf::error validate(const flow_definition& def);

/// Builds flow definitions in C++, reading like the diagram:
///
///   auto order = flow_builder{"order", "order_id"}
///     .started_by("order.placed")
///     .send("retrieve payment", {"payment", "order_id", "retrieve_payment", {...}})
///     .wait("await payment", {"payment.received", "order_id"}, 20 days, "payment timed out")
///     ...
///     .build();   // validated
class flow_builder {
public:
  flow_builder(std::string name, std::string key);

  /// Instances start when this event is published (keyed by its `key` field).
  flow_builder& started_by(std::string event);

  /// Buffer events that arrive before their wait for this long (default 1 hour).
  flow_builder& early_event_ttl(std::chrono::milliseconds ttl);

  /// Adds a send step; `next` defaults to the step added after it.
  flow_builder& send(std::string step, flow_command cmd, std::string next = {});

  /// Declares the compensation of the last added step.
  flow_builder& compensate_with(flow_command cmd);

  /// Declares a retry policy for the last added (send) step.
  flow_builder& retry(retry_policy policy);

  /// Adds a wait step; `next` defaults to the step added after it.
  flow_builder& wait(std::string step, std::string event, std::string correlation,
                     std::string next = {});

  /// Sets a timeout on the last added (wait) step.
  flow_builder& timeout(std::chrono::milliseconds after, std::string on_timeout);

  /// The last added wait also ends when `event` arrives, continuing at `next`.
  flow_builder& or_event(std::string event, std::string next);

  /// Merges event field `event_path` into flow data at `data_path` (last added wait).
  flow_builder& merge(std::string data_path, std::string event_path);

  /// Adds a decide step with no branches yet.
  flow_builder& decide(std::string step, std::string otherwise);

  /// Adds a branch to the last added decide step.
  flow_builder& when(std::string path, std::string op, boost::json::value value,
                     std::string next);

  /// Adds an end step.
  flow_builder& end(std::string step, flow_outcome outcome, std::string reason = {},
                    bool compensate = false);

  /// Publishes `event` (payload: the flow data) when the last added end step is reached.
  flow_builder& publish(std::string event);

  /// The definition, validated.
  [[nodiscard]] caf::expected<flow_definition> build() const;

  /// The definition as built so far, not validated (for tests of validation).
  [[nodiscard]] const flow_definition& peek() const noexcept { return def_; }

private:
  flow_step* last(const char* what);
  void link_previous(const std::string& step);

  flow_definition def_;
  std::vector<bool> next_defaulted_;  ///< per step: `next` was left to the following step
  std::string error_;                 ///< first misuse of the builder, reported by build()
};

}  // namespace longhaul
