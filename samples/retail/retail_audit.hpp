// The retail audit: reads the whole history of a retail journal and checks what the
// sample promises end to end: every order reaches exactly one end state, no command was
// handled and no e-mail recorded twice, and the money balances. Used by `retail demo`
// (after its run) and by the retail tests (after crashes, and on doctored histories).
#pragma once

#include "persistence/journal.hpp"

#include <caf/expected.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace retail {

/// How one order's flow ran, from its flow.started and (first) flow.ended events.
struct order_end {
  std::string outcome;  ///< completed, failed, canceled
  std::string reason;   ///< the end step's reason ("order completed", ...)
  longhaul::persistence::time_ms started_at_ms = 0;
  longhaul::persistence::time_ms ended_at_ms = 0;
};

/// What the audit found. Amounts are cents.
struct audit_report {
  std::size_t orders_placed = 0;             ///< orders with an order.placed event
  std::map<std::string, order_end> ended;    ///< by order id (orders that ended)
  std::map<std::string, std::size_t> end_states;  ///< "outcome: reason" -> orders
  std::int64_t card_charged = 0;      ///< payment.card_charged, all orders
  std::int64_t card_refunded = 0;     ///< card part of payment.refunded
  std::int64_t credit_taken = 0;      ///< customer.credit_used
  std::int64_t credit_restored = 0;   ///< customer.credit_restored
  std::int64_t completed_total = 0;   ///< totals of the completed orders
  std::map<std::string, std::int64_t> emails;  ///< e-mails recorded, by kind
  std::int64_t late_card_updates = 0;
  /// Every broken promise, one line each, naming the order ("order-00007: ..."); empty
  /// when everything holds.
  std::vector<std::string> problems;

  /// charged - refunded, card and credit together.
  [[nodiscard]] std::int64_t net_charged() const noexcept {
    return card_charged - card_refunded + credit_taken - credit_restored;
  }
  /// True when no problem was found.
  [[nodiscard]] bool ok() const noexcept { return problems.empty(); }
};

/// Audits a complete retail history: every event of the journal, in position order (as
/// read_all returns them; no events deleted). Checks, per order:
///   - it was placed once, its flow started at most once and ended exactly once;
///   - every order in `expected_orders` was placed (and ended);
///   - no command was handled twice: at most one flow.command_sent per (step, attempt),
///     one flow.compensation_sent per step, one of each payment.requested, card_charged,
///     payment.received, payment.failed, payment.refunded, one credit_used and one
///     credit_restored per order, one inventory and one shipping event;
///   - no e-mail of one kind was recorded twice for it;
///   - money: a completed order was charged exactly its total (card + credit, net of
///     refunds), any other order nothing; and overall charged - refunded equals the totals
///     of the completed orders.
/// Never throws: an undecodable payload is reported as a problem.
[[nodiscard]] audit_report audit_history(const std::vector<longhaul::persistence::event_record>& history,
                                         const std::vector<std::string>& expected_orders = {});

/// Reads every event of `j` and audits it (audit_history); also reports outbox messages
/// not delivered yet and dead letters as problems, so call it on a quiet journal (after
/// the runtime stopped, or once the outbox has drained). Fails only when reading fails.
[[nodiscard]] caf::expected<audit_report> audit_journal(longhaul::persistence::journal& j,
                                                        const std::vector<std::string>& expected_orders = {});

}  // namespace retail
