// Helper verbs for the retail tests: the retail sample (samples/retail) wired as the
// `retail` program wires it, on a deterministic runtime with a virtual clock and an
// in-memory journal that records every message the sample sends or publishes, in commit
// order. Each test body then reads like a specification of one order's story.
#pragma once

#include "persistence/forwarding_journal.hpp"
#include "persistence/memory_journal.hpp"
#include "runtime/runtime.hpp"
#include "samples/retail/retail_domain.hpp"
#include "samples/retail/retail_order_flow.hpp"
#include "samples/retail/retail_setup.hpp"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace retail_test {

namespace json = boost::json;
namespace lp = longhaul::persistence;
using namespace std::chrono_literals;
using strings = std::vector<std::string>;

/// Start of the virtual clock in every test: 2026-01-01T00:00:00Z.
constexpr lp::time_ms t0 = 1767225600000;
constexpr lp::time_ms hour_ms = 3600 * 1000;
constexpr lp::time_ms day_ms = 24 * hour_ms;

/// The full text of a failed result ("" if it succeeded).
template <class T>
std::string text_of(const caf::expected<T>& r) {
  return r ? std::string{} : lp::describe(r.error());
}

/// One outbox message of a committed write: a command sent to an entity, or a domain
/// event published ("event:<name>").
struct sent_message {
  std::string source;       ///< persistence id of the writer, "payment/order-1"
  std::string destination;  ///< "customer/customer-1" or "event:payment.received"
  std::string name;         ///< command or event name
  json::object payload;
  std::string message_id;   ///< the outbox row's id (subscribers get "<id>@<type>")
};

/// A journal decorator that records the outbox messages of every committed write, in
/// commit order, and passes everything else through. The in-memory journal completes
/// writes on the calling thread, so the record follows commit order.
class recording_journal final : public lp::forwarding_journal<> {
public:
  using forwarding_journal::forwarding_journal;

  void write(lp::atomic_write w, lp::write_callback done) override {
    auto source = w.persistence_id;
    auto outbox = w.outbox;
    inner().write(std::move(w), [this, source = std::move(source), outbox = std::move(outbox),
                                 done = std::move(done)](caf::expected<lp::write_result> r) {
      if (r) {
        std::lock_guard guard{mutex_};
        for (const auto& m : outbox) {
          auto doc = json::parse(m.payload_json).as_object();
          json::object payload;
          if (auto* p = doc.if_contains("payload"); p != nullptr && p->is_object())
            payload = p->as_object();
          sent_.push_back({source, m.destination, std::string{doc.at("name").as_string()},
                           std::move(payload), m.message_id});
        }
      }
      done(std::move(r));
    });
  }

  /// Every message of every committed write so far, in commit order.
  std::vector<sent_message> sent() const {
    std::lock_guard guard{mutex_};
    return sent_;
  }

private:
  mutable std::mutex mutex_;
  std::vector<sent_message> sent_;
};

/// The retail sample on a deterministic runtime: virtual clock at t0, in-memory journal
/// stamped by that clock, the recording decorator in front. The simulation starts as a
/// world where nothing goes wrong (no expired cards, gateway timeouts or lost shipments;
/// article-13 is never picked, as in the sample); tests change `retail::settings()` or
/// `flow` before start().
class retail_runtime {
public:
  longhaul::runtime_config cfg;
  std::shared_ptr<longhaul::actors::virtual_clock> clock;
  std::shared_ptr<recording_journal> recorder;
  /// The order flow to register (default: the builder's, retail::order_flow()).
  std::optional<longhaul::flow_definition> flow;

  retail_runtime() {
    auto& sim = retail::settings();
    sim = retail::simulation{};
    sim.card_expired_share = 0;
    sim.gateway_timeout_share = 0;
    sim.shipment_lost_share = 0;
    cfg.deterministic = true;
    cfg.storage = longhaul::storage_kind::memory;
    const char* env = std::getenv("LONGHAUL_TEST_LOG");
    cfg.log_level = env != nullptr ? env : "off";
    cfg.passivate_after = 0ms;
    clock = std::make_shared<longhaul::actors::virtual_clock>(t0);
    cfg.clock = clock;
    lp::memory_journal_config mc;
    mc.clock = [c = clock] { return c->now(); };
    recorder = std::make_shared<recording_journal>(std::make_shared<lp::memory_journal>(mc));
    cfg.journal_override = recorder;
  }

  ~retail_runtime() {
    if (rt_)
      rt_->stop();
    retail::settings() = retail::simulation{};
  }

  retail_runtime(const retail_runtime&) = delete;
  retail_runtime& operator=(const retail_runtime&) = delete;

  /// Registers the contexts, subscriptions and order flow (register_retail) and starts;
  /// fails the test on error.
  void start() {
    using namespace retail;
    rt_ = std::make_unique<longhaul::runtime>(cfg);
    if (!flow) {
      auto def = order_flow();
      INFO(text_of(def));
      REQUIRE(def);
      flow = std::move(*def);
    }
    auto err = register_retail(*rt_, *flow);
    INFO(lp::describe(err));
    REQUIRE(!err);
    err = rt_->start();
    INFO(lp::describe(err));
    REQUIRE(!err);
  }

  longhaul::runtime& rt() {
    REQUIRE(rt_);
    return *rt_;
  }

  lp::journal& journal() { return rt().journal(); }

  // -- verbs ----------------------------------------------------------------------------

  void grant_credit(const std::string& customer, std::int64_t amount) {
    auto r = rt().ask("customer", customer, retail::grant_credit{amount});
    INFO(text_of(r));
    REQUIRE(r);
  }

  /// Places order `id` for `customer` with `items` (total = their sum).
  void place(const std::string& id, const std::string& customer, std::vector<retail::item> items) {
    retail::place_order cmd{id, customer, std::move(items), 0};
    for (const auto& i : cmd.items)
      cmd.total += i.amount;
    auto r = rt().ask<std::string>("checkout", id, cmd);
    INFO(text_of(r));
    REQUIRE(r);
    CHECK(*r == id);
  }

  /// The customer updates the card for `order` (as `retail update-card` does).
  void update_card(const std::string& order, const std::string& customer) {
    auto r = rt().ask("customer", customer, retail::update_card{order, customer});
    INFO(text_of(r));
    REQUIRE(r);
  }

  /// Delivers message `name` to `type`/`id` with `message_id`, as the outbox would.
  caf::expected<longhaul::actors::command_reply>
  deliver(std::string_view type, std::string_view id, std::string name, json::object payload,
          std::string message_id) {
    longhaul::actors::command_envelope env;
    env.entity_type = std::string{type};
    env.entity_id = std::string{id};
    env.name = std::move(name);
    env.payload = std::move(payload);
    env.message_id = std::move(message_id);
    return rt().ask_envelope(std::move(env));
  }

  /// Moves virtual time forward, firing every timer that comes due on the way.
  void advance(std::chrono::milliseconds d) { rt().advance_time(d); }

  // -- observations -----------------------------------------------------------------------

  /// Every message sent or published so far, in commit order.
  std::vector<sent_message> sent() const { return recorder->sent(); }

  /// Messages rendered as "<source> -> <destination>: <name>" ("... -> event: <name>" for
  /// published events), optionally only those concerning order `order` (sent by, or to,
  /// an instance with that id, or carrying it as order_id).
  strings sent_lines(const std::string& order = {}) const {
    strings out;
    for (const auto& m : sent()) {
      if (!order.empty() && !concerns(m, order))
        continue;
      if (m.destination.rfind("event:", 0) == 0)
        out.push_back(m.source + " -> event: " + m.name);
      else
        out.push_back(m.source + " -> " + m.destination + ": " + m.name);
    }
    return out;
  }

  /// Names only of the messages concerning `order` (sent_lines without addresses).
  strings sent_names(const std::string& order) const {
    strings out;
    for (const auto& m : sent())
      if (concerns(m, order))
        out.push_back(m.name);
    return out;
  }

  /// How many messages named `name` concern `order`.
  std::size_t count_sent(const std::string& order, std::string_view name) const {
    std::size_t n = 0;
    for (const auto& m : sent())
      n += concerns(m, order) && m.name == name;
    return n;
  }

  std::vector<lp::event_record> events(const std::string& pid) {
    auto r = journal().replay(pid, 1, lp::max_sequence_nr, 1000000);
    REQUIRE(r);
    return std::move(r->events);
  }

  /// The stored event names of `pid`, in order.
  strings names(const std::string& pid) {
    strings out;
    for (const auto& ev : events(pid))
      out.push_back(ev.type);
    return out;
  }

  /// The stored events of `pid` of type `type`.
  std::vector<lp::event_record> events_of_type(const std::string& pid, std::string_view type) {
    std::vector<lp::event_record> out;
    for (auto& ev : events(pid))
      if (ev.type == type)
        out.push_back(std::move(ev));
    return out;
  }

  /// Payloads of the stored events of `pid` of type `type`.
  std::vector<json::object> payloads(const std::string& pid, std::string_view type) {
    std::vector<json::object> out;
    for (const auto& ev : events_of_type(pid, type))
      out.push_back(json::parse(ev.payload_json).as_object());
    return out;
  }

  /// The e-mails recorded for `customer`, as "<kind> <order>", in order.
  strings emails(const std::string& customer) {
    strings out;
    for (const auto& p : payloads("notification/" + customer, "notification.email_recorded"))
      out.push_back(std::string{p.at("kind").as_string()} + " "
                    + std::string{p.at("order_id").as_string()});
    return out;
  }

  /// The state of `type`/`id` as JSON.
  json::object state_of(std::string_view type, std::string_view id) {
    auto r = rt().status(type, id);
    INFO(text_of(r));
    REQUIRE(r);
    return json::parse(r->state_json).as_object();
  }

  longhaul::flow_status order_status(std::string_view id) {
    auto r = rt().flow_status_of("order", id);
    INFO(text_of(r));
    REQUIRE(r);
    return std::move(*r);
  }

  std::vector<lp::timer_record> timers(const std::string& pid) {
    auto r = journal().timers_of(pid);
    REQUIRE(r);
    return std::move(*r);
  }

  /// Every stored event of every id, in position order.
  std::vector<lp::event_record> history() {
    auto r = journal().read_all(0, 10000000);
    REQUIRE(r);
    return std::move(*r);
  }

private:
  static bool concerns(const sent_message& m, const std::string& order) {
    auto ends_with = [&](const std::string& s) {
      return s.size() > order.size() && s.compare(s.size() - order.size(), order.size(), order) == 0
             && s[s.size() - order.size() - 1] == '/';
    };
    if (ends_with(m.source) || ends_with(m.destination))
      return true;
    auto it = m.payload.find("order_id");
    return it != m.payload.end() && it->value().is_string() && it->value().as_string() == order;
  }

  std::unique_ptr<longhaul::runtime> rt_;
};

/// A JSON number field as int64 (fails the test if it is missing or not a number).
inline std::int64_t num(const json::object& o, std::string_view key) {
  REQUIRE(o.contains(key));
  return json::value_to<std::int64_t>(o.at(key));
}

/// A JSON string field (fails the test if it is missing or not a string).
inline std::string str(const json::object& o, std::string_view key) {
  REQUIRE(o.contains(key));
  REQUIRE(o.at(key).is_string());
  return std::string{o.at(key).as_string()};
}

}  // namespace retail_test
