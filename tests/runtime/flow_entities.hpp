// Stub bounded contexts for flow tests: a payment service that answers with
// payment.received (or payment.failed for amounts over its limit) and can refund, and a
// warehouse that publishes goods.fetched unless the article is out of stock. Both record
// what they were asked, so tests can check that each command arrived exactly once.
#pragma once

#include "runtime/entity.hpp"
#include "runtime/flow_definition.hpp"

#include <boost/describe.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <variant>

namespace shop {

using namespace std::chrono_literals;

struct retrieve_payment {
  static constexpr auto command_name = "retrieve_payment";
  std::string order_id;
  std::int64_t amount = 0;
};
struct refund_payment {
  static constexpr auto command_name = "refund_payment";
  std::string order_id;
};
struct payment_received {
  static constexpr auto event_name = "payment.received";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t amount = 0;
};
struct payment_failed {
  static constexpr auto event_name = "payment.failed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string reason;
};
struct payment_refunded {
  static constexpr auto event_name = "payment.refunded";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
};
BOOST_DESCRIBE_STRUCT(retrieve_payment, (), (order_id, amount))
BOOST_DESCRIBE_STRUCT(refund_payment, (), (order_id))
BOOST_DESCRIBE_STRUCT(payment_received, (), (order_id, amount))
BOOST_DESCRIBE_STRUCT(payment_failed, (), (order_id, reason))
BOOST_DESCRIBE_STRUCT(payment_refunded, (), (order_id))

struct payment_state {
  std::int64_t charged = 0;
  std::int64_t refunds = 0;
  std::int64_t requests = 0;
};
BOOST_DESCRIBE_STRUCT(payment_state, (), (charged, refunds, requests))

/// Payments keyed by order id; amounts over 1000 fail; refunds are counted.
struct payment {
  static constexpr auto type_name = "payment";
  using state = payment_state;
  using command = std::variant<retrieve_payment, refund_payment>;
  using event = std::variant<payment_received, payment_failed, payment_refunded>;
  static longhaul::decision<event> decide(const state& s, const command& c) {
    if (auto* r = std::get_if<retrieve_payment>(&c)) {
      if (r->amount < 0)
        return longhaul::reject("negative amount");
      if (r->amount > 1000) {
        longhaul::decision<event> d{payment_failed{r->order_id, "limit exceeded"}};
        d.publish(payment_failed{r->order_id, "limit exceeded"});
        return d;
      }
      longhaul::decision<event> d{payment_received{r->order_id, r->amount}};
      d.publish(payment_received{r->order_id, r->amount});
      return d;
    }
    const auto& refund = std::get<refund_payment>(c);
    if (s.charged == 0)
      return longhaul::reject("nothing to refund");
    return payment_refunded{refund.order_id};
  }
  static void apply(state& s, const event& e) {
    if (auto* r = std::get_if<payment_received>(&e)) {
      s.charged += r->amount;
      ++s.requests;
    } else if (std::holds_alternative<payment_failed>(e)) {
      ++s.requests;
    } else {
      ++s.refunds;
    }
  }
};

struct fetch_goods {
  static constexpr auto command_name = "fetch_goods";
  std::string order_id;
  std::string article;
};
struct goods_fetched {
  static constexpr auto event_name = "goods.fetched";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string pick_id;
};
BOOST_DESCRIBE_STRUCT(fetch_goods, (), (order_id, article))
BOOST_DESCRIBE_STRUCT(goods_fetched, (), (order_id, pick_id))
struct warehouse_state {
  std::int64_t picks = 0;
};
BOOST_DESCRIBE_STRUCT(warehouse_state, (), (picks))

/// Picks goods; article "unobtainium" is never picked (the wait times out).
struct warehouse {
  static constexpr auto type_name = "warehouse";
  using state = warehouse_state;
  using command = std::variant<fetch_goods>;
  using event = std::variant<goods_fetched>;
  static longhaul::decision<event> decide(const state& s, const command& c) {
    const auto& f = std::get<fetch_goods>(c);
    goods_fetched ev{f.order_id, "pick-" + std::to_string(s.picks + 1)};
    longhaul::decision<event> d{ev};
    if (f.article != "unobtainium")
      d.publish(ev);
    return d;
  }
  static void apply(state& s, const event&) { ++s.picks; }
};

/// The order saga used by flow tests: pay (refund on compensation), fetch goods within
/// 12 hours or compensate, then complete and publish order.completed.
inline longhaul::flow_builder order_flow() {
  using longhaul::flow_outcome;
  longhaul::flow_builder b{"order", "order_id"};
  b.started_by("order.placed")
    .send("retrieve payment",
          {"payment", "order_id", "retrieve_payment",
           boost::json::object{{"order_id", "$order_id"}, {"amount", "$total"}}})
    .compensate_with({"payment", "order_id", "refund_payment",
                      boost::json::object{{"order_id", "$order_id"}}})
    .wait("await payment", "payment.received", "order_id")
    .timeout(20 * 24h, "payment timed out")
    .send("fetch goods", {"warehouse", "order_id", "fetch_goods",
                          boost::json::object{{"order_id", "$order_id"}, {"article", "$article"}}})
    .wait("await goods", "goods.fetched", "order_id")
    .timeout(12h, "goods not fetched")
    .merge("pick_id", "pick_id")
    .end("completed", flow_outcome::completed, "shipped")
    .publish("order.completed")
    .end("payment timed out", flow_outcome::canceled, "payment not received in time")
    .end("goods not fetched", flow_outcome::failed, "goods not fetched in time", true);
  return b;
}

}  // namespace shop
