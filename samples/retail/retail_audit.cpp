// The retail audit (see retail_audit.hpp): one pass over the history collects, per order,
// how often each command left its mark and how much money moved; the checks then run
// over those tallies. Pure over the events, so tests can feed it doctored histories.
#include "samples/retail/retail_audit.hpp"

#include <boost/json.hpp>

#include <set>
#include <string_view>

namespace retail {

namespace {

namespace json = boost::json;
namespace lp = longhaul::persistence;

/// Everything the history says about one order.
struct order_tally {
  std::size_t placed = 0;
  std::int64_t total = 0;
  std::size_t started = 0;
  lp::time_ms started_at_ms = 0;  ///< of the first flow.started
  std::vector<order_end> ends;
  std::map<std::string, std::size_t> marks;  ///< "<what>" -> times stored
  std::int64_t card_charged = 0;
  std::int64_t card_refunded = 0;
  std::int64_t credit_taken = 0;
  std::int64_t credit_restored = 0;
};

std::int64_t as_int(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end())
    return 0;
  const auto& v = it->value();
  if (v.is_int64())
    return v.as_int64();
  if (v.is_uint64())
    return static_cast<std::int64_t>(v.as_uint64());
  if (v.is_double())
    return static_cast<std::int64_t>(v.as_double());
  return 0;
}

std::string as_str(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string())
    return {};
  return std::string{it->value().as_string()};
}

/// Splits "type/id"; an id without '/' has an empty type.
std::pair<std::string_view, std::string_view> split(std::string_view pid) {
  auto slash = pid.find('/');
  if (slash == std::string_view::npos)
    return {{}, pid};
  return {pid.substr(0, slash), pid.substr(slash + 1)};
}

std::string cents(std::int64_t v) {
  // append, not operator+ on temporaries: GCC 12 at -O3 reports a false -Wrestrict there.
  auto a = v < 0 ? -v : v;
  auto frac = std::to_string(a % 100);
  std::string out{v < 0 ? "-" : ""};
  out.append(std::to_string(a / 100)).append(".").append(frac.size() < 2 ? "0" : "").append(frac);
  return out;
}

/// Records one event of the history into the tallies.
void tally(std::map<std::string, order_tally>& orders, audit_report& r, const lp::event_record& ev,
           const json::object& p) {
  auto [type, id] = split(ev.persistence_id);
  auto mark = [&](const std::string& order, std::string what) { ++orders[order].marks[std::move(what)]; };
  if (type == "checkout") {
    if (ev.type == "order.placed") {
      auto& o = orders[std::string{id}];
      ++o.placed;
      o.total = as_int(p, "total");
    }
  } else if (type == "order") {
    auto& o = orders[std::string{id}];
    if (ev.type == "flow.started") {
      if (o.started++ == 0)
        o.started_at_ms = ev.written_at_ms;
    } else if (ev.type == "flow.ended") {
      o.ends.push_back({as_str(p, "outcome"), as_str(p, "reason"), 0, ev.written_at_ms});
    } else if (ev.type == "flow.command_sent") {
      mark(std::string{id}, "command " + as_str(p, "step") + " (attempt "
                              + std::to_string(as_int(p, "attempt")) + ")");
    } else if (ev.type == "flow.compensation_sent") {
      mark(std::string{id}, "compensation " + as_str(p, "step"));
    }
  } else if (type == "payment") {
    auto& o = orders[std::string{id}];
    if (ev.type == "payment.requested" || ev.type == "payment.received"
        || ev.type == "payment.failed" || ev.type == "payment.refunded"
        || ev.type == "payment.card_charged")
      mark(std::string{id}, ev.type);
    if (ev.type == "payment.card_charged")
      o.card_charged += as_int(p, "amount");
    else if (ev.type == "payment.refunded")
      o.card_refunded += as_int(p, "card");
    else if (ev.type == "payment.late_card_update")
      ++r.late_card_updates;
  } else if (type == "customer") {
    auto order = as_str(p, "order_id");
    if (ev.type == "customer.credit_used") {
      mark(order, ev.type);
      orders[order].credit_taken += as_int(p, "amount");
    } else if (ev.type == "customer.credit_restored") {
      mark(order, ev.type);
      orders[order].credit_restored += as_int(p, "amount");
    }
  } else if (type == "inventory" || type == "shipping") {
    mark(std::string{id}, std::string{type} + " event");
  } else if (type == "notification" && ev.type == "notification.email_recorded") {
    auto kind = as_str(p, "kind");
    ++r.emails[kind];
    mark(as_str(p, "order_id"), "e-mail " + kind);
  }
}

}  // namespace

audit_report audit_history(const std::vector<lp::event_record>& history,
                           const std::vector<std::string>& expected_orders) {
  audit_report r;
  std::map<std::string, order_tally> orders;
  for (const auto& id : expected_orders)
    orders[id];
  for (const auto& ev : history) {
    json::error_code ec;
    auto v = json::parse(ev.payload_json, ec);
    if (ec || !v.is_object()) {
      r.problems.push_back(ev.persistence_id + " event " + std::to_string(ev.seq) + " '" + ev.type
                           + "': payload is not a JSON object");
      continue;
    }
    tally(orders, r, ev, v.as_object());
  }
  const std::set<std::string> expected(expected_orders.begin(), expected_orders.end());
  for (auto& [id, o] : orders) {
    auto problem = [&, &id = id](const std::string& text) { r.problems.push_back(id + ": " + text); };
    for (const auto& [what, n] : o.marks)
      if (n > 1)
        problem(what + " stored " + std::to_string(n) + " times (handled twice)");
    if (o.marks.count("payment.received") > 0 && o.marks.count("payment.failed") > 0)
      problem("payment both received and failed");
    r.card_charged += o.card_charged;
    r.card_refunded += o.card_refunded;
    r.credit_taken += o.credit_taken;
    r.credit_restored += o.credit_restored;
    auto net = o.card_charged - o.card_refunded + o.credit_taken - o.credit_restored;
    bool is_order = o.placed > 0 || o.started > 0 || !o.ends.empty() || expected.count(id) > 0;
    if (!is_order) {
      if (net != 0)
        problem(cents(net) + " charged for an order that was never placed");
      continue;
    }
    r.orders_placed += o.placed > 0;
    if (o.placed == 0)
      problem("never placed");
    else if (o.placed > 1)
      problem("placed " + std::to_string(o.placed) + " times");
    if (o.started > 1)
      problem("flow started " + std::to_string(o.started) + " times");
    if (o.ends.empty())
      problem("no end state");
    else if (o.ends.size() > 1)
      problem("ended " + std::to_string(o.ends.size()) + " times");
    if (o.ends.empty())
      continue;
    auto end = o.ends.front();
    end.started_at_ms = o.started_at_ms;
    bool completed = end.outcome == "completed";
    ++r.end_states[end.outcome + ": " + end.reason];
    if (completed)
      r.completed_total += o.total;
    if (completed && net != o.total)
      problem("completed with total " + cents(o.total) + " but charged " + cents(net)
              + " net of refunds");
    if (!completed && net != 0)
      problem("ended " + end.outcome + " (" + end.reason + ") but " + cents(net)
              + " stayed charged");
    r.ended.emplace(id, std::move(end));
  }
  if (r.net_charged() != r.completed_total)
    r.problems.push_back("money: charged - refunded = " + cents(r.net_charged())
                         + ", completed orders total " + cents(r.completed_total));
  return r;
}

caf::expected<audit_report> audit_journal(lp::journal& j,
                                          const std::vector<std::string>& expected_orders) {
  std::vector<lp::event_record> history;
  for (std::uint64_t after = 0;;) {
    auto page = j.read_all(after, 5000);
    if (!page)
      return page.error();
    if (page->empty())
      break;
    after = page->back().position;
    for (auto& ev : *page)
      history.push_back(std::move(ev));
  }
  auto r = audit_history(history, expected_orders);
  auto pending = j.outbox_pending(0, 1000000);
  if (!pending)
    return pending.error();
  if (!pending->empty())
    r.problems.push_back(std::to_string(pending->size())
                         + " outbox messages not delivered yet (first: " + pending->front().destination
                         + ")");
  auto dead = j.dead_letters(0, 1000000);
  if (!dead)
    return dead.error();
  for (const auto& d : *dead)
    r.problems.push_back("dead letter to " + d.destination + ": " + d.reason);
  return r;
}

}  // namespace retail
