// The order flow of the retail sample, written with the flow builder. Its JSON twin is
// samples/retail/order_flow.json; both describe the same definition.
// order.placed -> retrieve payment -> (payment.received | payment.failed, 20 days)
// -> fetch goods -> (goods.fetched, 12 hours; else refund) -> ship goods
// -> (goods.shipped, 24 hours; else refund) -> completed (publishes order.completed).
#pragma once

#include "runtime/flow_definition.hpp"

#include <boost/json.hpp>

#include <chrono>

namespace retail {

/// The order flow definition (validated).
inline caf::expected<longhaul::flow_definition> order_flow() {
  using namespace std::chrono_literals;
  using longhaul::flow_outcome;
  using obj = boost::json::object;
  longhaul::flow_builder b{"order", "order_id"};
  b.started_by("order.placed")
    .send("retrieve payment",
          {"payment", "order_id", "retrieve_payment",
           obj{{"order_id", "$order_id"}, {"customer", "$customer"}, {"amount", "$total"}}})
    .compensate_with({"payment", "order_id", "refund_payment", obj{{"order_id", "$order_id"}}})
    .wait("await payment", "payment.received", "order_id")
    .or_event("payment.failed", "payment failed")
    .timeout(24h * 20, "payment timed out")
    .send("fetch goods", {"inventory", "order_id", "fetch_goods",
                          obj{{"order_id", "$order_id"}, {"items", "$items"}}})
    .wait("await goods", "goods.fetched", "order_id")
    .timeout(12h, "goods not fetched")
    .merge("pick_id", "pick_id")
    .send("ship goods", {"shipping", "order_id", "ship_goods",
                         obj{{"order_id", "$order_id"}, {"pick_id", "$pick_id"},
                             {"customer", "$customer"}}})
    .wait("await shipment", "goods.shipped", "order_id")
    .timeout(24h, "goods not shipped")
    .merge("shipment_id", "shipment_id")
    .end("completed", flow_outcome::completed, "order completed")
    .publish("order.completed")
    .end("payment failed", flow_outcome::canceled, "$reason")
    .publish("order.canceled")
    .end("payment timed out", flow_outcome::canceled, "payment not received within 20 days")
    .publish("order.canceled")
    .end("goods not fetched", flow_outcome::failed, "goods not fetched in time", true)
    .publish("order.canceled")
    .end("goods not shipped", flow_outcome::failed, "goods not shipped in time", true)
    .publish("order.canceled");
  return b.build();
}

}  // namespace retail
