// The flow engine: runs flow definitions as persistent actors. Each flow instance is an
// entity whose events record its position, data, completed steps and compensations;
// waits use durable timers and domain-event subscriptions. Flow: trigger event or
// start_flow -> run steps (send/decide) until a wait or an end -> journal -> apply.
#pragma once

#include "actors/clock.hpp"
#include "actors/entity_behavior.hpp"
#include "runtime/flow_definition.hpp"

#include <boost/json/object.hpp>

#include <memory>
#include <string>
#include <vector>

namespace longhaul {

/// Command names the engine understands besides the flow's own events.
inline constexpr const char* flow_start_command = "longhaul.flow.start";
inline constexpr const char* flow_cancel_command = "longhaul.flow.cancel";
inline constexpr const char* flow_timeout_command = "longhaul.flow.timeout";
inline constexpr const char* flow_retry_command = "longhaul.flow.retry";
/// Sent by the outbox dispatcher to a flow whose command could not be delivered.
inline constexpr const char* delivery_failed_command = "longhaul.delivery_failed";

/// Where a flow instance stands ("why is order 42 stuck?").
struct flow_status {
  std::string flow;              ///< flow name
  std::string id;                ///< instance id (the flow key)
  std::string status;            ///< not_started, running, waiting, completed, failed, canceled
  std::string current_step;      ///< empty when ended
  std::string waiting_for;       ///< event name of the current wait, if waiting
  persistence::time_ms deadline_ms = 0;  ///< when the current wait times out (0: never)
  std::vector<std::string> executed;     ///< steps entered, in order
  std::vector<std::string> completed;    ///< send steps whose command was sent
  std::vector<std::string> pending_compensations;  ///< would run, newest first
  std::vector<std::string> compensated;  ///< compensations already sent
  std::vector<std::string> buffered_events;  ///< early events waiting for their wait
  std::string reason;            ///< why it ended (failed/canceled) or completed
  boost::json::object data;      ///< flow data
};

/// Reads a flow status from an instance's state JSON (instance_status::state_json).
[[nodiscard]] caf::expected<flow_status> parse_flow_status(std::string_view flow,
                                                           std::string_view id,
                                                           std::string_view state_json);

/// The entity behavior of one flow definition (one per registered flow).
[[nodiscard]] std::shared_ptr<actors::entity_behavior>
make_flow_behavior(flow_definition def, std::shared_ptr<const actors::clock> clock);

/// Event names of a definition that instances must receive (trigger and waits), each
/// with the event field that holds the flow key.
[[nodiscard]] std::vector<std::pair<std::string, std::string>>
flow_subscriptions(const flow_definition& def);

}  // namespace longhaul
