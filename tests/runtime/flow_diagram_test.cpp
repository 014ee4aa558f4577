// Tests of runtime/flow_diagram: exact Mermaid and DOT text of a small saga, trace
// highlighting, decide/retry drawing, durations, and SVG through Graphviz when installed.
#include "runtime/flow_diagram.hpp"

#include "persistence/persistence_error.hpp"
#include "runtime/flow_engine.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

using namespace longhaul;
using namespace std::chrono_literals;

namespace {

/// charge (compensated by refund_payment) -> await payment (20 days, else "give up")
/// -> done; "give up" fails the flow and compensates.
flow_definition saga() {
  flow_builder b{"order", "order_id"};
  b.started_by("order.placed")
    .send("charge", {"payment", "order_id", "retrieve_payment",
                     boost::json::object{{"amount", "$total"}}})
    .compensate_with({"payment", "order_id", "refund_payment", boost::json::object{}})
    .wait("await payment", "payment.received", "order_id")
    .timeout(20 * 24h, "give up")
    .end("done", flow_outcome::completed)
    .end("give up", flow_outcome::failed, "payment timed out", true);
  auto def = b.build();
  REQUIRE(def);
  return *def;
}

/// A flow with a retried send, a merge, a decision and no trigger event.
flow_definition loan() {
  flow_builder b{"loan", "loan_id"};
  b.send("score", {"scoring", "applicant_id", "score_applicant", boost::json::object{}})
    .retry({3, 1000ms, 2.0, "rejected"})
    .wait("scored", "applicant.scored", "loan_id")
    .merge("score", "score")
    .timeout(90s, "rejected")
    .decide("check score", "rejected")
    .when("score", ">=", 700, "approved")
    .when("vip", "exists", nullptr, "approved")
    .when("tier", "==", "gold", "approved")
    .end("approved", flow_outcome::completed)
    .publish("loan.approved")
    .end("rejected", flow_outcome::canceled, "score too low");
  auto def = b.build();
  REQUIRE(def);
  return *def;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Sets PATH for one scope and restores it (tests run on one thread).
class path_override {
public:
  explicit path_override(const std::string& path) {
    if (const char* old = std::getenv("PATH"))
      old_ = old;
    ::setenv("PATH", path.c_str(), 1);
  }
  ~path_override() { ::setenv("PATH", old_.c_str(), 1); }
  path_override(const path_override&) = delete;
  path_override& operator=(const path_override&) = delete;

private:
  std::string old_;
};

}  // namespace

TEST_CASE("a three-step saga draws as this exact Mermaid flowchart") {
  CHECK(to_mermaid(saga()) == R"mmd(flowchart TD
  %% flow order (key order_id)
  trigger>"order.placed"]
  s0["charge<br/>send payment: retrieve_payment"]
  c0("compensate: refund_payment")
  s1{{"await payment<br/>wait for payment.received"}}
  s2(["done<br/>end: completed"])
  s3(["give up<br/>end: failed, compensates"])
  trigger --> s0
  s0 --> s1
  s0 --o c0
  s1 --> s2
  s1 -.->|"timeout 20d"| s3
  linkStyle 2 stroke:#c0392b
  linkStyle 4 stroke-dasharray:6 4
  classDef compensation fill:#fdecea,stroke:#c0392b
  class c0 compensation
)mmd");
}

TEST_CASE("another event that ends a wait draws as a labelled edge to its own step") {
  flow_builder b{"order", "order_id"};
  b.send("charge", {"payment", "order_id", "retrieve_payment", boost::json::object{}})
    .wait("await payment", "payment.received", "order_id")
    .or_event("payment.failed", "canceled")
    .end("done", flow_outcome::completed)
    .end("canceled", flow_outcome::canceled, "payment failed");
  auto def = b.build();
  REQUIRE(def);
  auto mermaid = to_mermaid(*def);
  CHECK(contains(mermaid, R"(s1 --> s2)"));
  CHECK(contains(mermaid, R"(s1 -->|"payment.failed"| s3)"));
  CHECK(contains(to_dot(*def), R"(s1 -> s3 [label="payment.failed"])"));
}

TEST_CASE("a three-step saga draws as this exact DOT graph") {
  CHECK(to_dot(saga()) == R"dot(digraph "order" {
  graph [label="flow order (key order_id)", labelloc=t, fontname="Helvetica"];
  node [fontname="Helvetica", fontsize=11];
  edge [fontname="Helvetica", fontsize=10];
  trigger [label="order.placed", shape=cds];
  s0 [label="charge\nsend payment: retrieve_payment", shape=box];
  c0 [label="compensate: refund_payment", shape=box, style="rounded,filled", fillcolor="#fdecea", color="#c0392b"];
  { rank=same; s0; c0; }
  s1 [label="await payment\nwait for payment.received", shape=hexagon];
  s2 [label="done\nend: completed", shape=box, peripheries=2, style="rounded"];
  s3 [label="give up\nend: failed, compensates", shape=box, peripheries=2, style="rounded"];
  trigger -> s0;
  s0 -> s1;
  s0 -> c0 [color="#c0392b", arrowhead=odot];
  s1 -> s2;
  s1 -> s3 [label="timeout 20d", style=dashed];
}
)dot");
}

TEST_CASE("a trace highlights executed steps, the current step and the path between them") {
  flow_trace trace{{"charge", "await payment"}, "await payment"};
  CHECK(to_mermaid(saga(), &trace) == R"mmd(flowchart TD
  %% flow order (key order_id)
  trigger>"order.placed"]
  s0["charge<br/>send payment: retrieve_payment"]
  c0("compensate: refund_payment")
  s1{{"await payment<br/>wait for payment.received"}}
  s2(["done<br/>end: completed"])
  s3(["give up<br/>end: failed, compensates"])
  trigger --> s0
  s0 --> s1
  s0 --o c0
  s1 --> s2
  s1 -.->|"timeout 20d"| s3
  linkStyle 0,1 stroke:#2e7d32,stroke-width:3px
  linkStyle 2 stroke:#c0392b
  linkStyle 4 stroke-dasharray:6 4
  classDef compensation fill:#fdecea,stroke:#c0392b
  class c0 compensation
  classDef executed fill:#d4edda,stroke:#2e7d32,stroke-width:2px
  classDef current fill:#ffe8cc,stroke:#e67e22,stroke-width:4px
  class s0 executed
  class s1 current
)mmd");
  CHECK(to_dot(saga(), &trace) == R"dot(digraph "order" {
  graph [label="flow order (key order_id)", labelloc=t, fontname="Helvetica"];
  node [fontname="Helvetica", fontsize=11];
  edge [fontname="Helvetica", fontsize=10];
  trigger [label="order.placed", shape=cds];
  s0 [label="charge\nsend payment: retrieve_payment", shape=box, style="filled", fillcolor="#d4edda", color="#2e7d32", penwidth=2];
  c0 [label="compensate: refund_payment", shape=box, style="rounded,filled", fillcolor="#fdecea", color="#c0392b"];
  { rank=same; s0; c0; }
  s1 [label="await payment\nwait for payment.received", shape=hexagon, style="filled", fillcolor="#ffe8cc", color="#e67e22", penwidth=4];
  s2 [label="done\nend: completed", shape=box, peripheries=2, style="rounded"];
  s3 [label="give up\nend: failed, compensates", shape=box, peripheries=2, style="rounded"];
  trigger -> s0 [color="#2e7d32", penwidth=3];
  s0 -> s1 [color="#2e7d32", penwidth=3];
  s0 -> c0 [color="#c0392b", arrowhead=odot];
  s1 -> s2;
  s1 -> s3 [label="timeout 20d", style=dashed];
}
)dot");
}

TEST_CASE("a trace that ended on a timeout highlights the timeout edge, not the other way") {
  flow_trace trace{{"charge", "await payment", "give up"}, ""};
  auto mermaid = to_mermaid(saga(), &trace);
  CHECK(contains(mermaid, "  linkStyle 0,1 stroke:#2e7d32,stroke-width:3px\n"));
  CHECK(contains(mermaid, "  linkStyle 4 stroke-dasharray:6 4,stroke:#2e7d32,stroke-width:3px\n"));
  CHECK(contains(mermaid, "  class s0,s1,s3 executed\n"));
  CHECK_FALSE(contains(mermaid, "class s1 current"));
  CHECK_FALSE(contains(mermaid, "linkStyle 3"));  // s1 -> s2 was not taken
  auto dot = to_dot(saga(), &trace);
  CHECK(contains(dot, "  s1 -> s3 [label=\"timeout 20d\", style=dashed, color=\"#2e7d32\", "
                      "penwidth=3];\n"));
  CHECK(contains(dot, "  s1 -> s2;\n"));
  CHECK(contains(dot, "  s3 [label=\"give up\\nend: failed, compensates\", shape=box, "
                      "peripheries=2, style=\"rounded,filled\", fillcolor=\"#d4edda\", "
                      "color=\"#2e7d32\", penwidth=2];\n"));
}

TEST_CASE("a trace with unknown step names highlights only the known ones") {
  flow_trace trace{{"charge", "renamed step"}, "gone"};
  auto mermaid = to_mermaid(saga(), &trace);
  CHECK(contains(mermaid, "  class s0 executed\n"));
  CHECK_FALSE(contains(mermaid, " current\n  class"));
  CHECK_FALSE(contains(mermaid, "class s1"));
  CHECK(contains(mermaid, "  linkStyle 0 stroke:#2e7d32,stroke-width:3px\n"));
}

TEST_CASE("trace_of takes the executed steps and the current step of a status") {
  flow_status status;
  status.executed = {"charge", "await payment"};
  status.current_step = "await payment";
  status.completed = {"charge"};
  auto trace = trace_of(status);
  CHECK(trace.executed == status.executed);
  CHECK(trace.current == "await payment");
}

TEST_CASE("decide branches are labelled with their condition and retries draw dotted") {
  auto def = loan();
  auto mermaid = to_mermaid(def);
  CHECK(contains(mermaid, "  trigger>\"start\"]\n"));
  CHECK(contains(mermaid, "  s0[\"score<br/>send scoring: score_applicant<br/>up to 3 attempts\"]\n"));
  CHECK(contains(mermaid, "  s2{\"check score\"}\n"));
  CHECK(contains(mermaid, "  s3([\"approved<br/>end: completed<br/>publishes loan.approved\"])\n"));
  CHECK(contains(mermaid, "  s0 -.->|\"retries exhausted\"| s4\n"));
  CHECK(contains(mermaid, "  s1 -.->|\"timeout 1m 30s\"| s4\n"));
  CHECK(contains(mermaid, "  s2 -->|\"score #gt;= 700\"| s3\n"));
  CHECK(contains(mermaid, "  s2 -->|\"vip exists\"| s3\n"));
  CHECK(contains(mermaid, "  s2 -->|\"tier == #quot;gold#quot;\"| s3\n"));
  CHECK(contains(mermaid, "  s2 -->|\"otherwise\"| s4\n"));
  CHECK(contains(mermaid, "  linkStyle 2 stroke-dasharray:2 3\n"));
  CHECK(contains(mermaid, "  linkStyle 4 stroke-dasharray:6 4\n"));
  auto dot = to_dot(def);
  CHECK(contains(dot, "  s0 -> s4 [label=\"retries exhausted\", style=dotted];\n"));
  CHECK(contains(dot, "  s2 [label=\"check score\", shape=diamond];\n"));
  CHECK(contains(dot, "  s2 -> s3 [label=\"score >= 700\"];\n"));
  CHECK(contains(dot, "  s2 -> s3 [label=\"tier == \\\"gold\\\"\"];\n"));
  CHECK(contains(dot, "  s2 -> s4 [label=\"otherwise\"];\n"));
}

TEST_CASE("labels escape what Mermaid and DOT would interpret") {
  flow_builder b{"odd \"flow\"", "id"};
  b.send("a <b> & #1", {"svc\\x", "id", "go", {}}).end("end\nnow", flow_outcome::completed);
  auto def = b.build();
  REQUIRE(def);
  auto mermaid = to_mermaid(*def);
  CHECK(contains(mermaid, "  s0[\"a #lt;b#gt; #amp; #35;1<br/>send svc\\x: go\"]\n"));
  CHECK(contains(mermaid, "  s1([\"end now<br/>end: completed\"])\n"));
  CHECK(contains(mermaid, "  %% flow odd #quot;flow#quot; (key id)\n"));
  auto dot = to_dot(*def);
  CHECK(contains(dot, "digraph \"odd \\\"flow\\\"\" {\n"));
  CHECK(contains(dot, "  s0 [label=\"a <b> & #1\\nsend svc\\\\x: go\", shape=box];\n"));
  CHECK(contains(dot, "  s1 [label=\"end\\nnow\\nend: completed\""));
}

TEST_CASE("rendering is deterministic") {
  flow_trace trace{{"score", "scored"}, "scored"};
  CHECK(to_mermaid(loan(), &trace) == to_mermaid(loan(), &trace));
  CHECK(to_dot(loan(), &trace) == to_dot(loan(), &trace));
}

TEST_CASE("durations are written with their largest units") {
  CHECK(human_duration(20 * 24h) == "20d");
  CHECK(human_duration(36h) == "1d 12h");
  CHECK(human_duration(90s) == "1m 30s");
  CHECK(human_duration(12h + 1ms) == "12h 1ms");
  CHECK(human_duration(250ms) == "250ms");
  CHECK(human_duration(0ms) == "0ms");
}

TEST_CASE("to_svg renders the graph with graphviz") {
  if (::access("/usr/bin/dot", X_OK) != 0 && ::access("/usr/local/bin/dot", X_OK) != 0) {
    WARN("graphviz 'dot' is not installed; SVG rendering not tested");
    return;
  }
  flow_trace trace{{"charge", "await payment"}, "await payment"};
  auto svg = to_svg(saga(), &trace);
  REQUIRE(svg);
  CHECK(contains(*svg, "<svg"));
  CHECK(contains(*svg, "</svg>"));
  CHECK(contains(*svg, ">await payment</text>"));
  CHECK(contains(*svg, ">compensate: refund_payment</text>"));
  CHECK(contains(*svg, ">timeout 20d</text>"));
  CHECK(contains(*svg, "fill=\"#ffe8cc\""));  // the current step
}

TEST_CASE("to_svg without graphviz on PATH says to install it") {
  path_override path{"/nonexistent-longhaul-dir"};
  auto svg = to_svg(saga());
  REQUIRE_FALSE(svg);
  CHECK(persistence::describe(svg.error())
        == "cannot_open: graphviz 'dot' not found; install graphviz");
}

TEST_CASE("to_svg reports dot's own error when dot fails") {
  // A stand-in `dot` that fails the way graphviz does, to test the failure path.
  std::string dir = "flow_diagram_test_bin_" + std::to_string(::getpid());
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  auto fake = dir + "/dot";
  {
    std::ofstream out{fake};
    out << "#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 3\n";
  }
  REQUIRE(::chmod(fake.c_str(), 0700) == 0);
  char cwd[4096];
  REQUIRE(::getcwd(cwd, sizeof(cwd)) != nullptr);
  caf::expected<std::string> svg{std::string{}};
  {
    path_override path{std::string{cwd} + "/" + dir};
    svg = to_svg(saga());
  }
  ::unlink(fake.c_str());
  ::rmdir(dir.c_str());
  REQUIRE_FALSE(svg);
  CHECK(persistence::describe(svg.error())
        == "internal: graphviz dot failed: exit status 3: Error: syntax error in line 1");
}
