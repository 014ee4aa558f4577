// Flow diagrams: draws a flow_definition as Mermaid or Graphviz DOT text (and SVG through
// Graphviz's `dot`), optionally highlighting where one instance has been (a flow_trace
// taken from its flow_status). Reads definitions only; nothing here runs a flow.
#pragma once

#include "runtime/flow_definition.hpp"

#include <caf/expected.hpp>

#include <string>
#include <vector>

namespace longhaul {

struct flow_status;  // runtime/flow_engine.hpp

/// Where one instance has been: the steps it entered, in order, and the step it is in.
struct flow_trace {
  std::vector<std::string> executed;  ///< step names, in the order they were entered
  std::string current;                ///< empty when the instance has ended
};

/// The trace of an instance: executed = status.executed, current = status.current_step.
[[nodiscard]] flow_trace trace_of(const flow_status& status);

// Drawing conventions, shared by both formats (node ids are s<step index>, compensation
// nodes c<step index>, the trigger node "trigger", so output is deterministic):
//   nodes   send: box; wait: hexagon; decide: diamond; end: stadium (Mermaid) or
//           double-bordered rounded box (DOT) with the outcome, "compensates" when it
//           compensates;
//           compensation: a separate rounded red node "compensate: <command>".
//   edges   next, decide branches (labelled with their condition) and otherwise: plain
//           arrows; wait timeout: dashed, "timeout 20d"; retries exhausted: dotted,
//           "retries exhausted"; step -> its compensation: red, circle head.
//   trace   executed steps green, the current step orange with a thick border; edges
//           between consecutive executed steps (and trigger -> first step) thick green.
// Step names that do not exist in the definition are ignored in a trace.

/// The flow as a Mermaid flowchart (`flowchart TD`), one statement per line.
[[nodiscard]] std::string to_mermaid(const flow_definition& def,
                                     const flow_trace* trace = nullptr);

/// The flow as a Graphviz digraph (DOT language).
[[nodiscard]] std::string to_dot(const flow_definition& def, const flow_trace* trace = nullptr);

/// The flow as SVG, rendered by running Graphviz (`dot -Tsvg`, found on PATH) on
/// to_dot(def, trace). Blocks until dot exits. Fails with cannot_open "graphviz 'dot' not
/// found; install graphviz" when dot is not on PATH, and with internal (dot's message)
/// when dot fails or temporary files cannot be written.
[[nodiscard]] caf::expected<std::string> to_svg(const flow_definition& def,
                                                const flow_trace* trace = nullptr);

/// A duration for people: largest units first, zero parts left out ("20d", "1d 12h",
/// "1m 30s", "250ms"; "0ms" for zero).
[[nodiscard]] std::string human_duration(std::chrono::milliseconds d);

}  // namespace longhaul
