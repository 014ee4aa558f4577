// The retail bounded contexts as longhaul entities (public API only): checkout places
// orders, customer holds credit and cards, payment takes credit then charges a fake card
// gateway (long-running: waits up to 7 days for an updated card), inventory picks goods,
// shipping ships them, notification records the e-mails a customer would get.
// The order itself is a flow (retail_order_flow.hpp). Flow of one order:
//   checkout -order.placed-> order flow -retrieve_payment-> payment -use_credit-> customer
//   -credit_applied-> payment -payment.received-> order flow -fetch_goods-> inventory ...
#pragma once

#include "runtime/entity.hpp"

#include <boost/describe.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace retail {

using namespace std::chrono_literals;

/// Knobs of the simulation, set before the runtime starts. Every random-looking outcome
/// is a pure function of (seed, order id, attempt): runs are reproducible.
struct simulation {
  std::uint64_t seed = 42;
  double card_expired_share = 0.10;    ///< first charge of an order answers "card expired"
  double gateway_timeout_share = 0.05; ///< a charge attempt times out (retried with backoff)
  double shipment_lost_share = 0.05;   ///< shipments that never arrive (24-hour timeout)
  std::set<std::string> never_picked{"article-13"};  ///< articles inventory never picks
  std::uint32_t max_gateway_attempts = 5;
};

/// The process-wide simulation settings (read by decide(); set them before start()).
inline simulation& settings() {
  static simulation s;
  return s;
}

/// A number in [0, 1) from (seed, key): FNV-1a, stable across platforms and runs.
inline double unit(std::string_view key, std::uint64_t salt = 0) {
  std::uint64_t h = 1469598103934665603ull ^ (settings().seed * 1099511628211ull) ^ salt;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return static_cast<double>(h >> 11) / static_cast<double>(1ull << 53);
}

struct item {
  std::string article;
  std::int64_t amount = 0;  ///< price in cents
};
BOOST_DESCRIBE_STRUCT(item, (), (article, amount))

// ===================================== checkout ======================================

struct place_order {
  static constexpr auto command_name = "place_order";
  std::string order_id;
  std::string customer;
  std::vector<item> items;
  std::int64_t total = 0;
};
BOOST_DESCRIBE_STRUCT(place_order, (), (order_id, customer, items, total))

/// Published when an order is placed; starts the order flow.
struct order_placed {
  static constexpr auto event_name = "order.placed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
  std::vector<item> items;
  std::int64_t total = 0;
};
BOOST_DESCRIBE_STRUCT(order_placed, (), (order_id, customer, items, total))

struct checkout_state {
  bool placed = false;
  std::int64_t total = 0;
};
BOOST_DESCRIBE_STRUCT(checkout_state, (), (placed, total))

struct checkout {
  static constexpr auto type_name = "checkout";
  using state = checkout_state;
  using command = std::variant<place_order>;
  using event = std::variant<order_placed>;

  static longhaul::decision<event> decide(const state& s, const command& c) {
    const auto& cmd = std::get<place_order>(c);
    if (s.placed)
      return longhaul::reject("order " + cmd.order_id + " was already placed");
    if (cmd.customer.empty())
      return longhaul::reject("an order needs a customer");
    if (cmd.items.empty())
      return longhaul::reject("an order needs at least one item");
    std::int64_t sum = 0;
    for (const auto& i : cmd.items) {
      if (i.article.empty() || i.amount <= 0)
        return longhaul::reject("every item needs an article and a positive amount");
      sum += i.amount;
    }
    if (sum != cmd.total)
      return longhaul::reject("total " + std::to_string(cmd.total) + " does not match the items ("
                              + std::to_string(sum) + ")");
    order_placed ev{cmd.order_id, cmd.customer, cmd.items, cmd.total};
    longhaul::decision<event> d{ev};
    d.publish(ev).reply(cmd.order_id).finish();  // a checkout places one order
    return d;
  }

  static void apply(state& s, const event& e) {
    s.placed = true;
    s.total = std::get<order_placed>(e).total;
  }
};

// ===================================== customer ======================================

struct grant_credit {
  static constexpr auto command_name = "grant_credit";
  std::int64_t amount = 0;
};
struct use_credit {
  static constexpr auto command_name = "use_credit";
  std::string order_id;
  std::int64_t amount = 0;
};
struct restore_credit {
  static constexpr auto command_name = "restore_credit";
  std::string order_id;
  std::int64_t amount = 0;
};
struct update_card {
  static constexpr auto command_name = "update_card";
  std::string order_id;
  std::string customer;
};
BOOST_DESCRIBE_STRUCT(grant_credit, (), (amount))
BOOST_DESCRIBE_STRUCT(use_credit, (), (order_id, amount))
BOOST_DESCRIBE_STRUCT(restore_credit, (), (order_id, amount))
BOOST_DESCRIBE_STRUCT(update_card, (), (order_id, customer))

struct credit_granted {
  static constexpr auto event_name = "customer.credit_granted";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t amount = 0;
};
struct credit_used {
  static constexpr auto event_name = "customer.credit_used";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t amount = 0;
};
struct credit_restored {
  static constexpr auto event_name = "customer.credit_restored";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t amount = 0;
};
/// Published when the customer updates the card used for an order.
struct credit_card_updated {
  static constexpr auto event_name = "credit_card.updated";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
};
BOOST_DESCRIBE_STRUCT(credit_granted, (), (amount))
BOOST_DESCRIBE_STRUCT(credit_used, (), (order_id, amount))
BOOST_DESCRIBE_STRUCT(credit_restored, (), (order_id, amount))
BOOST_DESCRIBE_STRUCT(credit_card_updated, (), (order_id, customer))

/// Sent by customer back to payment: how much credit was taken for the order.
struct credit_applied {
  static constexpr auto command_name = "credit_applied";
  std::string order_id;
  std::int64_t deducted = 0;
};
BOOST_DESCRIBE_STRUCT(credit_applied, (), (order_id, deducted))

struct customer_state {
  std::int64_t credit = 0;
  std::map<std::string, std::int64_t> used;  ///< order -> credit taken (until restored)
};
BOOST_DESCRIBE_STRUCT(customer_state, (), (credit, used))

struct customer {
  static constexpr auto type_name = "customer";
  using state = customer_state;
  using command = std::variant<grant_credit, use_credit, restore_credit, update_card>;
  using event = std::variant<credit_granted, credit_used, credit_restored, credit_card_updated>;

  static longhaul::decision<event> decide(const state& s, const command& c);
  static void apply(state& s, const event& e);
};

// ===================================== payment =======================================

struct retrieve_payment {
  static constexpr auto command_name = "retrieve_payment";
  std::string order_id;
  std::string customer;
  std::int64_t amount = 0;
};
struct refund_payment {
  static constexpr auto command_name = "refund_payment";
  std::string order_id;
};
/// Timer: the next try of a charge whose gateway call timed out.
struct retry_charge {
  static constexpr auto command_name = "retry_charge";
  std::int64_t attempt = 0;
};
/// Timer: 7 days after "card expired" without an updated card (the rule for an update
/// arriving at the deadline is on `payment`).
struct card_deadline {
  static constexpr auto command_name = "card_deadline";
  std::int64_t late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(retrieve_payment, (), (order_id, customer, amount))
BOOST_DESCRIBE_STRUCT(refund_payment, (), (order_id))
BOOST_DESCRIBE_STRUCT(retry_charge, (), (attempt))
BOOST_DESCRIBE_STRUCT(card_deadline, (), (late_by_ms))

struct payment_requested {
  static constexpr auto event_name = "payment.requested";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
  std::int64_t amount = 0;
};
struct payment_credit_taken {
  static constexpr auto event_name = "payment.credit_taken";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t amount = 0;
};
struct card_charged {
  static constexpr auto event_name = "payment.card_charged";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t amount = 0;
  std::int64_t attempt = 0;
};
struct charge_timed_out {
  static constexpr auto event_name = "payment.charge_timed_out";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t attempt = 0;
};
/// Stored and published: the card on file expired; the customer has 7 days.
struct card_expired {
  static constexpr auto event_name = "payment.card_expired";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
};
struct card_replaced {
  static constexpr auto event_name = "payment.card_replaced";
  static constexpr std::uint32_t schema_version = 1;
};
struct late_card_update {
  static constexpr auto event_name = "payment.late_card_update";
  static constexpr std::uint32_t schema_version = 1;
};
/// Published when the order is paid (credit + card).
struct payment_received {
  static constexpr auto event_name = "payment.received";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
  std::int64_t amount = 0;
};
/// Published when payment failed for good; credit was restored.
struct payment_failed {
  static constexpr auto event_name = "payment.failed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
  std::string reason;
};
struct payment_refunded {
  static constexpr auto event_name = "payment.refunded";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t card = 0;
  std::int64_t credit = 0;
};
BOOST_DESCRIBE_STRUCT(payment_requested, (), (order_id, customer, amount))
BOOST_DESCRIBE_STRUCT(payment_credit_taken, (), (amount))
BOOST_DESCRIBE_STRUCT(card_charged, (), (amount, attempt))
BOOST_DESCRIBE_STRUCT(charge_timed_out, (), (attempt))
BOOST_DESCRIBE_STRUCT(card_expired, (), (order_id, customer))
BOOST_DESCRIBE_STRUCT(card_replaced, (), ())
BOOST_DESCRIBE_STRUCT(late_card_update, (), ())
BOOST_DESCRIBE_STRUCT(payment_received, (), (order_id, customer, amount))
BOOST_DESCRIBE_STRUCT(payment_failed, (), (order_id, customer, reason))
BOOST_DESCRIBE_STRUCT(payment_refunded, (), (card, credit))

struct payment_state {
  std::string status = "new";  ///< new, awaiting_credit, charging, awaiting_card, paid, failed, refunded
  std::string order_id;
  std::string customer;
  std::int64_t amount = 0;
  std::int64_t credit = 0;      ///< credit taken
  std::int64_t card = 0;        ///< charged to the card
  std::int64_t attempts = 0;    ///< gateway attempts so far
  bool card_updated = false;
  std::int64_t refunded = 0;    ///< returned to the customer (card + credit)
  std::int64_t late_updates = 0;
};
BOOST_DESCRIBE_STRUCT(payment_state, (), (status, order_id, customer, amount, credit, card, attempts,
                                          card_updated, refunded, late_updates))

/// Payment of one order (instance id = order id): takes the customer's credit, then
/// charges the rest to the card through the fake gateway. When the card has expired the
/// customer has 7 days, and the deadline rule is: a credit_card.updated that this instance
/// handles before its "card-deadline" timer has fired counts (the card is charged again);
/// one handled after the timer fired, even at the same clock millisecond, is stored as
/// payment.late_card_update and payment.failed stands. Whichever of the two messages the
/// instance handles first decides; the clock reading alone never does.
struct payment {
  static constexpr auto type_name = "payment";
  using state = payment_state;
  using command = std::variant<retrieve_payment, credit_applied, retry_charge, card_deadline,
                               credit_card_updated, refund_payment>;
  using event = std::variant<payment_requested, payment_credit_taken, card_charged,
                             charge_timed_out, card_expired, card_replaced, late_card_update,
                             payment_received, payment_failed, payment_refunded>;

  static longhaul::decision<event> decide(const state& s, const command& c);
  static void apply(state& s, const event& e);
};

// ==================================== inventory ======================================

struct fetch_goods {
  static constexpr auto command_name = "fetch_goods";
  std::string order_id;
  std::vector<item> items;
};
BOOST_DESCRIBE_STRUCT(fetch_goods, (), (order_id, items))
struct goods_fetched {
  static constexpr auto event_name = "goods.fetched";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string pick_id;
};
struct goods_unavailable {
  static constexpr auto event_name = "inventory.goods_unavailable";
  static constexpr std::uint32_t schema_version = 1;
  std::string article;
};
BOOST_DESCRIBE_STRUCT(goods_fetched, (), (order_id, pick_id))
BOOST_DESCRIBE_STRUCT(goods_unavailable, (), (article))
struct inventory_state {
  std::string pick_id;
  std::int64_t requests = 0;
};
BOOST_DESCRIBE_STRUCT(inventory_state, (), (pick_id, requests))

struct inventory {
  static constexpr auto type_name = "inventory";
  using state = inventory_state;
  using command = std::variant<fetch_goods>;
  using event = std::variant<goods_fetched, goods_unavailable>;
  static longhaul::decision<event> decide(const state& s, const command& c);
  static void apply(state& s, const event& e);
};

// ===================================== shipping ======================================

struct ship_goods {
  static constexpr auto command_name = "ship_goods";
  std::string order_id;
  std::string pick_id;
  std::string customer;
};
BOOST_DESCRIBE_STRUCT(ship_goods, (), (order_id, pick_id, customer))
struct goods_shipped {
  static constexpr auto event_name = "goods.shipped";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
  std::string shipment_id;
};
struct shipment_lost {
  static constexpr auto event_name = "shipping.shipment_lost";
  static constexpr std::uint32_t schema_version = 1;
  std::string shipment_id;
};
BOOST_DESCRIBE_STRUCT(goods_shipped, (), (order_id, customer, shipment_id))
BOOST_DESCRIBE_STRUCT(shipment_lost, (), (shipment_id))
struct shipping_state {
  std::string shipment_id;
  std::int64_t requests = 0;
};
BOOST_DESCRIBE_STRUCT(shipping_state, (), (shipment_id, requests))

struct shipping {
  static constexpr auto type_name = "shipping";
  using state = shipping_state;
  using command = std::variant<ship_goods>;
  using event = std::variant<goods_shipped, shipment_lost>;
  static longhaul::decision<event> decide(const state& s, const command& c);
  static void apply(state& s, const event& e);
};

// =================================== notification ====================================

/// Published by the order flow when an order does not complete (payload: flow data).
struct order_canceled {
  static constexpr auto event_name = "order.canceled";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
};
BOOST_DESCRIBE_STRUCT(order_canceled, (), (order_id, customer))

/// Published by the order flow when an order completes (payload: flow data).
struct order_completed {
  static constexpr auto event_name = "order.completed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer;
};
BOOST_DESCRIBE_STRUCT(order_completed, (), (order_id, customer))

struct email_recorded {
  static constexpr auto event_name = "notification.email_recorded";
  static constexpr std::uint32_t schema_version = 1;
  std::string kind;  ///< payment_received, card_expired, order_shipped, order_canceled
  std::string order_id;
};
BOOST_DESCRIBE_STRUCT(email_recorded, (), (kind, order_id))

struct notification_state {
  std::map<std::string, std::int64_t> sent;  ///< e-mails by kind
  std::set<std::string> keys;                ///< kind/order of every e-mail
  std::int64_t duplicates = 0;               ///< same kind for the same order twice
};
BOOST_DESCRIBE_STRUCT(notification_state, (), (sent, keys, duplicates))

/// The cross-cutting listener: one instance per customer.
struct notification {
  static constexpr auto type_name = "notification";
  using state = notification_state;
  using command = std::variant<payment_received, card_expired, goods_shipped, order_canceled,
                               order_completed>;
  using event = std::variant<email_recorded>;
  static longhaul::decision<event> decide(const state& s, const command& c);
  static void apply(state& s, const event& e);
};

}  // namespace retail
