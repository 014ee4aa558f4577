// Flow definitions as JSON: load a flow_definition from a JSON document (strict: syntax
// errors with line and column, unknown keys rejected, then validate()) and write one back
// (pretty-printed, deterministic, round-trips). Sits beside the C++ flow_builder.
#pragma once

#include "runtime/flow_definition.hpp"

#include <caf/expected.hpp>

#include <string>
#include <string_view>

namespace longhaul {

// -- schema ---------------------------------------------------------------------------
//
// A flow document is one JSON object (strict JSON: no comments, no trailing commas, no
// duplicate keys). Every key not listed here is an error that names it.
//
//   name                string, required   entity type of the instances ("order")
//   key                 string, required   data field identifying an instance ("order_id")
//   started_by          string, optional   trigger event; absent: started through the API
//   early_event_ttl_ms  integer > 0, opt.  how long early events are buffered (3600000)
//   steps               array, required    the first step is where an instance starts
//
// Each step is an object with "name" and exactly one of "send", "wait", "decide", "end":
//
//   send:   {"entity_type", "id_from", "command": strings, required;
//            "payload": object, optional; strings "$path" are filled from flow data}
//           step-level "next" (optional: defaults to the following step in the array),
//           "compensation" (optional, same shape as "send": sent if the flow compensates),
//           "retry" (optional): {"max_attempts": integer > 0, required;
//                                "initial_interval_ms": integer > 0, default 1000;
//                                "factor": number, default 2.0;
//                                "on_exhausted": step name, required}
//   wait:   {"event": string, required; "correlation": event field holding the flow key;
//            "merge": {data path: event path, ...}, optional, applied in order;
//            "timeout_ms": integer > 0, optional; "on_timeout": step name (with timeout);
//            "alternatives": [{"event": string, "next": step name}, ...], optional: other
//            events that also end the wait, each going on at its own step}
//           step-level "next" (optional: defaults to the following step in the array)
//   decide: {"branches": [{"path": data path, "op": one of == != < <= > >= exists
//            missing, "value": any JSON (required unless op is exists/missing),
//            "next": step name}, ...], required; "otherwise": step name, required}
//           First matching branch wins. No step-level "next".
//   end:    {"outcome": "completed" | "failed" | "canceled", required;
//            "reason": string, optional; "compensate": bool, default false (run the
//            compensations of completed steps, newest first); "publish": event, optional}
//
// Type errors name the flow, the step and the field:
//   flow 'order', step 'await payment', field 'wait.timeout_ms': expected a positive integer
// Semantic errors (unknown target step, unreachable step, wait without correlation key,
// loop without a wait or timer, duplicate step name, bad retry) come from validate().
//
// A complete example (the order saga of tests/runtime/flow_entities.hpp):
//
//   {
//     "name": "order",
//     "key": "order_id",
//     "started_by": "order.placed",
//     "early_event_ttl_ms": 3600000,
//     "steps": [
//       {
//         "name": "retrieve payment",
//         "send": {"entity_type": "payment", "id_from": "order_id",
//                  "command": "retrieve_payment",
//                  "payload": {"order_id": "$order_id", "amount": "$total"}},
//         "compensation": {"entity_type": "payment", "id_from": "order_id",
//                          "command": "refund_payment", "payload": {"order_id": "$order_id"}},
//         "retry": {"max_attempts": 3, "initial_interval_ms": 1000, "factor": 2.0,
//                   "on_exhausted": "payment timed out"}
//       },
//       {
//         "name": "await payment",
//         "wait": {"event": "payment.received", "correlation": "order_id",
//                  "timeout_ms": 1728000000, "on_timeout": "payment timed out"}
//       },
//       {
//         "name": "fetch goods",
//         "send": {"entity_type": "warehouse", "id_from": "order_id", "command": "fetch_goods",
//                  "payload": {"order_id": "$order_id", "article": "$article"}}
//       },
//       {
//         "name": "await goods",
//         "wait": {"event": "goods.fetched", "correlation": "order_id",
//                  "merge": {"pick_id": "pick_id"},
//                  "timeout_ms": 43200000, "on_timeout": "goods not fetched"}
//       },
//       {
//         "name": "big order?",
//         "decide": {"branches": [{"path": "total", "op": ">", "value": 100,
//                                  "next": "completed"}],
//                    "otherwise": "completed"}
//       },
//       {"name": "completed", "end": {"outcome": "completed", "reason": "shipped",
//                                     "publish": "order.completed"}},
//       {"name": "payment timed out", "end": {"outcome": "canceled",
//                                             "reason": "payment not received in time"}},
//       {"name": "goods not fetched", "end": {"outcome": "failed", "compensate": true,
//                                             "reason": "goods not fetched in time"}}
//     ]
//   }

/// Parses and validates a flow document (schema above). Fails with invalid_argument
/// (persistence::describe gives the text): "flow JSON syntax error at line L, column C:
/// ..." for malformed JSON (columns count UTF-8 characters from 1), a message naming the
/// flow, step and field for missing fields, wrong types and unknown keys, or validate()'s
/// error for a well-formed but inconsistent flow.
[[nodiscard]] caf::expected<flow_definition> load_flow_json(std::string_view text);

/// Reads the file at `path` and loads it like load_flow_json. Fails with cannot_open when
/// the file cannot be read; load errors are prefixed with "flow file '<path>': ".
[[nodiscard]] caf::expected<flow_definition> load_flow_json_file(const std::string& path);

/// The definition as a pretty-printed flow document: fixed key order, two-space indent,
/// every `next` written out, defaults written where they matter, so that equal
/// definitions give equal text and load_flow_json(to_flow_json(d)) reproduces `d`.
/// Does not validate `d`. A wait that merges the same data path twice keeps the last.
[[nodiscard]] std::string to_flow_json(const flow_definition& def);

}  // namespace longhaul
