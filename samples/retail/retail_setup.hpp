// Wires the retail sample into a runtime: every context, the subscriptions that carry
// domain events between them, and the order flow. Used by the `retail` program, the
// retail tests and bench/retail_bench, so all three run the same system.
#pragma once

#include "runtime/runtime.hpp"
#include "samples/retail/retail_domain.hpp"
#include "samples/retail/retail_order_flow.hpp"

namespace retail {

/// Registers checkout, customer, payment, inventory, shipping and notification, the
/// subscriptions (card updates to payment; payment, card, shipping and order outcomes to
/// the customer's notification instance) and `flow` (the order flow, or its JSON twin).
/// Call before rt.start(); returns the flow's registration error, if any.
[[nodiscard]] inline caf::error register_retail(longhaul::runtime& rt,
                                                const longhaul::flow_definition& flow) {
  rt.register_entity<checkout>()
    .register_entity<customer>()
    .register_entity<payment>()
    .register_entity<inventory>()
    .register_entity<shipping>()
    .register_entity<notification>();
  rt.subscribe<credit_card_updated>("payment", [](const auto& e) { return e.order_id; });
  rt.subscribe<payment_received>("notification", [](const auto& e) { return e.customer; });
  rt.subscribe<card_expired>("notification", [](const auto& e) { return e.customer; });
  rt.subscribe<goods_shipped>("notification", [](const auto& e) { return e.customer; });
  rt.subscribe<order_canceled>("notification", [](const auto& e) { return e.customer; });
  rt.subscribe<order_completed>("notification", [](const auto& e) { return e.customer; });
  return rt.register_flow(flow);
}

/// register_retail with the order flow written with the builder.
[[nodiscard]] inline caf::error register_retail(longhaul::runtime& rt) {
  auto flow = order_flow();
  if (!flow)
    return flow.error();
  return register_retail(rt, *flow);
}

}  // namespace retail
