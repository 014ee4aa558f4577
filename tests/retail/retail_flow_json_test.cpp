// The JSON twin of the retail order flow (samples/retail/order_flow.json) against the
// builder's definition (retail_order_flow.hpp): the same definition field by field and in
// every canonical rendering, and the same history when one order runs with either.
#include "runtime/flow_diagram.hpp"
#include "runtime/flow_json.hpp"
#include "tests/retail/retail_fixture.hpp"

#include <functional>

#ifndef LONGHAUL_RETAIL_FLOW_JSON
#  error "LONGHAUL_RETAIL_FLOW_JSON must name samples/retail/order_flow.json"
#endif

using namespace retail_test;
using longhaul::flow_definition;

namespace {

/// Collects the fields in which two definitions differ, each named by its path.
class differences {
public:
  differences(const flow_definition& a, const flow_definition& b) {
    field("name", a.name, b.name);
    field("key", a.key, b.key);
    field("trigger.event", a.trigger.event, b.trigger.event);
    field("early_event_ttl", a.early_event_ttl.count(), b.early_event_ttl.count());
    field("steps.size", a.steps.size(), b.steps.size());
    for (std::size_t i = 0; i < std::min(a.steps.size(), b.steps.size()); ++i)
      step("steps[" + std::to_string(i) + "]", a.steps[i], b.steps[i]);
  }

  [[nodiscard]] const strings& list() const noexcept { return found_; }

private:
  template <class T>
  void field(const std::string& path, const T& a, const T& b) {
    if (!(a == b))
      found_.push_back(path);
  }

  void command(const std::string& path, const longhaul::flow_command& a,
               const longhaul::flow_command& b) {
    field(path + ".entity_type", a.entity_type, b.entity_type);
    field(path + ".id_from", a.id_from, b.id_from);
    field(path + ".command", a.command, b.command);
    field(path + ".payload", a.payload, b.payload);
  }

  void step(const std::string& path, const longhaul::flow_step& a, const longhaul::flow_step& b) {
    field(path + ".name", a.name, b.name);
    field(path + ".kind", a.kind.index(), b.kind.index());
    field(path + ".compensation?", a.compensation.has_value(), b.compensation.has_value());
    if (a.compensation && b.compensation)
      command(path + ".compensation", *a.compensation, *b.compensation);
    if (a.kind.index() != b.kind.index())
      return;
    if (auto* x = std::get_if<longhaul::send_step>(&a.kind)) {
      const auto& y = std::get<longhaul::send_step>(b.kind);
      command(path + ".send", x->command, y.command);
      field(path + ".next", x->next, y.next);
      field(path + ".retry?", x->retry.has_value(), y.retry.has_value());
      if (x->retry && y.retry) {
        field(path + ".retry.max_attempts", x->retry->max_attempts, y.retry->max_attempts);
        field(path + ".retry.initial_interval", x->retry->initial_interval.count(),
              y.retry->initial_interval.count());
        field(path + ".retry.factor", x->retry->factor, y.retry->factor);
        field(path + ".retry.on_exhausted", x->retry->on_exhausted, y.retry->on_exhausted);
      }
    } else if (auto* w = std::get_if<longhaul::wait_step>(&a.kind)) {
      const auto& v = std::get<longhaul::wait_step>(b.kind);
      field(path + ".event", w->event, v.event);
      field(path + ".correlation", w->correlation, v.correlation);
      field(path + ".merge", w->merge, v.merge);
      field(path + ".timeout?", w->timeout.has_value(), v.timeout.has_value());
      if (w->timeout && v.timeout)
        field(path + ".timeout", w->timeout->count(), v.timeout->count());
      field(path + ".on_timeout", w->on_timeout, v.on_timeout);
      field(path + ".next", w->next, v.next);
      field(path + ".alternatives", w->alternatives, v.alternatives);
    } else if (auto* d = std::get_if<longhaul::decide_step>(&a.kind)) {
      const auto& e = std::get<longhaul::decide_step>(b.kind);
      field(path + ".otherwise", d->otherwise, e.otherwise);
      field(path + ".branches.size", d->branches.size(), e.branches.size());
      for (std::size_t i = 0; i < std::min(d->branches.size(), e.branches.size()); ++i) {
        auto p = path + ".branches[" + std::to_string(i) + "]";
        field(p + ".path", d->branches[i].path, e.branches[i].path);
        field(p + ".op", d->branches[i].op, e.branches[i].op);
        field(p + ".value", d->branches[i].value, e.branches[i].value);
        field(p + ".next", d->branches[i].next, e.branches[i].next);
      }
    } else {
      const auto& x = std::get<longhaul::end_step>(a.kind);
      const auto& y = std::get<longhaul::end_step>(b.kind);
      field(path + ".outcome", x.outcome, y.outcome);
      field(path + ".reason", x.reason, y.reason);
      field(path + ".compensate", x.compensate, y.compensate);
      field(path + ".publish", x.publish_event, y.publish_event);
    }
  }

  strings found_;
};

flow_definition built_flow() {
  auto def = retail::order_flow();
  INFO(text_of(def));
  REQUIRE(def);
  return std::move(*def);
}

flow_definition json_flow() {
  auto def = longhaul::load_flow_json_file(LONGHAUL_RETAIL_FLOW_JSON);
  INFO(text_of(def));
  REQUIRE(def);
  return std::move(*def);
}

/// Runs `story` on a fresh runtime with order flow `def`; returns the whole history,
/// one line per event: persistence id, seq, type, time, payload.
strings history_with(const flow_definition& def, const std::function<void(retail_runtime&)>& story,
                     const std::function<void()>& world) {
  retail_runtime fx;
  world();
  fx.flow = def;
  fx.start();
  story(fx);
  strings out;
  for (const auto& ev : fx.history())
    out.push_back(ev.persistence_id + " #" + std::to_string(ev.seq) + " " + ev.type + " @"
                  + std::to_string(ev.written_at_ms - t0) + " " + ev.payload_json);
  return out;
}

}  // namespace

TEST_CASE("the JSON twin loads to the same order flow as the builder, field by field, and "
          "renders to the same flow JSON, Mermaid and DOT text") {
  auto built = built_flow();
  auto loaded = json_flow();
  CHECK(differences(built, loaded).list() == strings{});
  CHECK(longhaul::to_flow_json(built) == longhaul::to_flow_json(loaded));
  CHECK(longhaul::to_mermaid(built) == longhaul::to_mermaid(loaded));
  CHECK(longhaul::to_dot(built) == longhaul::to_dot(loaded));
  CHECK(built.steps.size() == 11);
  // The canonical JSON keeps everything, 'payment.failed' ending the payment wait included.
  auto again = longhaul::load_flow_json(longhaul::to_flow_json(built));
  INFO(text_of(again));
  REQUIRE(again);
  CHECK(differences(built, *again).list() == strings{});
  CHECK(std::get<longhaul::wait_step>(again->steps[1].kind).alternatives
        == std::vector<std::pair<std::string, std::string>>{{"payment.failed", "payment failed"}});
}

TEST_CASE("the field-by-field comparison of flow definitions names each field that differs") {
  auto built = built_flow();
  auto loaded = json_flow();
  std::get<longhaul::wait_step>(loaded.steps[3].kind).timeout = 13h;
  std::get<longhaul::end_step>(loaded.steps[9].kind).compensate = false;
  loaded.steps[0].compensation->payload.as_object()["order_id"] = "$customer";
  CHECK(differences(built, loaded).list()
        == strings{"steps[0].compensation.payload", "steps[3].timeout",
                   "steps[9].compensate"});
  CHECK(longhaul::to_flow_json(built) != longhaul::to_flow_json(loaded));
}

TEST_CASE("one order run with the builder's flow and one run with the JSON twin leave the "
          "same history, event by event, on every path") {
  struct path {
    const char* name;
    std::function<void()> world;
    std::function<void(retail_runtime&)> story;
  };
  auto nothing_wrong = [] {};
  std::vector<path> paths{
    {"completed", nothing_wrong,
     [](retail_runtime& fx) {
       fx.grant_credit("customer-1", 700);
       fx.place("order-1", "customer-1", {{"article-1", 1999}, {"article-2", 501}});
       fx.advance(1h);
     }},
    {"card expired, updated, completed", [] { retail::settings().card_expired_share = 1.0; },
     [](retail_runtime& fx) {
       fx.place("order-2", "customer-2", {{"article-3", 2500}});
       fx.advance(std::chrono::days{2});
       fx.update_card("order-2", "customer-2");
       fx.advance(1h);
     }},
    {"card never updated: canceled", [] { retail::settings().card_expired_share = 1.0; },
     [](retail_runtime& fx) {
       fx.grant_credit("customer-3", 300);
       fx.place("order-3", "customer-3", {{"article-3", 2500}});
       fx.advance(std::chrono::days{8});
     }},
    {"goods not fetched: refunded", nothing_wrong,
     [](retail_runtime& fx) {
       fx.place("order-4", "customer-4", {{"article-13", 900}});
       fx.advance(std::chrono::days{1});
     }},
    {"goods not shipped: refunded", [] { retail::settings().shipment_lost_share = 1.0; },
     [](retail_runtime& fx) {
       fx.place("order-5", "customer-5", {{"article-7", 900}});
       fx.advance(std::chrono::days{2});
     }},
  };
  auto built = built_flow();
  auto loaded = json_flow();
  for (const auto& p : paths) {
    INFO("path: " << p.name);
    auto with_builder = history_with(built, p.story, p.world);
    auto with_json = history_with(loaded, p.story, p.world);
    CHECK(with_builder.size() > 10);
    CHECK(with_builder == with_json);
  }
}
