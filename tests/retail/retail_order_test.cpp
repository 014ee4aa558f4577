// One order of the retail sample at a time, on virtual time (deterministic, no sleeps):
// the happy path message by message, the expired card updated in time or not, goods not
// fetched or not shipped in time (refund exactly once), early and duplicate events, and
// a card update racing the 7-day deadline.
#include "tests/retail/retail_fixture.hpp"

using namespace retail_test;

namespace {

const std::vector<retail::item> two_items{{"article-1", 1999}, {"article-2", 501}};

/// Items inventory never picks (article-13), so no goods.fetched is ever published.
const std::vector<retail::item> unpickable{{"article-13", 1500}, {"article-2", 500}};

}  // namespace

TEST_CASE("an order on the happy path sends exactly order.placed, retrieve_payment, "
          "payment.received, fetch_goods, goods.fetched, ship_goods, goods.shipped, "
          "order.completed, and the customer gets two e-mails") {
  retail_runtime fx;
  fx.start();
  fx.place("order-1", "customer-1", two_items);
  fx.advance(1h);

  // Every message of the run, in commit order, with its sender and destination.
  CHECK(fx.sent_lines()
        == strings{"checkout/order-1 -> event: order.placed",
                   "order/order-1 -> payment/order-1: retrieve_payment",
                   "payment/order-1 -> customer/customer-1: use_credit",
                   "customer/customer-1 -> payment/order-1: credit_applied",
                   "payment/order-1 -> event: payment.received",
                   "order/order-1 -> inventory/order-1: fetch_goods",
                   "inventory/order-1 -> event: goods.fetched",
                   "order/order-1 -> shipping/order-1: ship_goods",
                   "shipping/order-1 -> event: goods.shipped",
                   "order/order-1 -> event: order.completed"});
  // Without payment's own conversation with the customer (credit), the flow's story.
  auto names = fx.sent_names("order-1");
  std::erase_if(names, [](const auto& n) { return n == "use_credit" || n == "credit_applied"; });
  CHECK(names
        == strings{"order.placed", "retrieve_payment", "payment.received", "fetch_goods",
                   "goods.fetched", "ship_goods", "goods.shipped", "order.completed"});
  CHECK(fx.emails("customer-1") == strings{"payment_received order-1", "order_shipped order-1"});

  // The payloads the flow filled from its data.
  auto sent = fx.sent();
  CHECK(sent[1].payload
        == json::object{{"order_id", "order-1"}, {"customer", "customer-1"}, {"amount", 2500}});
  CHECK(sent[7].payload
        == json::object{{"order_id", "order-1"}, {"pick_id", "pick-order-1"},
                        {"customer", "customer-1"}});
  CHECK(str(sent[9].payload, "shipment_id") == "ship-order-1");

  // Every step is entered by its own first event (flow.command_sent, flow.waiting,
  // flow.ended): no flow.step_entered on the happy path.
  CHECK(fx.names("order/order-1")
        == strings{"flow.started",       "flow.command_sent",  "flow.waiting",
                   "flow.event_consumed", "flow.command_sent", "flow.waiting",
                   "flow.event_consumed", "flow.command_sent", "flow.waiting",
                   "flow.event_consumed", "flow.ended"});
  auto st = fx.order_status("order-1");
  CHECK(st.status == "completed");
  CHECK(st.reason == "order completed");
  CHECK(st.executed
        == strings{"retrieve payment", "await payment", "fetch goods", "await goods", "ship goods",
                   "await shipment", "completed"});
  auto pay = fx.state_of("payment", "order-1");
  CHECK(str(pay, "status") == "paid");
  CHECK(num(pay, "card") == 2500);
  CHECK(num(pay, "credit") == 0);
  CHECK(fx.timers("order/order-1").empty());
}

TEST_CASE("once an order completes only its customer's instances stay in memory: checkout, "
          "payment, inventory, shipping and the flow leave as they finish") {
  retail_runtime fx;
  fx.cfg.passivate_after = std::chrono::minutes{2};  // the fixture keeps everything live
  fx.start();
  fx.place("order-9", "customer-9", two_items);
  fx.advance(1ms);
  REQUIRE(fx.names("order/order-9").back() == "flow.ended");
  // customer/customer-9 (its credit) and notification/customer-9 (its e-mails) live on
  // until they are idle for passivate_after; everything of the order itself is gone.
  CHECK(*fx.rt().live_instances() == 2);
  // A refund asked for later activates the paid payment again, from its stored events.
  auto refund = fx.deliver("payment", "order-9", "refund_payment", {{"order_id", "order-9"}},
                           "refund-9");
  INFO(text_of(refund));
  REQUIRE(refund);
  fx.advance(1ms);
  CHECK(fx.events_of_type("payment/order-9", "payment.refunded").size() == 1);
  CHECK(*fx.rt().live_instances() == 2);  // refunded, it finished again
}

TEST_CASE("a card that expired and is updated within 7 days is charged again and the order "
          "completes") {
  retail_runtime fx;
  retail::settings().card_expired_share = 1.0;  // the first charge of every order expires
  fx.start();
  fx.place("order-2", "customer-2", two_items);
  fx.advance(1h);
  CHECK(fx.names("payment/order-2")
        == strings{"payment.requested", "payment.credit_taken", "payment.card_expired"});
  CHECK(fx.order_status("order-2").current_step == "await payment");
  auto deadline = fx.timers("payment/order-2");
  REQUIRE(deadline.size() == 1);
  CHECK(deadline[0].name == "card-deadline");
  CHECK(deadline[0].due_ms == t0 + 7 * day_ms);

  fx.advance(std::chrono::days{3});
  fx.update_card("order-2", "customer-2");
  fx.advance(1h);

  CHECK(fx.names("payment/order-2")
        == strings{"payment.requested", "payment.credit_taken", "payment.card_expired",
                   "payment.card_replaced", "payment.card_charged", "payment.received"});
  auto charged = fx.payloads("payment/order-2", "payment.card_charged");
  CHECK(num(charged[0], "attempt") == 2);
  CHECK(num(charged[0], "amount") == 2500);
  CHECK(fx.timers("payment/order-2").empty());  // the deadline went with the update
  auto st = fx.order_status("order-2");
  CHECK(st.status == "completed");
  CHECK(fx.events_of_type("order/order-2", "flow.ended")[0].written_at_ms
        == t0 + hour_ms + 3 * day_ms);
  CHECK(fx.emails("customer-2")
        == strings{"card_expired order-2", "payment_received order-2", "order_shipped order-2"});
  fx.advance(std::chrono::days{10});
  CHECK(fx.names("payment/order-2").back() == "payment.received");  // no deadline fires later
}

TEST_CASE("a card never updated fails the payment after 7 days: the order is canceled with "
          "the reason, the customer's credit is restored and nothing is refunded") {
  retail_runtime fx;
  retail::settings().card_expired_share = 1.0;
  fx.start();
  fx.grant_credit("customer-3", 1000);
  fx.place("order-3", "customer-3", {{"article-1", 3000}});
  fx.advance(1h);
  CHECK(num(fx.state_of("customer", "customer-3"), "credit") == 0);

  fx.advance(std::chrono::milliseconds{7 * day_ms - hour_ms - 1});
  CHECK(str(fx.state_of("payment", "order-3"), "status") == "awaiting_card");
  CHECK(fx.order_status("order-3").status == "waiting");
  fx.advance(1ms);  // exactly 7 days after the card expired

  auto failed = fx.payloads("payment/order-3", "payment.failed");
  REQUIRE(failed.size() == 1);
  CHECK(str(failed[0], "reason") == "card expired and not updated within 7 days");
  auto st = fx.order_status("order-3");
  CHECK(st.status == "canceled");
  CHECK(st.reason == "card expired and not updated within 7 days");
  CHECK(fx.events_of_type("order/order-3", "flow.ended")[0].written_at_ms == t0 + 7 * day_ms);
  // Credit back, once; no refund: the payment never got to "paid".
  auto cust = fx.state_of("customer", "customer-3");
  CHECK(num(cust, "credit") == 1000);
  CHECK(cust.at("used").as_object().empty());
  CHECK(fx.payloads("customer/customer-3", "customer.credit_restored").size() == 1);
  CHECK(fx.count_sent("order-3", "refund_payment") == 0);
  CHECK(fx.events_of_type("payment/order-3", "payment.refunded").empty());
  auto pay = fx.state_of("payment", "order-3");
  CHECK(str(pay, "status") == "failed");
  CHECK(num(pay, "card") == 0);
  CHECK(num(pay, "refunded") == 0);
  CHECK(fx.emails("customer-3") == strings{"card_expired order-3", "order_canceled order-3"});
}

TEST_CASE("goods not fetched in 12 hours refund the payment exactly once, even when "
          "goods.fetched and a second refund arrive later") {
  retail_runtime fx;
  fx.start();
  fx.grant_credit("customer-4", 500);
  fx.place("order-4", "customer-4", unpickable);
  CHECK(fx.names("inventory/order-4") == strings{"inventory.goods_unavailable"});
  fx.advance(std::chrono::milliseconds{12 * hour_ms - 1});
  CHECK(fx.order_status("order-4").current_step == "await goods");
  CHECK(fx.count_sent("order-4", "refund_payment") == 0);
  fx.advance(1ms);

  auto st = fx.order_status("order-4");
  CHECK(st.status == "failed");
  CHECK(st.reason == "goods not fetched in time");
  CHECK(st.compensated == strings{"retrieve payment"});
  CHECK(fx.events_of_type("order/order-4", "flow.ended")[0].written_at_ms == t0 + 12 * hour_ms);
  auto refunded = fx.payloads("payment/order-4", "payment.refunded");
  REQUIRE(refunded.size() == 1);
  CHECK(num(refunded[0], "card") == 1500);
  CHECK(num(refunded[0], "credit") == 500);
  CHECK(num(fx.state_of("customer", "customer-4"), "credit") == 500);

  // The goods turn up after all, and someone asks for the refund again: nothing moves.
  auto order_events = fx.names("order/order-4");
  auto late = fx.deliver("order", "order-4", "goods.fetched",
                         {{"order_id", "order-4"}, {"pick_id", "pick-late"}}, "late-goods-1");
  INFO(text_of(late));
  REQUIRE(late);
  auto again = fx.deliver("payment", "order-4", "refund_payment", {{"order_id", "order-4"}},
                          "refund-again-1");
  INFO(text_of(again));
  REQUIRE(again);
  fx.advance(std::chrono::days{2});
  CHECK(fx.names("order/order-4") == order_events);
  CHECK(fx.count_sent("order-4", "refund_payment") == 1);
  CHECK(fx.count_sent("order-4", "ship_goods") == 0);
  CHECK(fx.events_of_type("payment/order-4", "payment.refunded").size() == 1);
  CHECK(fx.payloads("customer/customer-4", "customer.credit_restored").size() == 1);
  CHECK(num(fx.state_of("customer", "customer-4"), "credit") == 500);
  CHECK(num(fx.state_of("payment", "order-4"), "refunded") == 2000);
  CHECK(fx.emails("customer-4") == strings{"payment_received order-4", "order_canceled order-4"});
}

TEST_CASE("goods not shipped in 24 hours refund the payment once and end the order "
          "'goods not shipped in time'") {
  retail_runtime fx;
  retail::settings().shipment_lost_share = 1.0;
  fx.start();
  fx.place("order-5", "customer-5", two_items);
  CHECK(fx.names("shipping/order-5") == strings{"shipping.shipment_lost"});
  fx.advance(std::chrono::milliseconds{24 * hour_ms - 1});
  CHECK(fx.order_status("order-5").current_step == "await shipment");
  fx.advance(1ms);

  auto st = fx.order_status("order-5");
  CHECK(st.status == "failed");
  CHECK(st.reason == "goods not shipped in time");
  CHECK(fx.events_of_type("order/order-5", "flow.ended")[0].written_at_ms == t0 + 24 * hour_ms);
  CHECK(fx.count_sent("order-5", "refund_payment") == 1);
  auto refunded = fx.payloads("payment/order-5", "payment.refunded");
  REQUIRE(refunded.size() == 1);
  CHECK(num(refunded[0], "card") == 2500);
  CHECK(str(fx.state_of("payment", "order-5"), "status") == "refunded");
  CHECK(fx.emails("customer-5") == strings{"payment_received order-5", "order_canceled order-5"});
  fx.advance(std::chrono::days{3});
  CHECK(fx.events_of_type("payment/order-5", "payment.refunded").size() == 1);
}

TEST_CASE("a goods.fetched that arrives before the flow waits for it is buffered and "
          "consumed when the wait starts") {
  retail_runtime fx;
  retail::settings().card_expired_share = 1.0;  // holds the flow in 'await payment'
  fx.start();
  fx.place("order-6", "customer-6", unpickable);  // inventory itself never answers
  CHECK(fx.order_status("order-6").current_step == "await payment");

  auto early = fx.deliver("order", "order-6", "goods.fetched",
                          {{"order_id", "order-6"}, {"pick_id", "pick-early"}}, "early-goods-1");
  INFO(text_of(early));
  REQUIRE(early);
  CHECK_FALSE(early->duplicate);
  auto st = fx.order_status("order-6");
  CHECK(st.current_step == "await payment");
  CHECK(st.buffered_events == strings{"goods.fetched"});

  fx.advance(10min);
  fx.update_card("order-6", "customer-6");
  fx.advance(1h);

  st = fx.order_status("order-6");
  CHECK(st.status == "completed");
  CHECK(st.buffered_events.empty());
  auto consumed = fx.payloads("order/order-6", "flow.event_consumed");
  REQUIRE(consumed.size() == 3);
  CHECK(str(consumed[1], "event") == "goods.fetched");
  CHECK(num(consumed[1], "buffer_index") == 0);
  // The wait for goods never had to wait: no flow.waiting for it, no timer.
  for (const auto& w : fx.payloads("order/order-6", "flow.waiting"))
    CHECK(str(w, "step") != "await goods");
  CHECK(fx.count_sent("order-6", "fetch_goods") == 1);
  std::vector<sent_message> ships;
  for (const auto& m : fx.sent())
    if (m.name == "ship_goods")
      ships.push_back(m);
  REQUIRE(ships.size() == 1);
  CHECK(str(ships[0].payload, "pick_id") == "pick-early");
}

TEST_CASE("a duplicate payment.received (the same message again, or a second publication) "
          "neither advances the order nor doubles a command or an e-mail") {
  retail_runtime fx;
  fx.start();
  fx.place("order-7", "customer-7", unpickable);  // the flow stays in 'await goods'
  CHECK(fx.order_status("order-7").current_step == "await goods");
  std::string published;
  json::object payload;
  for (const auto& m : fx.sent())
    if (m.name == "payment.received") {
      published = m.message_id;
      payload = m.payload;
    }
  REQUIRE(!published.empty());
  auto flow_events = fx.names("order/order-7");
  auto mails = fx.emails("customer-7");

  // The outbox delivers the same message again (a crash before it was marked delivered).
  auto again = fx.deliver("order", "order-7", "payment.received", payload, published + "@order");
  INFO(text_of(again));
  REQUIRE(again);
  CHECK(again->duplicate);
  auto mail_again = fx.deliver("notification", "customer-7", "payment.received", payload,
                               published + "@notification");
  INFO(text_of(mail_again));
  REQUIRE(mail_again);
  CHECK(mail_again->duplicate);
  CHECK(fx.names("order/order-7") == flow_events);
  CHECK(fx.emails("customer-7") == mails);

  // A second publication (a new message id): kept aside as an early event, never consumed.
  auto second = fx.deliver("order", "order-7", "payment.received", payload, "payment-again-1");
  INFO(text_of(second));
  REQUIRE(second);
  CHECK_FALSE(second->duplicate);
  auto st = fx.order_status("order-7");
  CHECK(st.current_step == "await goods");
  CHECK(fx.count_sent("order-7", "fetch_goods") == 1);

  // The goods arrive: the order completes with every command sent once.
  auto goods = fx.deliver("order", "order-7", "goods.fetched",
                          {{"order_id", "order-7"}, {"pick_id", "pick-7"}}, "goods-7");
  INFO(text_of(goods));
  REQUIRE(goods);
  fx.advance(2h);
  st = fx.order_status("order-7");
  CHECK(st.status == "completed");
  for (auto name : {"retrieve_payment", "fetch_goods", "ship_goods", "order.completed"})
    CHECK(fx.count_sent("order-7", name) == 1);
  CHECK(fx.payloads("order/order-7", "flow.event_consumed").size() == 3);
  CHECK(fx.events_of_type("payment/order-7", "payment.received").size() == 1);
  CHECK(fx.emails("customer-7")
        == strings{"payment_received order-7", "order_shipped order-7"});
}

TEST_CASE("a card update handled at the 7-day deadline instant but before the deadline "
          "timer fired counts: the card is charged and the order completes") {
  retail_runtime fx;
  retail::settings().card_expired_share = 1.0;
  fx.start();
  fx.place("order-8", "customer-8", two_items);
  auto timers = fx.timers("payment/order-8");
  REQUIRE(timers.size() == 1);
  auto deadline = timers[0].due_ms;
  CHECK(deadline == t0 + 7 * day_ms);

  // The clock reaches the deadline; the scheduler has not fired the timer yet (it fires
  // when poked, as a real scheduler's wake-up message would arrive after the update).
  fx.clock->set(deadline);
  fx.update_card("order-8", "customer-8");
  auto replaced = fx.events_of_type("payment/order-8", "payment.card_replaced");
  REQUIRE(replaced.size() == 1);
  CHECK(replaced[0].written_at_ms == deadline);
  CHECK(fx.timers("payment/order-8").empty());

  fx.advance(1h);
  CHECK(fx.names("payment/order-8")
        == strings{"payment.requested", "payment.credit_taken", "payment.card_expired",
                   "payment.card_replaced", "payment.card_charged", "payment.received"});
  CHECK(fx.order_status("order-8").status == "completed");
}

TEST_CASE("a card update delivered at the 7-day deadline instant after the deadline timer "
          "fired is recorded as a late update and payment.failed stands") {
  retail_runtime fx;
  retail::settings().card_expired_share = 1.0;
  fx.start();
  fx.place("order-9", "customer-9", two_items);
  auto deadline = t0 + 7 * day_ms;
  fx.advance(std::chrono::milliseconds{deadline - fx.rt().now()});
  REQUIRE(fx.rt().now() == deadline);
  CHECK(fx.events_of_type("payment/order-9", "payment.failed").size() == 1);

  fx.update_card("order-9", "customer-9");  // same virtual instant, after the firing
  auto late = fx.events_of_type("payment/order-9", "payment.late_card_update");
  REQUIRE(late.size() == 1);
  CHECK(late[0].written_at_ms == deadline);
  fx.advance(1h);
  CHECK(fx.names("payment/order-9")
        == strings{"payment.requested", "payment.credit_taken", "payment.card_expired",
                   "payment.failed", "payment.late_card_update"});
  auto pay = fx.state_of("payment", "order-9");
  CHECK(str(pay, "status") == "failed");
  CHECK(num(pay, "late_updates") == 1);
  CHECK(num(pay, "card") == 0);
  auto st = fx.order_status("order-9");
  CHECK(st.status == "canceled");
  CHECK(st.reason == "card expired and not updated within 7 days");
  CHECK(fx.emails("customer-9") == strings{"card_expired order-9", "order_canceled order-9"});
}
