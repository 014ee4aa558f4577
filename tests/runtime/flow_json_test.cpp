// Tests of runtime/flow_json: loading flow documents (every error with its message),
// writing them back (exact text, round trip) and the JSON twin of the builder's order saga.
#include "runtime/flow_json.hpp"

#include "persistence/persistence_error.hpp"
#include "tests/runtime/flow_entities.hpp"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <unistd.h>
#include <fstream>
#include <sstream>
#include <string>

using namespace longhaul;
namespace json = boost::json;

namespace {

/// A small valid saga: charge (compensated by a refund) -> await payment (20 days, else
/// "give up") -> done; "give up" fails the flow and compensates.
json::object saga_doc() {
  return json::parse(R"({
    "name": "order",
    "key": "order_id",
    "started_by": "order.placed",
    "steps": [
      {"name": "charge",
       "send": {"entity_type": "payment", "id_from": "order_id", "command": "retrieve_payment",
                "payload": {"amount": "$total"}},
       "compensation": {"entity_type": "payment", "id_from": "order_id",
                        "command": "refund_payment"}},
      {"name": "await payment",
       "wait": {"event": "payment.received", "correlation": "order_id",
                "timeout_ms": 1728000000, "on_timeout": "give up"}},
      {"name": "done", "end": {"outcome": "completed"}},
      {"name": "give up", "end": {"outcome": "failed", "compensate": true}}
    ]
  })")
    .as_object();
}

json::object& step(json::object& doc, std::size_t i) {
  return doc["steps"].as_array()[i].as_object();
}

json::object& body(json::object& doc, std::size_t i, const char* kind) {
  return step(doc, i)[kind].as_object();
}

/// describe() of the load error, or "loaded" when the text loads.
std::string error_of(std::string_view text) {
  auto def = load_flow_json(text);
  if (def)
    return "loaded";
  CHECK(persistence::persistence_code(def.error())
        == persistence::persistence_errc::invalid_argument);
  return persistence::describe(def.error());
}

std::string error_of(const json::object& doc) {
  return error_of(json::serialize(doc));
}

flow_definition load(std::string_view text) {
  auto def = load_flow_json(text);
  if (!def)
    FAIL(persistence::describe(def.error()));
  return *def;
}

/// The order saga of flow_entities.hpp, written by hand as JSON.
constexpr const char* order_flow_json = R"({
  "name": "order",
  "key": "order_id",
  "started_by": "order.placed",
  "steps": [
    {
      "name": "retrieve payment",
      "send": {"entity_type": "payment", "id_from": "order_id", "command": "retrieve_payment",
               "payload": {"order_id": "$order_id", "amount": "$total"}},
      "compensation": {"entity_type": "payment", "id_from": "order_id",
                       "command": "refund_payment", "payload": {"order_id": "$order_id"}}
    },
    {
      "name": "await payment",
      "wait": {"event": "payment.received", "correlation": "order_id",
               "timeout_ms": 1728000000, "on_timeout": "payment timed out"}
    },
    {
      "name": "fetch goods",
      "send": {"entity_type": "warehouse", "id_from": "order_id", "command": "fetch_goods",
               "payload": {"order_id": "$order_id", "article": "$article"}}
    },
    {
      "name": "await goods",
      "wait": {"event": "goods.fetched", "correlation": "order_id", "merge": {"pick_id": "pick_id"},
               "timeout_ms": 43200000, "on_timeout": "goods not fetched"}
    },
    {"name": "completed",
     "end": {"outcome": "completed", "reason": "shipped", "publish": "order.completed"}},
    {"name": "payment timed out",
     "end": {"outcome": "canceled", "reason": "payment not received in time"}},
    {"name": "goods not fetched",
     "end": {"outcome": "failed", "reason": "goods not fetched in time", "compensate": true}}
  ]
})";

/// The documented example: the comment lines after "A complete example" in flow_json.hpp.
std::string header_example() {
  std::string here = __FILE__;
  auto root = here.substr(0, here.rfind("tests/runtime/"));
  std::ifstream in{root + "runtime/flow_json.hpp"};
  REQUIRE(in);
  std::string line;
  std::string out;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.find("A complete example") != std::string::npos) {
      inside = true;
      std::getline(in, line);  // the blank comment line after the heading
      continue;
    }
    if (!inside)
      continue;
    if (line.rfind("//   ", 0) != 0)
      break;
    out += line.substr(5) + "\n";
  }
  return out;
}

}  // namespace

// -- loading -------------------------------------------------------------------------

TEST_CASE("the JSON twin of the order saga loads to the same definition as the builder's") {
  auto built = shop::order_flow().build();
  REQUIRE(built);
  auto loaded = load(order_flow_json);
  CHECK(to_flow_json(loaded) == to_flow_json(*built));
  // Spot checks that the comparison looks at real content.
  REQUIRE(loaded.steps.size() == 7);
  const auto& wait = std::get<wait_step>(loaded.steps[3].kind);
  CHECK(wait.next == "completed");  // defaulted to the following step
  CHECK(wait.timeout == std::chrono::hours{12});
  CHECK(wait.merge == std::vector<std::pair<std::string, std::string>>{{"pick_id", "pick_id"}});
  CHECK(loaded.early_event_ttl == std::chrono::hours{1});
  CHECK(std::get<send_step>(loaded.steps[0].kind).next == "await payment");
}

TEST_CASE("a changed JSON twin no longer writes the same text as the builder's saga") {
  auto built = shop::order_flow().build();
  REQUIRE(built);
  auto doc = json::parse(order_flow_json).as_object();
  body(doc, 3, "wait")["timeout_ms"] = 43200001;
  CHECK(to_flow_json(load(json::serialize(doc))) != to_flow_json(*built));
}

TEST_CASE("the example in flow_json.hpp loads") {
  auto text = header_example();
  REQUIRE(text.find("\"steps\"") != std::string::npos);
  auto def = load(text);
  CHECK(def.steps.size() == 8);
  const auto& send = std::get<send_step>(def.steps[0].kind);
  REQUIRE(send.retry);
  CHECK(send.retry->max_attempts == 3);
  CHECK(send.retry->on_exhausted == "payment timed out");
  const auto& decide = std::get<decide_step>(def.steps[4].kind);
  REQUIRE(decide.branches.size() == 1);
  CHECK(decide.branches[0].value == json::value(100));
}

TEST_CASE("a send or wait without next continues with the following step") {
  auto def = load(json::serialize(saga_doc()));
  CHECK(std::get<send_step>(def.steps[0].kind).next == "await payment");
  CHECK(std::get<wait_step>(def.steps[1].kind).next == "done");
}

TEST_CASE("an explicit next overrides the following step") {
  auto doc = saga_doc();
  step(doc, 1)["next"] = "give up";
  // "done" is now unreachable, so let the timeout go there instead.
  body(doc, 1, "wait")["on_timeout"] = "done";
  auto def = load(json::serialize(doc));
  CHECK(std::get<wait_step>(def.steps[1].kind).next == "give up");
}

TEST_CASE("omitted optional fields take the builder's defaults") {
  auto def = load(json::serialize(saga_doc()));
  CHECK(def.early_event_ttl == std::chrono::hours{1});
  CHECK(def.steps[0].compensation->payload.is_null());
  const auto& done = std::get<end_step>(def.steps[2].kind);
  CHECK(done.reason.empty());
  CHECK_FALSE(done.compensate);
  CHECK_FALSE(done.publish_event);
  auto doc = saga_doc();
  step(doc, 0)["retry"] = json::object{{"max_attempts", 2}, {"on_exhausted", "give up"}};
  auto with_retry = load(json::serialize(doc));
  const auto& r = *std::get<send_step>(with_retry.steps[0].kind).retry;
  CHECK(r.initial_interval == std::chrono::milliseconds{1000});
  CHECK(r.factor == 2.0);
}

// -- syntax errors -------------------------------------------------------------------

TEST_CASE("a JSON syntax error reports its line and column") {
  CHECK(error_of("{\n  \"name\": \"order\",\n  \"key\" \"order_id\"\n}")
        == "invalid_argument: flow JSON syntax error at line 3, column 9: syntax error");
}

TEST_CASE("a truncated document reports the position of its end") {
  CHECK(error_of("{\n  \"name\": \"order\"")
        == "invalid_argument: flow JSON syntax error at line 2, column 18: incomplete JSON");
  CHECK(error_of("") == "invalid_argument: flow JSON syntax error at line 1, column 1: "
                        "incomplete JSON");
}

TEST_CASE("columns count characters, not bytes") {
  // "é" is two bytes; the stray 'x' is the 14th character of line 2.
  CHECK(error_of("{\n  \"name\": \"é\"x}")
        == "invalid_argument: flow JSON syntax error at line 2, column 14: syntax error");
}

TEST_CASE("text after the document is a syntax error") {
  CHECK(error_of("{}\n\n  {}") == "invalid_argument: flow JSON syntax error at line 3, "
                                  "column 3: extra data after the document");
}

TEST_CASE("comments and trailing commas are syntax errors") {
  CHECK(error_of("{\"name\": \"order\", // the flow\n}")
        == "invalid_argument: flow JSON syntax error at line 1, column 19: syntax error");
  CHECK(error_of("{\"name\": \"order\",\n}")
        == "invalid_argument: flow JSON syntax error at line 2, column 1: syntax error");
}

TEST_CASE("a duplicate key is a syntax error naming the key") {
  auto text = "{\"name\": \"order\", \"key\": \"order_id\",\n"
              " \"steps\": [{\"name\": \"a\", \"end\": {\"outcome\": \"completed\"},\n"
              "            \"name\": \"b\"}]}";
  CHECK(error_of(text)
        == "invalid_argument: flow JSON syntax error at line 3, column 18: duplicate key 'name'");
}

// -- missing fields, wrong types, unknown keys ------------------------------------------

TEST_CASE("a document that is not an object is rejected") {
  CHECK(error_of("[1, 2]")
        == "invalid_argument: flow JSON: the document must be a JSON object, got an array");
}

TEST_CASE("a missing flow name is named") {
  auto doc = saga_doc();
  doc.erase("name");
  CHECK(error_of(doc) == "invalid_argument: flow JSON, field 'name': missing (expected a string)");
}

TEST_CASE("missing top-level fields are named with the flow") {
  auto doc = saga_doc();
  doc.erase("key");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', field 'key': missing (expected a string)");
  doc = saga_doc();
  doc.erase("steps");
  CHECK(error_of(doc)
        == "invalid_argument: flow 'order', field 'steps': missing (expected an array of steps)");
}

TEST_CASE("a missing step field names the step and the field") {
  auto doc = saga_doc();
  body(doc, 1, "wait").erase("event");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'wait.event': missing (expected a string)");
  doc = saga_doc();
  body(doc, 0, "send").erase("command");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'charge', field "
                         "'send.command': missing (expected a string)");
  doc = saga_doc();
  body(doc, 2, "end").erase("outcome");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'done', field 'end.outcome': "
                         "missing (expected a string)");
}

TEST_CASE("a step without a name is named by its index") {
  auto doc = saga_doc();
  step(doc, 2).erase("name");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step '#2', field 'name': missing "
                         "(expected a string)");
}

TEST_CASE("a wrongly typed field names the step, the field and what it got") {
  auto doc = saga_doc();
  body(doc, 1, "wait")["timeout_ms"] = "20d";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'wait.timeout_ms': expected a positive integer, got \"20d\"");
  body(doc, 1, "wait")["timeout_ms"] = -5;
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'wait.timeout_ms': expected a positive integer, got -5");
  body(doc, 1, "wait")["timeout_ms"] = 1.5;
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'wait.timeout_ms': expected a positive integer, got 1.5");
  doc = saga_doc();
  body(doc, 0, "send")["payload"] = json::array{1};
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'charge', field "
                         "'send.payload': expected an object, got an array");
  doc = saga_doc();
  body(doc, 3, "end")["compensate"] = "yes";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'give up', field "
                         "'end.compensate': expected true or false, got \"yes\"");
  doc = saga_doc();
  doc["early_event_ttl_ms"] = 0;
  CHECK(error_of(doc) == "invalid_argument: flow 'order', field 'early_event_ttl_ms': "
                         "expected a positive integer, got 0");
  doc = saga_doc();
  doc["steps"] = json::object{};
  CHECK(error_of(doc) == "invalid_argument: flow 'order', field 'steps': expected an array of "
                         "steps, got an object");
  doc = saga_doc();
  body(doc, 1, "wait")["merge"] = json::object{{"pick_id", 7}};
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'wait.merge.pick_id': expected a string (the event field to copy), "
                         "got 7");
}

TEST_CASE("an unknown outcome lists the known ones") {
  auto doc = saga_doc();
  body(doc, 2, "end")["outcome"] = "done";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'done', field 'end.outcome': "
                         "expected \"completed\", \"failed\" or \"canceled\", got \"done\"");
}

TEST_CASE("an unknown key is an error naming the key and the known ones") {
  auto doc = saga_doc();
  body(doc, 1, "wait")["timout_ms"] = 1000;
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'wait.timout_ms': unknown key; expected one of event, correlation, "
                         "merge, timeout_ms, on_timeout, alternatives");
  doc = saga_doc();
  doc["stepz"] = json::array{};
  CHECK(error_of(doc) == "invalid_argument: flow 'order', field 'stepz': unknown key; expected "
                         "one of name, key, started_by, early_event_ttl_ms, steps");
  doc = saga_doc();
  step(doc, 0)["compensate"] = step(doc, 0)["compensation"];
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'charge', field 'compensate': "
                         "unknown key; expected one of name, send, wait, decide, end, next, "
                         "compensation, retry");
  doc = saga_doc();
  body(doc, 0, "send")["entity"] = "payment";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'charge', field 'send.entity': "
                         "unknown key; expected one of entity_type, id_from, command, payload");
}

TEST_CASE("a step has exactly one kind") {
  auto doc = saga_doc();
  step(doc, 2)["wait"] = body(doc, 1, "wait");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'done': a step has exactly one "
                         "of send, wait, decide, end (found 'wait' and 'end')");
  doc = saga_doc();
  step(doc, 2).erase("end");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'done': a step has exactly one "
                         "of send, wait, decide, end (found none)");
}

TEST_CASE("fields that do not belong to a step's kind are rejected") {
  auto doc = saga_doc();
  step(doc, 2)["next"] = "give up";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'done', field 'next': an end step "
                         "has no 'next'");
  doc = saga_doc();
  step(doc, 1)["retry"] = json::object{{"max_attempts", 2}, {"on_exhausted", "give up"}};
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field 'retry': "
                         "only send steps have a retry policy");
}

TEST_CASE("a decide branch needs a value unless it tests for presence") {
  auto doc = saga_doc();
  step(doc, 1)["next"] = "check";
  doc["steps"].as_array().insert(
    doc["steps"].as_array().begin() + 2,
    json::parse(R"({"name": "check", "decide": {"branches": [
      {"path": "amount", "op": "exists", "next": "done"},
      {"path": "amount", "op": ">", "next": "give up"}], "otherwise": "done"}})"));
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'check', field "
                         "'decide.branches[1].value': missing (operator '>' needs a value)");
  doc["steps"].as_array()[2].as_object()["next"] = "done";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'check', field 'next': a decide "
                         "step has no 'next' (use branches and otherwise)");
}

// -- semantic errors (validate) ------------------------------------------------------

TEST_CASE("an unknown target step is named with the field that names it") {
  auto doc = saga_doc();
  body(doc, 1, "wait")["on_timeout"] = "giv up";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'on_timeout': unknown target step 'giv up'");
}

TEST_CASE("an unreachable step is rejected") {
  auto doc = saga_doc();
  doc["steps"].as_array().emplace_back(
    json::parse(R"({"name": "orphan", "end": {"outcome": "canceled"}})"));
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'orphan': unreachable from the "
                         "first step 'charge'");
}

TEST_CASE("a wait without a correlation key is rejected") {
  auto doc = saga_doc();
  body(doc, 1, "wait").erase("correlation");
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'await payment', field "
                         "'correlation': a wait needs a correlation key (the event field "
                         "holding 'order_id')");
}

TEST_CASE("a loop without a wait or timer is rejected") {
  auto text = R"({"name": "spin", "key": "id", "steps": [
    {"name": "poke", "send": {"entity_type": "x", "id_from": "id", "command": "poke"}},
    {"name": "again?", "decide": {"branches": [{"path": "n", "op": "<", "value": 3,
                                                "next": "poke"}], "otherwise": "stop"}},
    {"name": "stop", "end": {"outcome": "completed"}}]})";
  CHECK(error_of(text) == "invalid_argument: flow 'spin', step 'poke': loop without a wait or "
                          "timer");
}

TEST_CASE("the same loop passes when it waits") {
  auto text = R"({"name": "spin", "key": "id", "steps": [
    {"name": "poke", "send": {"entity_type": "x", "id_from": "id", "command": "poke"}},
    {"name": "poked", "wait": {"event": "x.poked", "correlation": "id"}},
    {"name": "again?", "decide": {"branches": [{"path": "n", "op": "<", "value": 3,
                                                "next": "poke"}], "otherwise": "stop"}},
    {"name": "stop", "end": {"outcome": "completed"}}]})";
  CHECK(error_of(text) == "loaded");
}

TEST_CASE("a duplicate step name is rejected") {
  auto doc = saga_doc();
  step(doc, 3)["name"] = "done";
  body(doc, 1, "wait")["on_timeout"] = "done";
  CHECK(error_of(doc) == "invalid_argument: flow 'order', step 'done', field 'name': duplicate "
                         "step name");
}

TEST_CASE("a last send without next names no step") {
  auto text = R"({"name": "fire", "key": "id", "steps": [
    {"name": "poke", "send": {"entity_type": "x", "id_from": "id", "command": "poke"}}]})";
  CHECK(error_of(text) == "invalid_argument: flow 'fire', step 'poke', field 'next': names no "
                          "step");
}

TEST_CASE("bad retry policies are rejected with the field") {
  auto with_retry = [&](json::object retry) {
    auto d = saga_doc();
    step(d, 0)["retry"] = std::move(retry);
    return error_of(d);
  };
  CHECK(with_retry({{"max_attempts", 0}, {"on_exhausted", "give up"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.max_attempts': expected "
           "a positive integer, got 0");
  CHECK(with_retry({{"max_attempts", 5000000000}, {"on_exhausted", "give up"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.max_attempts': expected "
           "a positive integer up to 4294967295, got 5000000000");
  CHECK(with_retry({{"max_attempts", 3}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.on_exhausted': missing "
           "(expected a string)");
  CHECK(with_retry({{"max_attempts", 3}, {"factor", 0.5}, {"on_exhausted", "give up"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.factor': must be >= 1");
  CHECK(with_retry({{"max_attempts", 3}, {"factor", "2x"}, {"on_exhausted", "give up"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.factor': expected a "
           "number, got \"2x\"");
  CHECK(with_retry({{"max_attempts", 3}, {"on_exhausted", "nowhere"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.on_exhausted': unknown "
           "target step 'nowhere'");
  CHECK(with_retry({{"max_attempts", 3}, {"initial_interval_ms", -1}, {"on_exhausted", "give up"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.initial_interval_ms': "
           "expected a positive integer, got -1");
  CHECK(with_retry({{"max_attempts", 3}, {"retries", 3}, {"on_exhausted", "give up"}})
        == "invalid_argument: flow 'order', step 'charge', field 'retry.retries': unknown key; "
           "expected one of max_attempts, initial_interval_ms, factor, on_exhausted");
  CHECK(with_retry({{"max_attempts", 3}, {"factor", 1}, {"on_exhausted", "give up"}})
        == "loaded");
}

// -- files ---------------------------------------------------------------------------

TEST_CASE("a flow file loads and its errors name the file") {
  auto path = "flow_json_test_" + std::to_string(::getpid()) + ".json";
  {
    std::ofstream out{path};
    out << json::serialize(saga_doc());
  }
  auto def = load_flow_json_file(path);
  REQUIRE(def);
  CHECK(def->name == "order");
  {
    std::ofstream out{path};
    out << "{\n  \"name\": 1\n}";
  }
  def = load_flow_json_file(path);
  REQUIRE_FALSE(def);
  CHECK(persistence::describe(def.error())
        == "invalid_argument: flow file '" + path
             + "': flow JSON, field 'name': expected a string, got 1");
  std::remove(path.c_str());
  def = load_flow_json_file(path);
  REQUIRE_FALSE(def);
  CHECK(persistence::persistence_code(def.error()) == persistence::persistence_errc::cannot_open);
  CHECK(persistence::describe(def.error())
        == "cannot_open: cannot read flow file '" + path + "': No such file or directory");
  def = load_flow_json_file(".");
  REQUIRE_FALSE(def);
  CHECK(persistence::describe(def.error()) == "cannot_open: cannot read flow file '.': is a "
                                              "directory");
}

// -- writing -------------------------------------------------------------------------

TEST_CASE("to_flow_json writes a flow as this exact text") {
  auto doc = saga_doc();
  step(doc, 0)["retry"] =
    json::object{{"max_attempts", 3}, {"initial_interval_ms", 500}, {"on_exhausted", "give up"}};
  body(doc, 3, "end")["reason"] = "payment \"timed\" out";
  auto def = load(json::serialize(doc));
  CHECK(to_flow_json(def) == R"json({
  "name": "order",
  "key": "order_id",
  "started_by": "order.placed",
  "early_event_ttl_ms": 3600000,
  "steps": [
    {
      "name": "charge",
      "send": {
        "entity_type": "payment",
        "id_from": "order_id",
        "command": "retrieve_payment",
        "payload": {"amount": "$total"}
      },
      "next": "await payment",
      "compensation": {
        "entity_type": "payment",
        "id_from": "order_id",
        "command": "refund_payment"
      },
      "retry": {
        "max_attempts": 3,
        "initial_interval_ms": 500,
        "factor": 2.0,
        "on_exhausted": "give up"
      }
    },
    {
      "name": "await payment",
      "wait": {
        "event": "payment.received",
        "correlation": "order_id",
        "timeout_ms": 1728000000,
        "on_timeout": "give up"
      },
      "next": "done"
    },
    {"name": "done", "end": {"outcome": "completed", "compensate": false}},
    {
      "name": "give up",
      "end": {"outcome": "failed", "reason": "payment \"timed\" out", "compensate": true}
    }
  ]
}
)json");
}

TEST_CASE("to_flow_json output loads back to an equal definition") {
  auto text = R"({"name": "full", "key": "id", "early_event_ttl_ms": 5000, "steps": [
    {"name": "ask", "send": {"entity_type": "svc", "id_from": "meta.svc_id", "command": "ask",
      "payload": {"nested": {"list": [1, 2.5, 3.0, -0.0, 1e300, "x", null, true, {}, []],
                             "deep": {"deeper": {"deepest": "$a.b"}}},
                  "unicode": "gr\u00fc\u00dfe \u2713", "escapes": "tab\tquote\"back\\slash"}},
     "retry": {"max_attempts": 4, "initial_interval_ms": 250, "factor": 1.5,
               "on_exhausted": "failed"}},
    {"name": "answered", "wait": {"event": "svc.answered", "correlation": "request_id",
      "merge": {"answer": "body.answer", "by": "who"}}, "next": "route"},
    {"name": "route", "decide": {"branches": [
      {"path": "answer", "op": "==", "value": "yes", "next": "ok"},
      {"path": "score", "op": ">=", "value": 0.75, "next": "ok"},
      {"path": "veto", "op": "exists", "next": "failed"},
      {"path": "x", "op": "!=", "value": null, "next": "failed"},
      {"path": "tags", "op": "==", "value": ["a", {"b": 1}], "next": "ok"}],
      "otherwise": "failed"}},
    {"name": "ok", "end": {"outcome": "completed", "publish": "full.done"}},
    {"name": "failed", "end": {"outcome": "canceled", "reason": "no", "compensate": true}}]})";
  auto first = to_flow_json(load(text));
  auto second_def = load(first);
  auto second = to_flow_json(second_def);
  CHECK(first == second);
  // The values survived with their types.
  const auto& send = std::get<send_step>(second_def.steps[0].kind);
  const auto& list = send.command.payload.at("nested").at("list").as_array();
  CHECK(list[0].is_int64());
  CHECK(list[2].is_double());
  CHECK(list[2].as_double() == 3.0);
  CHECK(list[4].as_double() == 1e300);
  CHECK(send.command.payload.at("unicode").as_string() == "gr\u00fc\u00dfe \u2713");
  CHECK(send.retry->factor == 1.5);
  const auto& wait = std::get<wait_step>(second_def.steps[1].kind);
  CHECK(wait.merge
        == std::vector<std::pair<std::string, std::string>>{{"answer", "body.answer"},
                                                            {"by", "who"}});
  CHECK_FALSE(wait.timeout);
  const auto& decide = std::get<decide_step>(second_def.steps[2].kind);
  REQUIRE(decide.branches.size() == 5);
  CHECK(decide.branches[1].value.as_double() == 0.75);
  CHECK(decide.branches[2].value.is_null());
  CHECK(decide.branches[3].value.is_null());
  CHECK(second_def.trigger.event.empty());
  CHECK(second_def.early_event_ttl == std::chrono::milliseconds{5000});
  CHECK(first.find("\"started_by\"") == std::string::npos);
}

TEST_CASE("to_flow_json of a builder flow loads back to the same text") {
  auto built = shop::order_flow().build();
  REQUIRE(built);
  auto text = to_flow_json(*built);
  CHECK(to_flow_json(load(text)) == text);
  CHECK(to_flow_json(*built) == text);  // deterministic
}
