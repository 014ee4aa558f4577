// Decisions of the retail contexts (see retail_domain.hpp). Pure functions of state and
// command; the "random" outcomes are hashes of (seed, order id, attempt).
#include "samples/retail/retail_domain.hpp"

#include <algorithm>

namespace retail {

namespace {

template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

constexpr auto card_grace = std::chrono::hours{24 * 7};

}  // namespace

// -- customer -------------------------------------------------------------------------

longhaul::decision<customer::event> customer::decide(const state& s, const command& c) {
  using result = longhaul::decision<event>;
  return std::visit(
    overloaded{
      [](const grant_credit& g) -> result {
        if (g.amount <= 0)
          return longhaul::reject("credit must be positive");
        return credit_granted{g.amount};
      },
      [&](const use_credit& u) -> result {
        auto taken = std::max<std::int64_t>(0, std::min(s.credit, u.amount));
        result d{credit_used{u.order_id, taken}};
        d.send("payment", u.order_id, credit_applied{u.order_id, taken});
        return d;
      },
      [&](const restore_credit& r) -> result {
        auto it = s.used.find(r.order_id);
        if (it == s.used.end() || it->second == 0)
          return {};  // nothing taken, or already restored: exactly once
        return credit_restored{r.order_id, it->second};
      },
      [](const update_card& u) -> result {
        result d;
        d.publish(credit_card_updated{u.order_id, u.customer});
        return d;
      },
    },
    c);
}

void customer::apply(state& s, const event& e) {
  std::visit(overloaded{
               [&](const credit_granted& g) { s.credit += g.amount; },
               [&](const credit_used& u) {
                 s.credit -= u.amount;
                 if (u.amount > 0)
                   s.used[u.order_id] = u.amount;
               },
               [&](const credit_restored& r) {
                 s.credit += r.amount;
                 s.used.erase(r.order_id);
               },
               [](const credit_card_updated&) {},
             },
             e);
}

// -- payment ---------------------------------------------------------------------------

namespace {

using payment_decision = longhaul::decision<payment::event>;

/// Fails the payment for good: credit goes back, subscribers learn why.
void fail(payment_decision& d, const std::string& order, const payment_state& s,
          std::string reason) {
  d.emit(payment_failed{order, s.customer, reason});
  d.publish(payment_failed{order, s.customer, std::move(reason)});
  if (s.credit > 0)
    d.send("customer", s.customer, restore_credit{order, s.credit});
  d.finish();  // nothing is left to do or to undo
}

/// The payment is complete: subscribers learn it, and the instance leaves memory (a
/// refund, if the order needs one, activates it again).
void paid(payment_decision& d, const std::string& order, const payment_state& s) {
  d.emit(payment_received{order, s.customer, s.amount});
  d.publish(payment_received{order, s.customer, s.amount});
  d.finish();
}

/// One call of the fake card gateway for `attempt`: charged, expired or timed out.
void charge(payment_decision& d, const std::string& order, const payment_state& s,
            std::int64_t attempt) {
  auto remaining = s.amount - s.credit;
  auto key = order + "#" + std::to_string(attempt);
  const auto& sim = settings();
  if (unit(key, 1) < sim.gateway_timeout_share) {
    d.emit(charge_timed_out{attempt});
    if (attempt >= static_cast<std::int64_t>(sim.max_gateway_attempts)) {
      fail(d, order, s, "card gateway unavailable after " + std::to_string(attempt) + " attempts");
      return;
    }
    // Backoff: 1 s, 2 s, 4 s, ... of runtime clock time.
    d.set_timer_after("gateway-retry", std::chrono::seconds{1ll << (attempt - 1)},
                      retry_charge{attempt + 1});
    return;
  }
  if (!s.card_updated && unit(order, 2) < sim.card_expired_share) {
    d.emit(card_expired{order, s.customer});
    d.publish(card_expired{order, s.customer});
    d.set_timer_after("card-deadline", card_grace, card_deadline{0});
    return;
  }
  d.emit(card_charged{remaining, attempt});
  paid(d, order, s);
}

}  // namespace

longhaul::decision<payment::event> payment::decide(const state& s, const command& c) {
  using result = payment_decision;
  return std::visit(
    overloaded{
      [&](const retrieve_payment& r) -> result {
        if (s.status != "new")
          return {};  // asked twice: the first request stands
        if (r.amount <= 0)
          return longhaul::reject("payment amount must be positive");
        result d{payment_requested{r.order_id, r.customer, r.amount}};
        d.send("customer", r.customer, use_credit{r.order_id, r.amount});
        return d;
      },
      [&](const credit_applied& a) -> result {
        if (s.status != "awaiting_credit")
          return {};
        result d{payment_credit_taken{a.deducted}};
        auto next = s;
        next.credit = a.deducted;
        if (a.deducted >= s.amount) {
          paid(d, a.order_id, s);
        } else {
          charge(d, a.order_id, next, 1);
        }
        return d;
      },
      [&](const retry_charge& r) -> result {
        if (s.status != "charging")
          return {};
        result d;
        charge(d, s.order_id, s, r.attempt);
        return d;
      },
      [&](const credit_card_updated&) -> result {
        // Rule: the customer has 7 days from "card expired"; an update handled before the
        // card-deadline timer fired counts, one handled after it is recorded as late.
        if (s.status != "awaiting_card") {
          if (s.status == "failed")
            return late_card_update{};
          return {};
        }
        result d{card_replaced{}};
        d.cancel_timer("card-deadline");
        auto next = s;
        next.card_updated = true;
        charge(d, s.order_id, next, s.attempts + 1);
        return d;
      },
      [&](const card_deadline&) -> result {
        if (s.status != "awaiting_card")
          return {};
        result d;
        fail(d, s.order_id, s, "card expired and not updated within 7 days");
        return d;
      },
      [&](const refund_payment& r) -> result {
        if (s.status != "paid")
          return {};  // never paid, or already refunded: exactly once
        result d{payment_refunded{s.card, s.credit}};
        if (s.credit > 0)
          d.send("customer", s.customer, restore_credit{r.order_id, s.credit});
        d.finish();
        return d;
      },
    },
    c);
}

void payment::apply(state& s, const event& e) {
  std::visit(overloaded{
               [&](const payment_requested& r) {
                 s.status = "awaiting_credit";
                 s.order_id = r.order_id;
                 s.customer = r.customer;
                 s.amount = r.amount;
               },
               [&](const payment_credit_taken& t) {
                 s.credit = t.amount;
                 s.status = "charging";
               },
               [&](const card_charged& c) {
                 s.card = c.amount;
                 s.attempts = c.attempt;
               },
               [&](const charge_timed_out& t) { s.attempts = t.attempt; },
               [&](const card_expired&) {
                 s.status = "awaiting_card";
                 ++s.attempts;
               },
               [&](const card_replaced&) {
                 s.card_updated = true;
                 s.status = "charging";
               },
               [&](const late_card_update&) { ++s.late_updates; },
               [&](const payment_received&) { s.status = "paid"; },
               [&](const payment_failed&) { s.status = "failed"; },
               [&](const payment_refunded& r) {
                 s.status = "refunded";
                 s.refunded = r.card + r.credit;
               },
             },
             e);
}

// -- inventory, shipping, notification ---------------------------------------------------

longhaul::decision<inventory::event> inventory::decide(const state& s, const command& c) {
  const auto& f = std::get<fetch_goods>(c);
  if (!s.pick_id.empty())
    return {};  // picked already
  for (const auto& i : f.items)
    if (settings().never_picked.count(i.article) > 0)
      return goods_unavailable{i.article};
  goods_fetched ev{f.order_id, "pick-" + f.order_id};
  longhaul::decision<event> d{ev};
  d.publish(ev).finish();  // an order's goods are picked once
  return d;
}

void inventory::apply(state& s, const event& e) {
  ++s.requests;
  if (auto* f = std::get_if<goods_fetched>(&e))
    s.pick_id = f->pick_id;
}

longhaul::decision<shipping::event> shipping::decide(const state& s, const command& c) {
  const auto& g = std::get<ship_goods>(c);
  if (!s.shipment_id.empty())
    return {};  // shipped already
  auto shipment = "ship-" + g.order_id;
  if (unit(g.order_id, 3) < settings().shipment_lost_share)
    return shipment_lost{shipment};
  goods_shipped ev{g.order_id, g.customer, shipment};
  longhaul::decision<event> d{ev};
  d.publish(ev).finish();  // an order ships once
  return d;
}

void shipping::apply(state& s, const event& e) {
  ++s.requests;
  std::visit([&](const auto& ev) { s.shipment_id = ev.shipment_id; }, e);
}

longhaul::decision<notification::event> notification::decide(const state&, const command& c) {
  using result = longhaul::decision<event>;
  return std::visit(
    overloaded{
      [](const payment_received& p) -> result {
        return email_recorded{"payment_received", p.order_id};
      },
      [](const card_expired& x) -> result { return email_recorded{"card_expired", x.order_id}; },
      [](const goods_shipped& g) -> result {
        return email_recorded{"order_shipped", g.order_id};
      },
      [](const order_canceled& o) -> result {
        return email_recorded{"order_canceled", o.order_id};
      },
      [](const order_completed&) -> result { return {}; },  // no e-mail for this one
    },
    c);
}

void notification::apply(state& s, const event& e) {
  const auto& mail = std::get<email_recorded>(e);
  ++s.sent[mail.kind];
  if (!s.keys.insert(mail.kind + "/" + mail.order_id).second)
    ++s.duplicates;
}

}  // namespace retail
