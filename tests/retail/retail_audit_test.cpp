// The retail audit (samples/retail/retail_audit.hpp) on the history of a deterministic
// run of five orders, one per path: it passes the real history and names each broken
// promise in doctored copies (an order ended twice or never, a command handled twice, an
// e-mail recorded twice, a refund lost, an order never placed, a dead letter).
#include "samples/retail/retail_audit.hpp"
#include "tests/retail/retail_fixture.hpp"

#include <algorithm>

using namespace retail_test;

namespace {

const strings five_orders{"order-1", "order-2", "order-3", "order-4", "order-5"};

/// Five orders: completed (order-1, order-2 after a card update), canceled by a card never
/// updated (order-3), refunded when goods were not fetched (order-4) or not shipped
/// (order-5, the shipment of article-99 is lost).
void run_five_orders(retail_runtime& fx) {
  fx.grant_credit("customer-1", 1000);
  fx.grant_credit("customer-3", 400);
  fx.place("order-1", "customer-1", {{"article-1", 1999}, {"article-2", 501}});
  retail::settings().card_expired_share = 1.0;
  fx.place("order-2", "customer-2", {{"article-3", 1200}});
  fx.place("order-3", "customer-3", {{"article-3", 1200}});
  retail::settings().card_expired_share = 0.0;
  fx.place("order-4", "customer-1", {{"article-13", 800}});
  retail::settings().shipment_lost_share = 1.0;
  fx.place("order-5", "customer-2", {{"article-99", 650}});
  retail::settings().shipment_lost_share = 0.0;
  fx.advance(std::chrono::days{2});
  fx.update_card("order-2", "customer-2");
  fx.advance(std::chrono::days{6});
}

/// The history of run_five_orders (the same on every call: virtual time, fixed inputs).
std::vector<lp::event_record> five_order_history() {
  retail_runtime fx;
  fx.start();
  run_five_orders(fx);
  return fx.history();
}

strings problems_of(const std::vector<lp::event_record>& history,
                    const strings& expected = five_orders) {
  return retail::audit_history(history, expected).problems;
}

/// The index of the first event of `pid` with type `type`.
std::size_t find(const std::vector<lp::event_record>& h, const std::string& pid,
                 std::string_view type) {
  auto it = std::find_if(h.begin(), h.end(), [&](const lp::event_record& ev) {
    return ev.persistence_id == pid && ev.type == type;
  });
  REQUIRE(it != h.end());
  return static_cast<std::size_t>(it - h.begin());
}

/// A copy of `h` with its event `i` stored a second time (as a command handled twice
/// would have; the sequence number is not checked by the audit).
std::vector<lp::event_record> twice(std::vector<lp::event_record> h, std::size_t i) {
  auto copy = h[i];
  copy.seq += 1000;
  h.push_back(std::move(copy));
  return h;
}

std::vector<lp::event_record> without(std::vector<lp::event_record> h, std::size_t i) {
  h.erase(h.begin() + static_cast<std::ptrdiff_t>(i));
  return h;
}

}  // namespace

TEST_CASE("the audit passes the history of five orders on five paths and sums up their "
          "end states, money and e-mails") {
  retail_runtime fx;
  fx.start();
  run_five_orders(fx);
  auto r = retail::audit_journal(fx.journal(), five_orders);
  INFO(text_of(r));
  REQUIRE(r);
  CHECK(r->problems == strings{});
  CHECK(r->ok());
  CHECK(r->orders_placed == 5);
  CHECK(r->end_states
        == std::map<std::string, std::size_t>{
          {"canceled: card expired and not updated within 7 days", 1},
          {"completed: order completed", 2},
          {"failed: goods not fetched in time", 1},
          {"failed: goods not shipped in time", 1}});
  CHECK(r->completed_total == 2500 + 1200);
  CHECK(r->net_charged() == 2500 + 1200);
  CHECK(r->credit_taken == 1000 + 400);  // order-1 and order-3 (order-4 found none left)
  CHECK(r->credit_restored == 400);      // order-3's
  CHECK(r->card_charged == 1500 + 1200 + 800 + 650);
  CHECK(r->card_refunded == 800 + 650);
  CHECK(r->emails
        == std::map<std::string, std::int64_t>{{"card_expired", 2},
                                               {"order_canceled", 3},
                                               {"order_shipped", 2},
                                               {"payment_received", 4}});
  REQUIRE(r->ended.count("order-3") == 1);
  CHECK(r->ended.at("order-3").ended_at_ms - r->ended.at("order-3").started_at_ms == 7 * day_ms);
}

TEST_CASE("the audit reports an order that ended twice, and one that never ended") {
  auto h = five_order_history();
  REQUIRE(problems_of(h).empty());
  CHECK(problems_of(twice(h, find(h, "order/order-1", "flow.ended")))
        == strings{"order-1: ended 2 times"});
  CHECK(problems_of(without(h, find(h, "order/order-2", "flow.ended")))
        == strings{"order-2: no end state",
                   "money: charged - refunded = 37.00, completed orders total 25.00"});
}

TEST_CASE("the audit reports a command handled twice: a second card charge, fetch or "
          "flow command, with the money it moved") {
  auto h = five_order_history();
  CHECK(problems_of(twice(h, find(h, "payment/order-1", "payment.card_charged")))
        == strings{"order-1: payment.card_charged stored 2 times (handled twice)",
                   "order-1: completed with total 25.00 but charged 40.00 net of refunds",
                   "money: charged - refunded = 52.00, completed orders total 37.00"});
  CHECK(problems_of(twice(h, find(h, "inventory/order-1", "goods.fetched")))
        == strings{"order-1: inventory event stored 2 times (handled twice)"});
  auto fetch = find(h, "order/order-4", "flow.command_sent");
  CHECK(problems_of(twice(h, fetch))
        == strings{"order-4: command retrieve payment (attempt 1) stored 2 times (handled twice)"});
  CHECK(problems_of(twice(h, find(h, "customer/customer-3", "customer.credit_restored")))
        == strings{"order-3: customer.credit_restored stored 2 times (handled twice)",
                   "order-3: ended canceled (card expired and not updated within 7 days) but "
                   "-4.00 stayed charged",
                   "money: charged - refunded = 33.00, completed orders total 37.00"});
}

TEST_CASE("the audit reports an e-mail recorded twice for one order") {
  auto h = five_order_history();
  CHECK(problems_of(twice(h, find(h, "notification/customer-2", "notification.email_recorded")))
        == strings{"order-2: e-mail card_expired stored 2 times (handled twice)"});
}

TEST_CASE("the audit reports a lost refund as money that stayed charged") {
  auto h = five_order_history();
  CHECK(problems_of(without(h, find(h, "payment/order-5", "payment.refunded")))
        == strings{"order-5: ended failed (goods not shipped in time) but 6.50 stayed charged",
                   "money: charged - refunded = 43.50, completed orders total 37.00"});
}

TEST_CASE("the audit reports an expected order that was never placed, and an undecodable "
          "event") {
  auto h = five_order_history();
  auto expected = five_orders;
  expected.push_back("order-6");
  CHECK(problems_of(h, expected) == strings{"order-6: never placed", "order-6: no end state"});
  auto broken = h;
  broken[3].payload_json = "{not json";
  auto problems = problems_of(broken);
  REQUIRE_FALSE(problems.empty());
  CHECK(problems[0].find("payload is not a JSON object") != std::string::npos);
}

TEST_CASE("auditing a journal reports dead letters and messages still in the outbox") {
  retail_runtime fx;
  fx.start();
  run_five_orders(fx);
  lp::dead_letter_record dl;
  dl.message_id = "m-1";
  dl.source_persistence_id = "order/order-1";
  dl.destination = "shipping/order-1";
  dl.payload_json = "{}";
  dl.reason = "unknown command";
  REQUIRE_FALSE(fx.journal().record_dead_letter(dl));
  auto r = retail::audit_journal(fx.journal(), five_orders);
  REQUIRE(r);
  CHECK(r->problems == strings{"dead letter to shipping/order-1: unknown command"});
}
