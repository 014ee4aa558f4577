// Tests of the flow engine (runtime/flow_engine.hpp) through the runtime facade, in
// deterministic mode on a virtual clock: every step kind, timeouts and retries ending in
// compensation, early, duplicate and alternative events, cancel, flow_status, and a flow
// that survives a runtime restart on SQLite in the middle of a wait.
#include "tests/runtime/flow_entities.hpp"
#include "tests/runtime/runtime_fixture.hpp"

#include "persistence/forwarding_journal.hpp"
#include "persistence/sqlite_journal.hpp"

#include <algorithm>

namespace flowtest {

namespace json = boost::json;
namespace lp = longhaul::persistence;
using namespace std::chrono_literals;
using longhaul::flow_builder;
using longhaul::flow_command;
using longhaul::flow_outcome;
using longhaul::retry_policy;
using lp::time_ms;

/// Start of the virtual clock in every test: 2026-01-01T00:00:00Z.
constexpr time_ms t0 = 1767225600000;
constexpr time_ms minute_ms = 60 * 1000;
constexpr time_ms hour_ms = 60 * minute_ms;
constexpr time_ms day_ms = 24 * hour_ms;

// -- test entities besides shop::payment and shop::warehouse -----------------------------

/// Records the payload it was sent, so a test can compare it with the flow's template.
struct note {
  static constexpr auto command_name = "note";
  std::string order_id;
  json::object body;
};
struct noted {
  static constexpr auto event_name = "recorder.noted";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  json::object body;
};
BOOST_DESCRIBE_STRUCT(note, (), (order_id, body))
BOOST_DESCRIBE_STRUCT(noted, (), (order_id, body))
struct recorder_state {
  std::int64_t notes = 0;
};
BOOST_DESCRIBE_STRUCT(recorder_state, (), (notes))

struct recorder {
  static constexpr auto type_name = "recorder";
  using state = recorder_state;
  using command = std::variant<note>;
  using event = std::variant<noted>;
  static longhaul::decision<event> decide(const state&, const command& c) {
    const auto& n = std::get<note>(c);
    return noted{n.order_id, n.body};
  }
  static void apply(state& s, const event&) { ++s.notes; }
};

/// Stock with 10 items per order: larger reservations are rejected (an undeliverable
/// command for the flow); a release without a reservation is rejected too.
struct reserve_stock {
  static constexpr auto command_name = "reserve_stock";
  std::string order_id;
  std::int64_t qty = 0;
};
struct release_stock {
  static constexpr auto command_name = "release_stock";
  std::string order_id;
};
struct stock_reserved {
  static constexpr auto event_name = "stock.reserved";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t qty = 0;
};
struct stock_released {
  static constexpr auto event_name = "stock.released";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t qty = 0;
};
BOOST_DESCRIBE_STRUCT(reserve_stock, (), (order_id, qty))
BOOST_DESCRIBE_STRUCT(release_stock, (), (order_id))
BOOST_DESCRIBE_STRUCT(stock_reserved, (), (order_id, qty))
BOOST_DESCRIBE_STRUCT(stock_released, (), (order_id, qty))
struct stock_state {
  std::int64_t reserved = 0;
  std::int64_t releases = 0;
};
BOOST_DESCRIBE_STRUCT(stock_state, (), (reserved, releases))

struct stock {
  static constexpr auto type_name = "stock";
  using state = stock_state;
  using command = std::variant<reserve_stock, release_stock>;
  using event = std::variant<stock_reserved, stock_released>;
  static longhaul::decision<event> decide(const state& s, const command& c) {
    if (auto* r = std::get_if<reserve_stock>(&c)) {
      if (r->qty <= 0 || r->qty > 10)
        return longhaul::reject("only 10 in stock");
      return stock_reserved{r->order_id, r->qty};
    }
    if (s.reserved == 0)
      return longhaul::reject("nothing reserved");
    return stock_released{std::get<release_stock>(c).order_id, s.reserved};
  }
  static void apply(state& s, const event& e) {
    if (auto* r = std::get_if<stock_reserved>(&e)) {
      s.reserved += r->qty;
    } else {
      s.reserved = 0;
      ++s.releases;
    }
  }
};

/// Subscriber of order.completed (payload: the order flow's data, field by field).
struct order_completed {
  static constexpr auto event_name = "order.completed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t total = 0;
  std::string article;
  std::int64_t amount = 0;
  std::string pick_id;
};
struct completion_logged {
  static constexpr auto event_name = "order_log.completion_logged";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string pick_id;
};
BOOST_DESCRIBE_STRUCT(order_completed, (), (order_id, total, article, amount, pick_id))
BOOST_DESCRIBE_STRUCT(completion_logged, (), (order_id, pick_id))
struct order_log_state {
  std::vector<std::string> orders;
};
BOOST_DESCRIBE_STRUCT(order_log_state, (), (orders))

struct order_log {
  static constexpr auto type_name = "order_log";
  using state = order_log_state;
  using command = std::variant<order_completed>;
  using event = std::variant<completion_logged>;
  static longhaul::decision<event> decide(const state&, const command& c) {
    const auto& e = std::get<order_completed>(c);
    return completion_logged{e.order_id, e.pick_id};
  }
  static void apply(state& s, const event& e) {
    s.orders.push_back(std::get<completion_logged>(e).order_id);
  }
};

// -- SQLite written inline, so that deterministic mode sees writes complete at once ------

/// Passes every call to a SQLite journal and completes writes on the calling thread
/// (write_and_wait), as the in-memory journal does.
class inline_sqlite final : public lp::forwarding_journal<lp::sqlite_journal> {
public:
  using forwarding_journal::forwarding_journal;

  void write(lp::atomic_write w, lp::write_callback done) override {
    done(inner().write_and_wait(std::move(w)));
  }

};

// -- the runtime under test ---------------------------------------------------------------

/// A deterministic runtime with payment, warehouse, recorder, stock and order_log (which
/// subscribes to order.completed, instance "all") plus the flows added before start().
/// Storage: an in-memory journal, or a SQLite file (on_sqlite); the virtual clock starts
/// at `start` and stamps the journal's writes.
class flow_runtime {
public:
  longhaul::runtime_config cfg;
  std::shared_ptr<longhaul::actors::virtual_clock> clock;
  std::vector<longhaul::flow_definition> flows;

  explicit flow_runtime(time_ms start = t0) {
    cfg.deterministic = true;
    cfg.storage = longhaul::storage_kind::memory;
    const char* env = std::getenv("LONGHAUL_TEST_LOG");
    cfg.log_level = env != nullptr ? env : "off";
    cfg.passivate_after = 0ms;
    clock = std::make_shared<longhaul::actors::virtual_clock>(start);
    cfg.clock = clock;
    lp::memory_journal_config mc;
    mc.clock = [c = clock] { return c->now(); };
    cfg.journal_override = std::make_shared<lp::memory_journal>(mc);
  }

  /// Storage in the SQLite file `path` (written inline); the clock starts at `start`.
  static std::unique_ptr<flow_runtime> on_sqlite(std::string path, time_ms start) {
    auto f = std::make_unique<flow_runtime>(start);
    f->sqlite_path_ = std::move(path);
    f->cfg.journal_override = nullptr;
    return f;
  }

  ~flow_runtime() {
    if (rt_)
      rt_->stop();
  }

  /// Adds a flow (built and validated here) to register at start().
  flow_runtime& add(const flow_builder& b) {
    auto def = b.build();
    INFO((def ? std::string{} : lp::describe(def.error())));
    REQUIRE(def);
    flows.push_back(std::move(*def));
    return *this;
  }

  void start() {
    if (!sqlite_path_.empty()) {
      lp::sqlite_journal_config sc;
      sc.path = sqlite_path_;
      sc.sync = lp::sync_mode::normal;
      sc.clock = [c = clock] { return c->now(); };
      auto j = lp::sqlite_journal::open(sc);
      INFO((j ? std::string{} : lp::describe(j.error())));
      REQUIRE(j);
      cfg.journal_override = std::make_shared<inline_sqlite>(std::move(*j));
    }
    rt_ = std::make_unique<longhaul::runtime>(cfg);
    rt_->register_entity<shop::payment>()
      .register_entity<shop::warehouse>()
      .register_entity<recorder>()
      .register_entity<stock>()
      .register_entity<order_log>();
    rt_->subscribe<order_completed>("order_log",
                                    [](const order_completed&) { return std::string{"all"}; });
    for (const auto& def : flows) {
      auto err = rt_->register_flow(def);
      INFO(lp::describe(err));
      REQUIRE(!err);
    }
    auto err = rt_->start();
    INFO(lp::describe(err));
    REQUIRE(!err);
  }

  longhaul::runtime& rt() {
    REQUIRE(rt_);
    return *rt_;
  }

  lp::journal& journal() { return rt().journal(); }

  // -- verbs ----------------------------------------------------------------------------

  /// Starts flow instance `id`; fails the test if the start fails.
  void start_flow(std::string_view flow, std::string_view id, json::object data) {
    auto err = rt().start_flow(flow, id, std::move(data));
    INFO(lp::describe(err));
    REQUIRE(!err);
  }

  /// Delivers domain event `event` to flow instance `flow`/`id` with `message_id`, as a
  /// subscription delivery from the outbox would.
  caf::expected<longhaul::actors::command_reply>
  deliver(std::string_view flow, std::string_view id, std::string event, json::object payload,
          std::string message_id) {
    longhaul::actors::command_envelope env;
    env.entity_type = std::string{flow};
    env.entity_id = std::string{id};
    env.name = std::move(event);
    env.payload = std::move(payload);
    env.message_id = std::move(message_id);
    return rt().ask_envelope(std::move(env));
  }

  /// Delivers and fails the test unless it was handled as a new message.
  void deliver_ok(std::string_view flow, std::string_view id, std::string event,
                  json::object payload, std::string message_id) {
    auto r = deliver(flow, id, std::move(event), std::move(payload), std::move(message_id));
    INFO(semantics::text_of(r));
    REQUIRE(r);
    REQUIRE_FALSE(r->duplicate);
  }

  void advance(std::chrono::milliseconds d) { rt().advance_time(d); }

  // -- observations -----------------------------------------------------------------------

  longhaul::flow_status status(std::string_view flow, std::string_view id) {
    auto r = rt().flow_status_of(flow, id);
    INFO(semantics::text_of(r));
    REQUIRE(r);
    return std::move(*r);
  }

  std::vector<lp::event_record> events(const std::string& pid) {
    return semantics::events_of(journal(), pid);
  }

  std::vector<std::string> names(const std::string& pid) {
    return semantics::event_names(journal(), pid);
  }

  /// Payloads of the stored events of type `type` of `pid`, in order.
  std::vector<json::object> payloads(const std::string& pid, std::string_view type) {
    std::vector<json::object> out;
    for (const auto& ev : events(pid))
      if (ev.type == type)
        out.push_back(json::parse(ev.payload_json).as_object());
    return out;
  }

  /// The stored events of type `type` of `pid`, in order.
  std::vector<lp::event_record> events_of_type(const std::string& pid, std::string_view type) {
    std::vector<lp::event_record> out;
    for (auto& ev : events(pid))
      if (ev.type == type)
        out.push_back(std::move(ev));
    return out;
  }

  /// Field `field` (a string) of each stored event of type `type` of `pid`.
  std::vector<std::string> fields(const std::string& pid, std::string_view type,
                                  std::string_view field) {
    std::vector<std::string> out;
    for (const auto& p : payloads(pid, type))
      out.emplace_back(p.at(field).as_string());
    return out;
  }

  std::vector<lp::timer_record> timers(const std::string& pid) {
    auto r = journal().timers_of(pid);
    REQUIRE(r);
    return std::move(*r);
  }

  /// Dead letters addressed to `destination`.
  std::vector<lp::dead_letter_record> dead_letters_to(const std::string& destination) {
    std::vector<lp::dead_letter_record> out;
    for (auto& d : semantics::dead_letters_of(journal()))
      if (d.destination == destination)
        out.push_back(std::move(d));
    return out;
  }

  /// The state of `type`/`id` as JSON.
  json::object state_of(std::string_view type, std::string_view id) {
    auto r = rt().status(type, id);
    INFO(semantics::text_of(r));
    REQUIRE(r);
    return json::parse(r->state_json).as_object();
  }

private:
  std::string sqlite_path_;
  std::unique_ptr<longhaul::runtime> rt_;
};

using strings = std::vector<std::string>;

/// The order saga (shop::order_flow) with the given instance data.
json::object order(std::int64_t total, std::string article) {
  return json::object{{"total", total}, {"article", std::move(article)}};
}

}  // namespace flowtest

using namespace flowtest;

// -- send ---------------------------------------------------------------------------------

TEST_CASE("a send step delivers exactly one command with its payload template filled from "
          "flow data (nested paths, arrays, literals)") {
  flow_runtime fx;
  flow_builder b{"noting", "order_id"};
  b.send("note it",
         {"recorder", "order_id", "note",
          json::object{{"order_id", "$order_id"},
                       {"body", json::object{{"customer", "$customer.name"},
                                             {"total", "$total"},
                                             {"lines", json::array{"$sku", 2}},
                                             {"channel", "web"},
                                             {"dollar", "$"}}}}})
    .end("done", flow_outcome::completed, "noted");
  fx.add(b).start();
  fx.start_flow("noting", "n1",
                {{"total", 250}, {"sku", "A-7"}, {"customer", {{"name", "Ann"}, {"tier", 2}}}});
  fx.advance(1h);

  auto notes = fx.payloads("recorder/n1", "recorder.noted");
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].at("order_id") == "n1");
  CHECK(notes[0].at("body")
        == json::object{{"customer", "Ann"},
                        {"total", 250},
                        {"lines", json::array{"A-7", 2}},
                        {"channel", "web"},
                        {"dollar", "$"}});
  // The send step is entered by its flow.command_sent, the end step by its flow.ended.
  CHECK(fx.names("noting/n1") == strings{"flow.started", "flow.command_sent", "flow.ended"});
  auto sent = fx.payloads("noting/n1", "flow.command_sent");
  CHECK(sent[0].at("step") == "note it");
  CHECK(sent[0].at("attempt") == 1);
  CHECK(sent[0].at("entered") == true);
  auto ended = fx.payloads("noting/n1", "flow.ended");
  CHECK(ended[0].at("step") == "done");
  CHECK(ended[0].at("entered") == true);
  auto st = fx.status("noting", "n1");
  CHECK(st.executed == strings{"note it", "done"});
  CHECK(st.status == "completed");
  CHECK(st.reason == "noted");
  CHECK(st.completed == strings{"note it"});
  CHECK(fx.state_of("recorder", "n1").at("notes") == 1);
}

TEST_CASE("a send whose payload names a missing data field sends nothing and ends the flow "
          "failed, naming the field") {
  flow_runtime fx;
  flow_builder b{"noting", "order_id"};
  b.send("note it", {"recorder", "order_id", "note",
                     json::object{{"order_id", "$order_id"},
                                  {"body", json::object{{"customer", "$customer.name"}}}}})
    .end("done", flow_outcome::completed, "noted");
  fx.add(b).start();
  fx.start_flow("noting", "n2", {{"customer", {{"tier", 1}}}});
  fx.advance(1h);
  auto st = fx.status("noting", "n2");
  CHECK(st.status == "failed");
  CHECK(st.reason.find("customer.name") != std::string::npos);
  CHECK(st.reason.find("note it") != std::string::npos);
  CHECK(fx.names("recorder/n2").empty());
  CHECK(fx.payloads("noting/n2", "flow.command_sent").empty());
}

// -- wait -----------------------------------------------------------------------------------

TEST_CASE("a wait consumes its event: by default every event field but the key is merged "
          "into flow data, an explicit merge takes only the listed fields") {
  flow_runtime fx;
  flow_builder b{"merging", "order_id"};
  b.wait("await payment", "payment.received", "order_id")
    .wait("await goods", "goods.fetched", "order_id")
    .merge("shipping.pick", "pick_id")
    .end("done", flow_outcome::completed, "merged");
  fx.add(b).start();
  fx.start_flow("merging", "m1", {{"total", 70}});
  auto st = fx.status("merging", "m1");
  CHECK(st.status == "waiting");
  CHECK(st.waiting_for == "payment.received");

  fx.deliver_ok("merging", "m1", "payment.received",
                {{"order_id", "m1"}, {"amount", 70}, {"method", {{"kind", "card"}}}}, "pay-1");
  st = fx.status("merging", "m1");
  CHECK(st.current_step == "await goods");
  CHECK(st.data
        == json::object{{"total", 70},
                        {"order_id", "m1"},
                        {"amount", 70},
                        {"method", {{"kind", "card"}}}});
  auto consumed = fx.payloads("merging/m1", "flow.event_consumed");
  REQUIRE(consumed.size() == 1);
  CHECK(consumed[0].at("event") == "payment.received");
  CHECK(consumed[0].at("merged") == json::object{{"amount", 70}, {"method", {{"kind", "card"}}}});

  fx.deliver_ok("merging", "m1", "goods.fetched",
                {{"order_id", "m1"}, {"pick_id", "pick-9"}, {"dock", "D4"}}, "goods-1");
  st = fx.status("merging", "m1");
  CHECK(st.status == "completed");
  CHECK(st.data.at("shipping") == json::object{{"pick", "pick-9"}});
  CHECK_FALSE(st.data.contains("pick_id"));
  CHECK_FALSE(st.data.contains("dock"));
  CHECK(fx.payloads("merging/m1", "flow.event_consumed").size() == 2);
}

TEST_CASE("a wait is fed by the subscription: the event another entity publishes reaches the "
          "flow instance named by its correlation field") {
  flow_runtime fx;
  fx.add(shop::order_flow()).start();
  fx.start_flow("order", "o1", order(120, "book"));
  fx.advance(1s);
  auto consumed = fx.fields("order/o1", "flow.event_consumed", "event");
  CHECK(consumed == strings{"payment.received", "goods.fetched"});
  CHECK(fx.status("order", "o1").data.at("amount") == 120);
  CHECK(fx.status("order", "o1").data.at("pick_id") == "pick-1");
}

TEST_CASE("a flow started_by an event starts when the event arrives, with the event's fields "
          "as data, a second trigger for the running instance changes nothing") {
  flow_runtime fx;
  fx.add(shop::order_flow()).start();
  fx.deliver_ok("order", "t1", "order.placed",
                {{"order_id", "t1"}, {"total", 50}, {"article", "unobtainium"}}, "placed-1");
  auto st = fx.status("order", "t1");
  CHECK(st.status == "waiting");
  CHECK(st.current_step == "await goods");
  CHECK(st.data.at("total") == 50);
  CHECK(st.data.at("article") == "unobtainium");
  auto before = fx.events("order/t1").size();
  fx.deliver_ok("order", "t1", "order.placed",
                {{"order_id", "t1"}, {"total", 99}, {"article", "lamp"}}, "placed-2");
  CHECK(fx.events("order/t1").size() == before);
  CHECK(fx.payloads("order/t1", "flow.started").size() == 1);
  CHECK(fx.names("payment/t1") == strings{"payment.received"});
}

// -- decide ---------------------------------------------------------------------------------

TEST_CASE("a decide step takes the first matching branch, else otherwise, every operator "
          "compares numbers and strings, exists/missing test presence") {
  flow_runtime fx;
  flow_builder b{"routing", "order_id"};
  b.decide("route", "else")
    .when("vip", "exists", nullptr, "vip")
    .when("total", ">", 1000, "big")
    .when("total", ">=", 500, "medium")
    .when("total", "<", 0, "negative")
    .when("total", "<=", 0, "zero")
    .when("customer.country", "==", "NL", "domestic")
    .when("customer.country", "!=", "NL", "foreign")
    .when("grade", "<", "C", "good grade")
    .when("coupon", "missing", nullptr, "no coupon");
  for (const char* end : {"vip", "big", "medium", "negative", "zero", "domestic", "foreign",
                          "good grade", "no coupon", "else"})
    b.end(end, flow_outcome::completed, end);
  fx.add(b).start();
  struct route_case {
    json::object data;
    std::string expected;
  };
  std::vector<route_case> cases{
    {{{"vip", true}, {"total", 5000}}, "vip"},  // vip and big both match: the first wins
    {{{"vip", nullptr}, {"total", 10}}, "vip"}, // exists: present, even if null
    {{{"total", 1001}}, "big"},
    {{{"total", 1000}}, "medium"},              // not > 1000, but >= 500
    {{{"total", 500}}, "medium"},
    {{{"total", -1}}, "negative"},
    {{{"total", 0}}, "zero"},
    {{{"total", 10}, {"customer", {{"country", "NL"}}}}, "domestic"},
    {{{"total", 10}, {"customer", {{"country", "DE"}}}}, "foreign"},
    {{{"total", 10}, {"grade", "B"}, {"coupon", "x"}}, "good grade"},
    {{{"total", 10}, {"grade", "D"}, {"coupon", "x"}}, "else"},
    {{{"total", 10}}, "no coupon"},
    {{{"total", "5000"}, {"coupon", "x"}}, "else"},  // a string never compares to a number
    {{{"coupon", "x"}}, "else"},                      // missing fields match no comparison
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto id = "r" + std::to_string(i);
    INFO(id << " " << json::serialize(cases[i].data));
    fx.start_flow("routing", id, cases[i].data);
    auto st = fx.status("routing", id);
    CHECK(st.status == "completed");
    CHECK(st.reason == cases[i].expected);
    CHECK(st.executed == strings{"route", cases[i].expected});
  }
}

// -- end ------------------------------------------------------------------------------------

TEST_CASE("an end step ends the flow completed, failed or canceled with its reason (also "
          "taken from flow data), later events change nothing") {
  flow_runtime fx;
  flow_builder b{"ending", "order_id"};
  b.decide("how", "fine")
    .when("want", "==", "failed", "fail")
    .when("want", "==", "canceled", "cancel")
    .end("fine", flow_outcome::completed, "all good")
    .end("fail", flow_outcome::failed, "$why")
    .end("cancel", flow_outcome::canceled, "by request");
  fx.add(b).start();
  fx.start_flow("ending", "e1", {});
  fx.start_flow("ending", "e2", {{"want", "failed"}, {"why", "card expired"}});
  fx.start_flow("ending", "e3", {{"want", "canceled"}});
  for (auto [id, outcome, reason] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
         {"e1", "completed", "all good"}, {"e2", "failed", "card expired"},
         {"e3", "canceled", "by request"}}) {
    INFO(id);
    auto st = fx.status("ending", id);
    CHECK(st.status == outcome);
    CHECK(st.reason == reason);
    CHECK(st.current_step.empty());
    auto ended = fx.payloads("ending/" + id, "flow.ended");
    REQUIRE(ended.size() == 1);
    CHECK(ended[0].at("outcome") == json::value(outcome));
    CHECK(ended[0].at("reason") == json::value(reason));
  }
  // A second start, a cancel and a domain event for an ended flow store nothing.
  auto before = fx.events("ending/e1").size();
  CHECK(semantics::code_of(fx.rt().start_flow("ending", "e1", {})) == "rejected");
  CHECK(semantics::code_of(fx.rt().cancel_flow("ending", "e1", "late")) == "rejected");
  CHECK(fx.events("ending/e1").size() == before);
}

TEST_CASE("an end step that publishes order.completed delivers it, with the flow data as "
          "payload, exactly once to its subscriber") {
  flow_runtime fx;
  fx.add(shop::order_flow()).start();
  fx.start_flow("order", "o1", order(120, "book"));
  fx.start_flow("order", "o2", order(80, "lamp"));
  fx.advance(1h);
  CHECK(fx.status("order", "o1").status == "completed");
  CHECK(fx.status("order", "o1").reason == "shipped");
  auto logged = fx.payloads("order_log/all", "order_log.completion_logged");
  REQUIRE(logged.size() == 2);
  CHECK(logged[0] == json::object{{"order_id", "o1"}, {"pick_id", "pick-1"}});
  CHECK(logged[1] == json::object{{"order_id", "o2"}, {"pick_id", "pick-1"}});
  CHECK(fx.dead_letters_to("event:order.completed").empty());
  fx.advance(24h);
  CHECK(fx.payloads("order_log/all", "order_log.completion_logged").size() == 2);
}

// -- compensation -------------------------------------------------------------------------------

namespace flowtest {

/// Charges, awaits the payment, reserves stock (compensable, optionally with a retry
/// policy), notes the reservation (not compensable) and awaits the shipment for 2 hours;
/// "give up" ends failed with compensation.
flow_builder saga(std::optional<retry_policy> reserve_retry = std::nullopt) {
  flow_builder b{"saga", "order_id"};
  b.send("charge", {"payment", "order_id", "retrieve_payment",
                    json::object{{"order_id", "$order_id"}, {"amount", "$total"}}})
    .compensate_with({"payment", "order_id", "refund_payment",
                      json::object{{"order_id", "$order_id"}}})
    .wait("await payment", "payment.received", "order_id")
    .timeout(1h, "give up")
    .send("reserve", {"stock", "order_id", "reserve_stock",
                      json::object{{"order_id", "$order_id"}, {"qty", "$qty"}}})
    .compensate_with({"stock", "order_id", "release_stock",
                      json::object{{"order_id", "$order_id"}}});
  if (reserve_retry)
    b.retry(*reserve_retry);
  b.send("notify", {"recorder", "order_id", "note",
                    json::object{{"order_id", "$order_id"},
                                 {"body", json::object{{"what", "reserved"}}}}})
    .wait("await shipment", "shipment.sent", "order_id")
    .timeout(2h, "give up")
    .end("shipped", flow_outcome::completed, "shipped")
    .end("give up", flow_outcome::failed, "no shipment in time", true);
  return b;
}

}  // namespace flowtest

TEST_CASE("a wait that times out into a compensating end sends the compensations of the "
          "completed steps in reverse order, each exactly once and journaled") {
  flow_runtime fx;
  fx.add(saga()).start();
  fx.start_flow("saga", "s1", {{"total", 100}, {"qty", 3}});
  auto st = fx.status("saga", "s1");
  REQUIRE(st.status == "waiting");
  CHECK(st.waiting_for == "shipment.sent");
  CHECK(st.completed == strings{"charge", "reserve", "notify"});
  CHECK(st.pending_compensations
        == strings{"reserve: release_stock", "charge: refund_payment"});

  fx.advance(2h - 1ms);
  CHECK(fx.status("saga", "s1").status == "waiting");
  CHECK(fx.payloads("saga/s1", "flow.compensation_sent").empty());
  fx.advance(1ms);
  st = fx.status("saga", "s1");
  CHECK(st.status == "failed");
  CHECK(st.reason == "no shipment in time");
  CHECK(st.compensated == strings{"reserve", "charge"});
  CHECK(st.pending_compensations.empty());
  // The flow's journal: timed out, then the compensations newest first, then the end.
  // The compensations come before the end step's flow.ended: a flow.step_entered enters it.
  auto names = fx.names("saga/s1");
  auto timed_out = std::find(names.begin(), names.end(), "flow.timed_out");
  REQUIRE(timed_out != names.end());
  CHECK(strings(timed_out, names.end())
        == strings{"flow.timed_out", "flow.step_entered", "flow.compensation_sent",
                   "flow.compensation_sent", "flow.ended"});
  CHECK_FALSE(fx.payloads("saga/s1", "flow.ended")[0].contains("entered"));
  auto comps = fx.payloads("saga/s1", "flow.compensation_sent");
  REQUIRE(comps.size() == 2);
  CHECK(comps[0].at("step") == "reserve");
  CHECK(comps[0].at("command").at("command") == "release_stock");
  CHECK(comps[0].at("command").at("entity_id") == "s1");
  CHECK(comps[1].at("step") == "charge");
  CHECK(comps[1].at("command").at("command") == "refund_payment");
  // The targets received each compensation once; the note was not compensated.
  fx.advance(3 * 24h);
  CHECK(fx.names("stock/s1") == strings{"stock.reserved", "stock.released"});
  CHECK(fx.names("payment/s1") == strings{"payment.received", "payment.refunded"});
  CHECK(fx.names("recorder/s1") == strings{"recorder.noted"});
  CHECK(fx.state_of("stock", "s1").at("releases") == 1);
  CHECK(fx.state_of("payment", "s1").at("refunds") == 1);
  CHECK(fx.payloads("saga/s1", "flow.compensation_sent").size() == 2);
  CHECK(fx.timers("saga/s1").empty());
  CHECK(semantics::dead_letters_of(fx.journal()).empty());
}

TEST_CASE("a command the target keeps rejecting is sent max_attempts=3 times at the backoff "
          "times, then on_exhausted leads to a compensating end that does not compensate the "
          "failed step") {
  flow_runtime fx;
  fx.add(saga(retry_policy{3, 1min, 2.0, "give up"})).start();
  fx.start_flow("saga", "r1", {{"total", 100}, {"qty", 50}});  // more than the stock has
  auto attempts = [&] { return fx.events_of_type("saga/r1", "flow.command_sent"); };
  auto reserve_attempts = [&] {
    std::vector<std::pair<std::int64_t, time_ms>> out;  // (attempt, written at)
    for (const auto& ev : attempts()) {
      auto p = json::parse(ev.payload_json).as_object();
      if (p.at("step") == "reserve")
        out.emplace_back(p.at("attempt").to_number<std::int64_t>(), ev.written_at_ms);
    }
    return out;
  };
  using tries = std::vector<std::pair<std::int64_t, time_ms>>;
  CHECK(reserve_attempts() == tries{{1, t0}});
  // The flow went on to the next steps after sending; the failure comes back later.
  CHECK(fx.status("saga", "r1").waiting_for == "shipment.sent");
  auto retries = fx.payloads("saga/r1", "flow.retry_scheduled");
  REQUIRE(retries.size() == 1);
  CHECK(retries[0].at("attempt") == 2);
  CHECK(retries[0].at("due") == t0 + minute_ms);
  // While attempts remain the reservation may still take effect: its compensation stays.
  CHECK(fx.status("saga", "r1").pending_compensations
        == strings{"reserve: release_stock", "charge: refund_payment"});

  fx.advance(1min - 1ms);
  CHECK(reserve_attempts().size() == 1);
  fx.advance(1ms);
  CHECK(reserve_attempts() == tries{{1, t0}, {2, t0 + minute_ms}});
  retries = fx.payloads("saga/r1", "flow.retry_scheduled");
  REQUIRE(retries.size() == 2);
  CHECK(retries[1].at("attempt") == 3);
  CHECK(retries[1].at("due") == t0 + 3 * minute_ms);  // 1 min, then 2 min later
  fx.advance(2min - 1ms);
  CHECK(reserve_attempts().size() == 2);
  CHECK(fx.status("saga", "r1").status == "waiting");
  fx.advance(1ms);
  CHECK(reserve_attempts() == tries{{1, t0}, {2, t0 + minute_ms}, {3, t0 + 3 * minute_ms}});

  auto failed = fx.payloads("saga/r1", "flow.send_failed");
  REQUIRE(failed.size() == 3);
  for (std::int64_t i = 0; i < 3; ++i) {
    CHECK(failed[i].at("attempt") == i + 1);
    CHECK(failed[i].at("exhausted") == (i == 2));
    CHECK(json::value_to<std::string>(failed[i].at("reason")).find("only 10 in stock")
          != std::string::npos);
  }
  auto st = fx.status("saga", "r1");
  CHECK(st.status == "failed");
  CHECK(st.reason == "no shipment in time");
  // Only the charge is compensated: the reservation never took effect.
  CHECK(st.completed == strings{"charge", "reserve", "notify"});
  CHECK(st.compensated == strings{"charge"});
  CHECK(fx.fields("saga/r1", "flow.compensation_sent", "step") == strings{"charge"});
  CHECK(fx.names("payment/r1") == strings{"payment.received", "payment.refunded"});
  CHECK(fx.names("stock/r1").empty());
  // The target saw exactly three attempts, each dead-lettered when it was made.
  auto dead = fx.dead_letters_to("stock/r1");
  REQUIRE(dead.size() == 3);
  CHECK(dead[0].recorded_at_ms == t0);
  CHECK(dead[1].recorded_at_ms == t0 + minute_ms);
  CHECK(dead[2].recorded_at_ms == t0 + 3 * minute_ms);
  fx.advance(1 * 24h);
  CHECK(reserve_attempts().size() == 3);
  CHECK(fx.dead_letters_to("stock/r1").size() == 3);
  CHECK(fx.timers("saga/r1").empty());
}

TEST_CASE("without a retry policy an undeliverable command ends the flow failed at once, "
          "compensating only the steps that took effect") {
  flow_runtime fx;
  fx.add(saga()).start();
  fx.start_flow("saga", "u1", {{"total", 100}, {"qty", 50}});
  auto st = fx.status("saga", "u1");
  CHECK(st.status == "failed");
  CHECK(st.reason.find("reserve") != std::string::npos);
  CHECK(st.reason.find("only 10 in stock") != std::string::npos);
  CHECK(st.compensated == strings{"charge"});
  CHECK(fx.names("payment/u1") == strings{"payment.received", "payment.refunded"});
  CHECK(fx.dead_letters_to("stock/u1").size() == 1);
  CHECK(fx.timers("saga/u1").empty());
}

// -- events that come early, twice, or as alternatives ---------------------------------------

namespace flowtest {

/// Awaits approval, then the goods (1 day); early events live for one hour.
flow_builder approval_flow() {
  flow_builder b{"approval", "order_id"};
  b.early_event_ttl(1h)
    .wait("await approval", "order.approved", "order_id")
    .wait("await goods", "goods.fetched", "order_id")
    .merge("pick_id", "pick_id")
    .timeout(24h, "too late")
    .end("done", flow_outcome::completed, "fetched")
    .end("too late", flow_outcome::failed, "no goods");
  return b;
}

}  // namespace flowtest

TEST_CASE("an event that arrives before its wait is buffered and consumed when the wait "
          "starts") {
  flow_runtime fx;
  fx.add(approval_flow()).start();
  fx.start_flow("approval", "a1", {});
  fx.deliver_ok("approval", "a1", "goods.fetched", {{"order_id", "a1"}, {"pick_id", "p-7"}},
                "goods-a1");
  auto st = fx.status("approval", "a1");
  CHECK(st.status == "waiting");
  CHECK(st.waiting_for == "order.approved");
  CHECK(st.buffered_events == strings{"goods.fetched"});
  CHECK(fx.payloads("approval/a1", "flow.event_buffered").size() == 1);

  fx.advance(30min);
  fx.deliver_ok("approval", "a1", "order.approved", {{"order_id", "a1"}}, "approve-a1");
  st = fx.status("approval", "a1");
  CHECK(st.status == "completed");
  CHECK(st.data.at("pick_id") == "p-7");
  CHECK(st.buffered_events.empty());
  auto consumed = fx.payloads("approval/a1", "flow.event_consumed");
  REQUIRE(consumed.size() == 2);
  CHECK(consumed[1].at("event") == "goods.fetched");
  CHECK(consumed[1].at("step") == "await goods");
  CHECK(consumed[1].at("buffer_index") == 0);
  // The buffered event's consumption is also the goods wait's first event: it enters it.
  CHECK_FALSE(consumed[0].contains("entered"));
  CHECK(consumed[1].at("entered") == true);
  CHECK(st.executed == strings{"await approval", "await goods", "done"});
  CHECK(fx.names("approval/a1")
        == strings{"flow.started", "flow.waiting", "flow.event_buffered", "flow.event_consumed",
                   "flow.event_consumed", "flow.ended"});
  // The goods wait never really waited: no timeout is left to fire.
  CHECK(fx.timers("approval/a1").empty());
  fx.advance(2 * 24h);
  CHECK(fx.payloads("approval/a1", "flow.timed_out").empty());
}

TEST_CASE("an early event older than early_event_ttl is dropped when its wait starts") {
  flow_runtime fx;
  fx.add(approval_flow()).start();
  fx.start_flow("approval", "a2", {});
  fx.deliver_ok("approval", "a2", "goods.fetched", {{"order_id", "a2"}, {"pick_id", "p-1"}},
                "goods-a2-1");
  fx.advance(1h + 1min);
  fx.deliver_ok("approval", "a2", "order.approved", {{"order_id", "a2"}}, "approve-a2");
  auto st = fx.status("approval", "a2");
  CHECK(st.status == "waiting");
  CHECK(st.waiting_for == "goods.fetched");
  CHECK(st.buffered_events.empty());
  auto expired = fx.payloads("approval/a2", "flow.buffer_expired");
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].at("count") == 1);
  // The expiry comes before the wait's own first event: a flow.step_entered enters it.
  CHECK(fx.names("approval/a2")
        == strings{"flow.started", "flow.waiting", "flow.event_buffered", "flow.event_consumed",
                   "flow.step_entered", "flow.buffer_expired", "flow.waiting"});
  CHECK_FALSE(fx.payloads("approval/a2", "flow.waiting")[1].contains("entered"));
  CHECK(st.executed == strings{"await approval", "await goods"});
  CHECK(st.current_step == "await goods");
  // A fresh delivery is consumed normally.
  fx.deliver_ok("approval", "a2", "goods.fetched", {{"order_id", "a2"}, {"pick_id", "p-2"}},
                "goods-a2-2");
  st = fx.status("approval", "a2");
  CHECK(st.status == "completed");
  CHECK(st.data.at("pick_id") == "p-2");
}

TEST_CASE("a flow stored with a flow.step_entered before every step (journals written before "
          "events carried entered) recovers where it stood and runs on") {
  std::shared_ptr<lp::journal> journal;
  {
    flow_runtime fx;
    journal = fx.cfg.journal_override;
    // Recorded by the earlier engine: started, step_entered, waiting.
    lp::atomic_write w;
    w.persistence_id = "approval/old";
    w.new_stream = true;
    w.events.push_back({"flow.started", 1, R"({"data":{"order_id":"old","note":"n"}})", {"approval"}});
    w.events.push_back({"flow.step_entered", 1, R"({"step":"await approval"})", {"approval"}});
    w.events.push_back({"flow.waiting", 1,
                        R"({"step":"await approval","event":"order.approved","deadline":0})",
                        {"approval"}});
    REQUIRE(journal->write_and_wait(std::move(w)));
    fx.add(approval_flow()).start();
    auto st = fx.status("approval", "old");
    CHECK(st.status == "waiting");
    CHECK(st.current_step == "await approval");
    CHECK(st.executed == strings{"await approval"});
    fx.deliver_ok("approval", "old", "order.approved", {{"order_id", "old"}}, "approve-old");
    st = fx.status("approval", "old");
    CHECK(st.current_step == "await goods");
    CHECK(st.executed == strings{"await approval", "await goods"});
  }
  // A restart replays both kinds: the old step_entered and the new entering flow.waiting.
  flow_runtime fx;
  fx.cfg.journal_override = journal;
  fx.add(approval_flow()).start();
  auto st = fx.status("approval", "old");
  CHECK(st.status == "waiting");
  CHECK(st.current_step == "await goods");
  CHECK(st.waiting_for == "goods.fetched");
  CHECK(st.executed == strings{"await approval", "await goods"});
  CHECK(fx.timers("approval/old").size() == 1);
  fx.deliver_ok("approval", "old", "goods.fetched", {{"order_id", "old"}, {"pick_id", "p-9"}},
                "goods-old");
  st = fx.status("approval", "old");
  CHECK(st.status == "completed");
  CHECK(st.executed == strings{"await approval", "await goods", "done"});
  CHECK(st.data.at("note") == "n");
  CHECK(fx.names("approval/old")
        == strings{"flow.started", "flow.step_entered", "flow.waiting", "flow.event_consumed",
                   "flow.waiting", "flow.event_consumed", "flow.ended"});
}

TEST_CASE("the same event delivered twice with one message id is consumed once: the second "
          "delivery is acknowledged as a duplicate and stores nothing") {
  flow_runtime fx;
  flow_builder b{"scanning", "order_id"};
  b.wait("first scan", "parcel.scanned", "order_id")
    .wait("second scan", "parcel.scanned", "order_id")
    .end("delivered", flow_outcome::completed, "scanned twice");
  fx.add(b).start();
  fx.start_flow("scanning", "d1", {});
  auto first = fx.deliver("scanning", "d1", "parcel.scanned", {{"order_id", "d1"}}, "scan-1");
  REQUIRE(first);
  CHECK_FALSE(first->duplicate);
  CHECK(fx.status("scanning", "d1").current_step == "second scan");
  auto events_before = fx.events("scanning/d1").size();

  auto again = fx.deliver("scanning", "d1", "parcel.scanned", {{"order_id", "d1"}}, "scan-1");
  REQUIRE(again);
  CHECK(again->duplicate);
  CHECK(fx.events("scanning/d1").size() == events_before);
  CHECK(fx.payloads("scanning/d1", "flow.event_consumed").size() == 1);
  auto st = fx.status("scanning", "d1");
  CHECK(st.status == "waiting");
  CHECK(st.current_step == "second scan");

  fx.deliver_ok("scanning", "d1", "parcel.scanned", {{"order_id", "d1"}}, "scan-2");
  CHECK(fx.status("scanning", "d1").status == "completed");
  CHECK(fx.payloads("scanning/d1", "flow.event_consumed").size() == 2);
}

TEST_CASE("a wait with an alternative event (or_event) continues at the step of whichever "
          "event arrives") {
  flow_runtime fx;
  flow_builder b{"paying", "order_id"};
  b.send("charge", {"payment", "order_id", "retrieve_payment",
                    json::object{{"order_id", "$order_id"}, {"amount", "$total"}}})
    .wait("await payment", "payment.received", "order_id")
    .or_event("payment.failed", "payment failed")
    .timeout(24h, "payment failed")
    .end("paid", flow_outcome::completed, "paid")
    .end("payment failed", flow_outcome::failed, "$reason");
  fx.add(b).start();
  fx.start_flow("paying", "p1", {{"total", 100}});
  fx.start_flow("paying", "p2", {{"total", 5000}});  // over the payment's limit
  auto p1 = fx.status("paying", "p1");
  CHECK(p1.status == "completed");
  CHECK(p1.reason == "paid");
  auto p2 = fx.status("paying", "p2");
  CHECK(p2.status == "failed");
  CHECK(p2.reason == "limit exceeded");
  CHECK(p2.executed == strings{"charge", "await payment", "payment failed"});
  CHECK(fx.fields("paying/p2", "flow.event_consumed", "event") == strings{"payment.failed"});
  CHECK(fx.fields("paying/p1", "flow.waiting", "event")
        == strings{"payment.received | payment.failed"});
  CHECK(fx.timers("paying/p1").empty());
  CHECK(fx.timers("paying/p2").empty());
}

// -- cancel and status -----------------------------------------------------------------------------

TEST_CASE("cancel_flow compensates the completed steps and ends the flow canceled, its "
          "timeout never fires") {
  flow_runtime fx;
  fx.add(shop::order_flow()).start();
  fx.start_flow("order", "c1", order(300, "unobtainium"));  // waits for goods (12 h)
  REQUIRE(fx.status("order", "c1").waiting_for == "goods.fetched");
  fx.advance(1h);
  auto err = fx.rt().cancel_flow("order", "c1", "customer changed their mind");
  INFO(lp::describe(err));
  REQUIRE(!err);
  auto st = fx.status("order", "c1");
  CHECK(st.status == "canceled");
  CHECK(st.reason == "customer changed their mind");
  CHECK(st.compensated == strings{"retrieve payment"});
  CHECK(fx.names("payment/c1") == strings{"payment.received", "payment.refunded"});
  CHECK(fx.timers("order/c1").empty());
  fx.advance(13h);
  CHECK(fx.payloads("order/c1", "flow.timed_out").empty());
  CHECK(fx.payloads("order/c1", "flow.ended").size() == 1);
  CHECK(fx.state_of("payment", "c1").at("refunds") == 1);
  // Canceling again, or a flow that never started, is refused.
  CHECK(semantics::code_of(fx.rt().cancel_flow("order", "c1", "again")) == "rejected");
  CHECK(semantics::code_of(fx.rt().cancel_flow("order", "never", "x")) == "rejected");
}

TEST_CASE("flow_status reports the current step, what it waits for, the deadline, the "
          "completed steps and the pending compensations mid-flow") {
  flow_runtime fx;
  fx.add(shop::order_flow()).start();
  fx.start_flow("order", "w1", order(5000, "book"));  // payment fails: waits 20 days
  auto st = fx.status("order", "w1");
  CHECK(st.flow == "order");
  CHECK(st.id == "w1");
  CHECK(st.status == "waiting");
  CHECK(st.current_step == "await payment");
  CHECK(st.waiting_for == "payment.received");
  CHECK(st.deadline_ms == t0 + 20 * day_ms);
  CHECK(st.executed == strings{"retrieve payment", "await payment"});
  CHECK(st.completed == strings{"retrieve payment"});
  CHECK(st.pending_compensations == strings{"retrieve payment: refund_payment"});
  CHECK(st.compensated.empty());

  fx.advance(2h);
  fx.start_flow("order", "w2", order(300, "unobtainium"));  // paid, waits 12 h for goods
  st = fx.status("order", "w2");
  CHECK(st.status == "waiting");
  CHECK(st.current_step == "await goods");
  CHECK(st.waiting_for == "goods.fetched");
  CHECK(st.deadline_ms == t0 + 2 * hour_ms + 12 * hour_ms);
  CHECK(st.executed == strings{"retrieve payment", "await payment", "fetch goods", "await goods"});
  CHECK(st.completed == strings{"retrieve payment", "fetch goods"});
  CHECK(st.pending_compensations == strings{"retrieve payment: refund_payment"});
  CHECK(st.data.at("amount") == 300);

  fx.advance(12h);  // w2's goods wait times out: failed, compensated
  st = fx.status("order", "w2");
  CHECK(st.status == "failed");
  CHECK(st.reason == "goods not fetched in time");
  CHECK(st.current_step.empty());
  CHECK(st.waiting_for.empty());
  CHECK(st.deadline_ms == 0);
  CHECK(st.pending_compensations.empty());
  CHECK(st.compensated == strings{"retrieve payment"});
  // w1 still waits for its payment; after 20 days it is canceled (no compensation).
  CHECK(fx.status("order", "w1").status == "waiting");
  fx.advance(20 * 24h);
  st = fx.status("order", "w1");
  CHECK(st.status == "canceled");
  CHECK(st.reason == "payment not received in time");
  CHECK(st.compensated.empty());
  CHECK(fx.payloads("order/w1", "flow.ended").size() == 1);
}

TEST_CASE("a flow instance that is not started reports not_started") {
  flow_runtime fx;
  fx.add(shop::order_flow()).start();
  auto st = fx.status("order", "nobody");
  CHECK(st.status == "not_started");
  CHECK(st.executed.empty());
}

TEST_CASE("an ended flow instance leaves memory as soon as its end is stored, and its status "
          "is read back from the journal") {
  flow_runtime fx;
  fx.cfg.passivate_after = 1h;
  fx.add(approval_flow()).start();
  auto live = [&] { return *fx.rt().live_instances(); };
  fx.start_flow("approval", "e1", {});
  CHECK(live() == 1);  // waiting: stays
  fx.deliver_ok("approval", "e1", "order.approved", {{"order_id", "e1"}}, "approve-e1");
  CHECK(live() == 1);
  fx.deliver_ok("approval", "e1", "goods.fetched", {{"order_id", "e1"}, {"pick_id", "p-1"}},
                "goods-e1");
  CHECK(live() == 0);  // ended: passivated without waiting for passivate_after
  auto st = fx.status("approval", "e1");
  CHECK(st.status == "completed");
  CHECK(st.executed == strings{"await approval", "await goods", "done"});
  // A late duplicate is still recognized after the instance came back from the journal.
  auto dup = fx.deliver("approval", "e1", "goods.fetched",
                        {{"order_id", "e1"}, {"pick_id", "p-1"}}, "goods-e1");
  REQUIRE(dup);
  CHECK(dup->duplicate);
  CHECK(fx.names("approval/e1").back() == "flow.ended");
}

// -- restart -----------------------------------------------------------------------------------------

TEST_CASE("a flow survives a runtime restart on SQLite in the middle of a wait and finishes "
          "after its timeout, compensating once") {
  semantics::temp_dir dir;
  auto path = dir.file("flows.db");
  {
    auto fx = flow_runtime::on_sqlite(path, t0);
    fx->add(shop::order_flow()).start();
    fx->start_flow("order", "o1", order(300, "unobtainium"));
    fx->start_flow("order", "o2", order(40, "book"));
    REQUIRE(fx->status("order", "o1").waiting_for == "goods.fetched");
    REQUIRE(fx->status("order", "o2").status == "completed");
    fx->advance(1h);
  }
  {
    // A new runtime on the same file, 3 hours later: nothing is live, the state comes
    // back from the journal, the deadline stands.
    auto fx = flow_runtime::on_sqlite(path, t0 + 3 * hour_ms);
    fx->add(shop::order_flow()).start();
    CHECK(fx->timers("order/o1").size() == 1);
    auto st = fx->status("order", "o1");
    CHECK(st.status == "waiting");
    CHECK(st.current_step == "await goods");
    CHECK(st.deadline_ms == t0 + 12 * hour_ms);
    CHECK(st.pending_compensations == strings{"retrieve payment: refund_payment"});
    fx->advance(9h - 1ms);
    CHECK(fx->status("order", "o1").status == "waiting");
    fx->advance(1ms);
    st = fx->status("order", "o1");
    CHECK(st.status == "failed");
    CHECK(st.reason == "goods not fetched in time");
    auto ended = fx->events_of_type("order/o1", "flow.ended");
    REQUIRE(ended.size() == 1);
    CHECK(ended[0].written_at_ms == t0 + 12 * hour_ms);
    CHECK(fx->names("payment/o1") == strings{"payment.received", "payment.refunded"});
    CHECK(fx->status("order", "o2").status == "completed");
  }
  // A third runtime a day later: nothing fires again.
  auto fx = flow_runtime::on_sqlite(path, t0 + 2 * day_ms);
  fx->add(shop::order_flow()).start();
  fx->advance(24h);
  CHECK(fx->payloads("order/o1", "flow.ended").size() == 1);
  CHECK(fx->payloads("order/o1", "flow.compensation_sent").size() == 1);
  CHECK(fx->names("payment/o1") == strings{"payment.received", "payment.refunded"});
  CHECK(fx->timers("order/o1").empty());
}
