// Child process of flow_crash_test: runs order sagas (shop::order_flow, waits shortened)
// in a SQLite-backed runtime with a real scheduler and an accelerated clock, so that
// timeouts come due within the run, until the parent SIGKILLs it; a final run lets every
// flow end. A reference mode runs the same inputs once, uninterrupted, deterministically.
//
// Usage: flow_crash_child --db PATH --mode crash|final|reference [--orders N] [--upto U]
//                         [--factor F] [--clock-start-ms T] [--goods-timeout-ms G]
//                         [--payment-timeout-ms P] [--passivate-ms MS]
//                         [--drain-timeout-ms MS]
//        flow_crash_child --db PATH --mode boundary --saga S [--kill-at K]
//                         [--clock-start-ms T] [--drain-timeout-ms MS]
// Orders "o<i>" (i < U) are started with data that picks their path from i % 8 (keep in
// sync with flow_crash_test.cpp): 0-3 and 7 complete (7 pays exactly the limit, 1000);
// 4 orders "unobtainium", whose goods wait times out (failed, payment refunded); 5 orders
// "unobtainium" too and is canceled by this driver once it waits for the goods (canceled,
// refunded); 6 pays 5000, over the payment's limit, so its payment wait times out
// (canceled). Waits are G and P clock ms. A "ledger" entity subscribes to order.completed
// and payment.failed, so every published event has a receiver.
// Clock: accelerated by F from clock time T (the parent passes where the previous run's
// clock stopped, so clock time stands still while no child runs). Reference mode: a
// virtual clock from T, CAF's test scheduler, the journal written inline.
// stdout: "ready" after start(), "started" when every order up to U was started, "canceled"
// when every order of path 5 was canceled; final and reference runs then "done" after
// every flow ended and a clean stop. Exit codes: 0 clean end, 2 bad arguments, 3 start
// failed, 4 a command failed, 5 flows still running after the drain timeout.
//
// Boundary mode (issue 5) runs ONE saga S to its end: "completed" (order o0),
// "goods-timeout" (order o4), "canceled" (order o5, canceled by the driver while it waits
// for the goods), and on the "saga" flow (charge, reserve stock with 3 attempts, await a
// shipment that never comes): "compensation-timeout" (s1: the shipment wait times out,
// both steps are compensated, newest first) and "retry-exhausted" (s2: every reservation
// is rejected; after the third the flow ends, compensating the charge only). Real
// scheduler, SQLite (sync normal) and a virtual clock that the driver moves to the next
// due timer only when nothing else can happen (no outbox message pending, no timer due),
// so the run is the same every time. Every stored write is counted; with K > 0 the
// process raises SIGKILL in the K-th write's acknowledgement: after it committed, before
// its writer (a flow or a target entity) learns that, so before the flow's commands are
// delivered or the flow sees the target's answer. Restarted with K = 0 on the same file,
// it continues the clock from the last stored event and drives the saga to its end.
// stdout: "write <n> <persistence id>" per stored write, "ready", "started", then
// "writes <n>" and "done" at a clean end.
#include "persistence/forwarding_journal.hpp"
#include "persistence/sqlite_journal.hpp"
#include "runtime/runtime.hpp"
#include "tests/runtime/flow_entities.hpp"

#include <boost/describe.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include <unistd.h>

namespace ledgers {

/// order.completed: the order flow's data.
struct order_completed {
  static constexpr auto event_name = "order.completed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t total = 0;
  std::string article;
  std::int64_t amount = 0;
  std::string pick_id;
};
struct completion_seen {
  static constexpr auto event_name = "ledger.completion_seen";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string pick_id;
};
struct failure_seen {
  static constexpr auto event_name = "ledger.payment_failure_seen";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string reason;
};
BOOST_DESCRIBE_STRUCT(order_completed, (), (order_id, total, article, amount, pick_id))
BOOST_DESCRIBE_STRUCT(completion_seen, (), (order_id, pick_id))
BOOST_DESCRIBE_STRUCT(failure_seen, (), (order_id, reason))
struct ledger_state {
  std::int64_t seen = 0;
};
BOOST_DESCRIBE_STRUCT(ledger_state, (), (seen))

/// Records each order.completed and payment.failed it receives (instance = order id).
struct ledger {
  static constexpr auto type_name = "ledger";
  using state = ledger_state;
  using command = std::variant<order_completed, shop::payment_failed>;
  using event = std::variant<completion_seen, failure_seen>;
  static longhaul::decision<event> decide(const state&, const command& c) {
    if (auto* done = std::get_if<order_completed>(&c))
      return completion_seen{done->order_id, done->pick_id};
    const auto& failed = std::get<shop::payment_failed>(c);
    return failure_seen{failed.order_id, failed.reason};
  }
  static void apply(state& s, const event&) { ++s.seen; }
};

}  // namespace ledgers

namespace stocks {

struct reserve_stock {
  static constexpr auto command_name = "reserve_stock";
  std::string order_id;
  std::int64_t qty = 0;
};
struct release_stock {
  static constexpr auto command_name = "release_stock";
  std::string order_id;
};
struct stock_reserved {
  static constexpr auto event_name = "stock.reserved";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::int64_t qty = 0;
};
struct stock_released {
  static constexpr auto event_name = "stock.released";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
};
BOOST_DESCRIBE_STRUCT(reserve_stock, (), (order_id, qty))
BOOST_DESCRIBE_STRUCT(release_stock, (), (order_id))
BOOST_DESCRIBE_STRUCT(stock_reserved, (), (order_id, qty))
BOOST_DESCRIBE_STRUCT(stock_released, (), (order_id))
struct stock_state {
  std::int64_t reserved = 0;
  std::int64_t releases = 0;
};
BOOST_DESCRIBE_STRUCT(stock_state, (), (reserved, releases))

/// Stock keyed by order id: reservations over 10 are rejected (so a flow retries them);
/// every release is recorded, so a compensation sent twice or wrongly shows.
struct stock {
  static constexpr auto type_name = "stock";
  using state = stock_state;
  using command = std::variant<reserve_stock, release_stock>;
  using event = std::variant<stock_reserved, stock_released>;
  static longhaul::decision<event> decide(const state&, const command& c) {
    if (auto* r = std::get_if<reserve_stock>(&c)) {
      if (r->qty > 10)
        return longhaul::reject("only 10 in stock");
      return stock_reserved{r->order_id, r->qty};
    }
    return stock_released{std::get<release_stock>(c).order_id};
  }
  static void apply(state& s, const event& e) {
    if (auto* r = std::get_if<stock_reserved>(&e))
      s.reserved += r->qty;
    else
      ++s.releases;
  }
};

}  // namespace stocks

namespace {

namespace json = boost::json;
namespace lp = longhaul::persistence;

struct options {
  std::string db;
  std::string mode;
  std::string saga;          ///< boundary mode: which saga (see the file comment)
  std::uint64_t kill_at = 0; ///< boundary mode: SIGKILL after this stored write (0: never)
  std::uint64_t orders = 200;
  std::uint64_t upto = 200;
  std::uint64_t factor = 3600;
  std::uint64_t clock_start_ms = 0;
  std::uint64_t goods_timeout_ms = 12 * 3600 * 1000;
  std::uint64_t payment_timeout_ms = 16 * 3600 * 1000;
  std::uint64_t passivate_ms = 300;
  std::uint64_t drain_timeout_ms = 120000;
};

[[noreturn]] void die(int code, const std::string& what) {
  std::fprintf(stderr, "flow_crash_child: %s\n", what.c_str());
  std::fflush(stderr);
  ::_exit(code);  // no destructors: other threads may still use the runtime
}

void say(std::string_view line) {
  std::string text{line};
  text += '\n';
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      die(2, "cannot write to stdout");
    done += static_cast<std::size_t>(n);
  }
}

options parse_options(int argc, char** argv) {
  options opts;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc)
      die(2, "missing value after " + std::string{flag});
    std::string_view value = argv[++i];
    if (flag == "--db") {
      opts.db = value;
      continue;
    }
    if (flag == "--mode") {
      opts.mode = value;
      continue;
    }
    if (flag == "--saga") {
      opts.saga = value;
      continue;
    }
    std::uint64_t* number = flag == "--orders"               ? &opts.orders
                            : flag == "--upto"               ? &opts.upto
                            : flag == "--factor"             ? &opts.factor
                            : flag == "--clock-start-ms"     ? &opts.clock_start_ms
                            : flag == "--goods-timeout-ms"   ? &opts.goods_timeout_ms
                            : flag == "--payment-timeout-ms" ? &opts.payment_timeout_ms
                            : flag == "--passivate-ms"       ? &opts.passivate_ms
                            : flag == "--drain-timeout-ms"   ? &opts.drain_timeout_ms
                            : flag == "--kill-at"            ? &opts.kill_at
                                                             : nullptr;
    if (number == nullptr)
      die(2, "unknown option " + std::string{flag});
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), *number);
    if (ec != std::errc{} || end != value.data() + value.size())
      die(2, "option " + std::string{flag} + " needs a number, got '" + std::string{value} + "'");
  }
  if (opts.db.empty())
    die(2, "--db is required");
  if (opts.mode != "crash" && opts.mode != "final" && opts.mode != "reference"
      && opts.mode != "boundary")
    die(2, "--mode must be crash, final, reference or boundary");
  if ((opts.mode == "boundary") != !opts.saga.empty())
    die(2, "--saga is required in boundary mode and allowed only there");
  if (opts.orders == 0 || opts.orders > 100000 || opts.upto > opts.orders)
    die(2, "--orders must be 1..100000 and --upto at most --orders");
  if (opts.factor == 0 || opts.goods_timeout_ms == 0 || opts.payment_timeout_ms == 0)
    die(2, "--factor and the timeouts must be > 0");
  if (opts.mode != "crash")
    opts.upto = opts.orders;
  return opts;
}

// -- the orders ------------------------------------------------------------------------

std::string order_id(std::uint64_t i) { return "o" + std::to_string(i); }

bool canceled_by_driver(std::uint64_t i) { return i % 8 == 5; }

/// Initial data of order i (its path: see the file comment).
json::object order_data(std::uint64_t i) {
  switch (i % 8) {
    case 4:
    case 5: return {{"total", 200 + static_cast<std::int64_t>(i)}, {"article", "unobtainium"}};
    case 6: return {{"total", 5000}, {"article", "book"}};
    case 7: return {{"total", 1000}, {"article", "lamp"}};
    default: return {{"total", 100 + static_cast<std::int64_t>(i)}, {"article", "book"}};
  }
}

/// shop::order_flow with its two waits set to `goods` and `payment` clock ms.
longhaul::flow_definition crash_order_flow(const options& opts) {
  auto def = shop::order_flow().build();
  if (!def)
    die(2, "order flow: " + lp::describe(def.error()));
  for (auto& step : def->steps)
    if (auto* w = std::get_if<longhaul::wait_step>(&step.kind)) {
      if (step.name == "await payment")
        w->timeout = std::chrono::milliseconds{opts.payment_timeout_ms};
      else if (step.name == "await goods")
        w->timeout = std::chrono::milliseconds{opts.goods_timeout_ms};
      else
        die(2, "order flow has an unexpected wait '" + step.name + "'");
    }
  if (auto err = longhaul::validate(*def))
    die(2, "order flow: " + lp::describe(err));
  return std::move(*def);
}

// -- SQLite decorators: written inline (reference mode), killed at a write (boundary) ---

/// Passes every call to a SQLite journal it owns; the decorators below override `write`.
using sqlite_forwarder = lp::forwarding_journal<lp::sqlite_journal>;

/// Completes writes on the calling thread (for the deterministic scheduler).
class inline_sqlite final : public sqlite_forwarder {
public:
  using sqlite_forwarder::sqlite_forwarder;

  void write(lp::atomic_write w, lp::write_callback done) override {
    done(inner().write_and_wait(std::move(w)));
  }
};

/// Counts stored writes, announcing each ("write <n> <persistence id>"), and raises
/// SIGKILL in the acknowledgement of write number `kill_at` (0: never): the write has
/// committed, but its writer never learns it, and nothing it causes happens.
class boundary_journal final : public sqlite_forwarder {
public:
  boundary_journal(std::unique_ptr<lp::sqlite_journal> inner, std::uint64_t kill_at)
    : sqlite_forwarder(std::move(inner)), kill_at_(kill_at) {}

  void write(lp::atomic_write w, lp::write_callback done) override {
    auto pid = w.persistence_id;
    ++submitted_;
    inner().write(std::move(w), [this, pid = std::move(pid), done = std::move(done)](
                                  caf::expected<lp::write_result> result) {
      // Runs on the writer thread after COMMIT returned, before the writer is told.
      if (result) {
        auto n = ++stored_;
        say("write " + std::to_string(n) + " " + pid);
        if (n == kill_at_)
          std::raise(SIGKILL);
      }
      ++settled_;
      done(std::move(result));
    });
  }

  /// Writes stored so far by this process.
  [[nodiscard]] std::uint64_t stored() const noexcept { return stored_; }

  /// Writes handed to the journal so far (stored, failed or still in flight).
  [[nodiscard]] std::uint64_t submitted() const noexcept { return submitted_; }

  /// True while some write has not been acknowledged yet.
  [[nodiscard]] bool writing() const noexcept { return settled_ != submitted_; }

  // The outbox and timer reads wait until open() is called after start() returned. This
  // worked around a start-up race this test found (an instance activated before the
  // supervisor knew the scheduler never reported its timers); the supervisor now holds
  // messages until it knows both, and the wait keeps the runs' write order fixed.
  caf::expected<std::vector<lp::outbox_record>> outbox_pending(std::uint64_t after,
                                                               std::uint64_t max) override {
    wait_until_open();
    return sqlite_forwarder::outbox_pending(after, max);
  }
  caf::expected<std::vector<lp::timer_record>> timers_due(lp::time_ms until,
                                                          std::uint64_t max) override {
    wait_until_open();
    return sqlite_forwarder::timers_due(until, max);
  }
  /// The scheduler reads its window with this one (timers_due only answers next_due).
  caf::expected<std::vector<lp::timer_record>> timers_due_after(const lp::timer_position& after,
                                                                lp::time_ms until,
                                                                std::uint64_t max) override {
    wait_until_open();
    return sqlite_forwarder::timers_due_after(after, until, max);
  }

  /// Lets the outbox and timer reads through (call once start() returned).
  void open() noexcept { open_ = true; }

private:
  void wait_until_open() const {
    while (!open_)
      std::this_thread::sleep_for(std::chrono::milliseconds{1});
  }

  std::uint64_t kill_at_;
  std::atomic<std::uint64_t> stored_{0};
  std::atomic<std::uint64_t> submitted_{0};
  std::atomic<std::uint64_t> settled_{0};
  std::atomic<bool> open_{false};
};

// -- driving the orders ----------------------------------------------------------------

/// Starts orders 0..upto-1; an order a previous run started is refused and skipped.
void start_orders(longhaul::runtime& rt, const options& opts) {
  for (std::uint64_t i = 0; i < opts.upto; ++i) {
    auto err = rt.start_flow("order", order_id(i), order_data(i));
    if (err && longhaul::actors::actor_code(err) != longhaul::actors::actor_errc::rejected)
      die(4, "start " + order_id(i) + ": " + lp::describe(err));
  }
}

bool ended(const std::string& status) {
  return status == "completed" || status == "failed" || status == "canceled";
}

/// One pass over the orders of path 5: cancels those waiting for their goods. Returns
/// true when every one of them (up to `upto`) has ended.
bool cancel_pass(longhaul::runtime& rt, const options& opts) {
  bool all_ended = true;
  for (std::uint64_t i = 0; i < opts.upto; ++i) {
    if (!canceled_by_driver(i))
      continue;
    auto st = rt.flow_status_of("order", order_id(i));
    if (!st)
      die(4, "status " + order_id(i) + ": " + lp::describe(st.error()));
    if (ended(st->status))
      continue;
    all_ended = false;
    if (st->waiting_for != "goods.fetched")
      continue;
    auto err = rt.cancel_flow("order", order_id(i), "customer canceled");
    // Refused only if it ended meanwhile (the next pass sees that).
    if (err && longhaul::actors::actor_code(err) != longhaul::actors::actor_errc::rejected)
      die(4, "cancel " + order_id(i) + ": " + lp::describe(err));
  }
  return all_ended;
}

/// Number of orders that have not ended yet.
std::uint64_t running_orders(longhaul::runtime& rt, const options& opts) {
  std::uint64_t running = 0;
  for (std::uint64_t i = 0; i < opts.orders; ++i) {
    auto st = rt.flow_status_of("order", order_id(i));
    if (!st)
      die(4, "status " + order_id(i) + ": " + lp::describe(st.error()));
    running += ended(st->status) ? 0 : 1;
  }
  return running;
}

/// True when no outbox message is pending and no timer is stored.
bool quiet(longhaul::runtime& rt) {
  auto outbox = rt.journal().outbox_pending(0, 1);
  auto timers = rt.journal().timers_due(std::numeric_limits<lp::time_ms>::max(), 1);
  if (!outbox || !timers)
    die(5, "reading the outbox or the timers failed");
  return outbox->empty() && timers->empty();
}

void register_types(longhaul::runtime& rt, const options& opts) {
  rt.register_entity<shop::payment>()
    .register_entity<shop::warehouse>()
    .register_entity<ledgers::ledger>();
  rt.subscribe<ledgers::order_completed>(
    "ledger", [](const ledgers::order_completed& e) { return e.order_id; });
  rt.subscribe<shop::payment_failed>("ledger",
                                     [](const shop::payment_failed& e) { return e.order_id; });
  if (auto err = rt.register_flow(crash_order_flow(opts)))
    die(3, "register_flow: " + lp::describe(err));
}

/// Reference: the same orders, uninterrupted, on CAF's test scheduler and a virtual clock.
int run_reference(const options& opts) {
  auto clock = std::make_shared<longhaul::actors::virtual_clock>(
    static_cast<lp::time_ms>(opts.clock_start_ms));
  lp::sqlite_journal_config sc;
  sc.path = opts.db;
  sc.sync = lp::sync_mode::off;
  sc.clock = [clock] { return clock->now(); };
  auto opened = lp::sqlite_journal::open(sc);
  if (!opened)
    die(3, "open: " + lp::describe(opened.error()));
  longhaul::runtime_config cfg;
  cfg.deterministic = true;
  cfg.clock = clock;
  cfg.passivate_after = std::chrono::milliseconds{0};
  cfg.log_level = "warn";
  cfg.journal_override = std::make_shared<inline_sqlite>(std::move(*opened));
  longhaul::runtime rt{cfg};
  register_types(rt, opts);
  if (auto err = rt.start())
    die(3, "start failed: " + lp::describe(err));
  say("ready");
  start_orders(rt, opts);
  say("started");
  rt.advance_time(std::chrono::seconds{1});
  if (!cancel_pass(rt, opts))
    rt.advance_time(std::chrono::seconds{1});
  say("canceled");
  rt.advance_time(std::chrono::milliseconds{opts.goods_timeout_ms + opts.payment_timeout_ms});
  if (auto left = running_orders(rt, opts); left != 0)
    die(5, std::to_string(left) + " flows still running in the reference run");
  rt.advance_time(std::chrono::seconds{1});
  if (!quiet(rt))
    die(5, "outbox or timers not empty at the end of the reference run");
  rt.stop();
  say("done");
  return 0;
}

// -- boundary mode: one saga, SIGKILLed after a chosen stored write ------------------------

/// Charges, awaits the payment (1 h), reserves stock (3 attempts, 1 then 2 minutes apart),
/// awaits a shipment (2 h, never sent); "give up" ends failed and compensates.
longhaul::flow_definition boundary_saga_flow() {
  using namespace std::chrono_literals;
  longhaul::flow_builder b{"saga", "order_id"};
  b.send("charge", {"payment", "order_id", "retrieve_payment",
                    json::object{{"order_id", "$order_id"}, {"amount", "$total"}}})
    .compensate_with({"payment", "order_id", "refund_payment",
                      json::object{{"order_id", "$order_id"}}})
    .wait("await payment", "payment.received", "order_id")
    .timeout(1h, "give up")
    .send("reserve", {"stock", "order_id", "reserve_stock",
                      json::object{{"order_id", "$order_id"}, {"qty", "$qty"}}})
    .compensate_with({"stock", "order_id", "release_stock",
                      json::object{{"order_id", "$order_id"}}})
    .retry({3, 1min, 2.0, "give up"})
    .wait("await shipment", "shipment.sent", "order_id")
    .timeout(2h, "give up")
    .end("shipped", longhaul::flow_outcome::completed, "shipped")
    .end("give up", longhaul::flow_outcome::failed, "no shipment in time", true);
  auto def = b.build();
  if (!def)
    die(2, "saga flow: " + lp::describe(def.error()));
  return std::move(*def);
}

/// The one saga a boundary run drives.
struct boundary_saga {
  std::string flow;  ///< "order" or "saga"
  std::string id;
  json::object data;
  bool cancel = false;  ///< the driver cancels it once it waits for the goods
};

boundary_saga boundary_saga_of(const std::string& name) {
  if (name == "completed")
    return {"order", order_id(0), order_data(0), false};
  if (name == "goods-timeout")
    return {"order", order_id(4), order_data(4), false};
  if (name == "canceled")
    return {"order", order_id(5), order_data(5), true};
  if (name == "compensation-timeout")
    return {"saga", "s1", {{"total", 100}, {"qty", 3}}, false};
  if (name == "retry-exhausted")
    return {"saga", "s2", {{"total", 100}, {"qty", 50}}, false};
  die(2, "--saga must be completed, goods-timeout, canceled, compensation-timeout or "
         "retry-exhausted");
}

/// Clock time of the last stored event, or `fallback` for an empty journal.
lp::time_ms last_written_at(lp::journal& j, lp::time_ms fallback) {
  auto all = j.read_all(0, std::numeric_limits<std::uint64_t>::max(), std::nullopt);
  if (!all)
    die(3, "read_all: " + lp::describe(all.error()));
  for (const auto& ev : *all)
    fallback = std::max(fallback, ev.written_at_ms);
  return fallback;
}

int run_boundary(const options& opts) {
  auto saga = boundary_saga_of(opts.saga);
  auto clock = std::make_shared<longhaul::actors::virtual_clock>(
    static_cast<lp::time_ms>(opts.clock_start_ms));
  lp::sqlite_journal_config sc;
  sc.path = opts.db;
  sc.sync = lp::sync_mode::normal;  // a process crash loses no acknowledged write (JOURNAL.md §7)
  sc.clock = [clock] { return clock->now(); };
  auto opened = lp::sqlite_journal::open(sc);
  if (!opened)
    die(3, "open: " + lp::describe(opened.error()));
  // Clock time stands still while no process runs: a restart continues at the last event.
  clock->set(last_written_at(**opened, clock->now()));
  auto journal = std::make_shared<boundary_journal>(std::move(*opened), opts.kill_at);
  longhaul::runtime_config cfg;
  cfg.clock = clock;
  cfg.passivate_after = std::chrono::milliseconds{0};
  cfg.worker_threads = 2;
  cfg.log_level = "error";
  cfg.journal_override = journal;
  longhaul::runtime rt{cfg};
  rt.register_entity<shop::payment>()
    .register_entity<shop::warehouse>()
    .register_entity<stocks::stock>()
    .register_entity<ledgers::ledger>();
  rt.subscribe<ledgers::order_completed>(
    "ledger", [](const ledgers::order_completed& e) { return e.order_id; });
  rt.subscribe<shop::payment_failed>("ledger",
                                     [](const shop::payment_failed& e) { return e.order_id; });
  // Only the saga's own flow: the other would also receive payment.received.
  if (auto err = rt.register_flow(saga.flow == "order" ? crash_order_flow(opts)
                                                        : boundary_saga_flow()))
    die(3, "register_flow: " + lp::describe(err));
  if (auto err = rt.start())
    die(3, "start failed: " + lp::describe(err));
  journal->open();
  say("ready");
  // Refused after a restart: the killed run started it.
  auto err = rt.start_flow(saga.flow, saga.id, saga.data);
  if (err && longhaul::actors::actor_code(err) != longhaul::actors::actor_errc::rejected)
    die(4, "start " + saga.id + ": " + lp::describe(err));
  say("started");
  auto begin = std::chrono::steady_clock::now();
  for (;;) {
    if (std::chrono::steady_clock::now() - begin
        > std::chrono::milliseconds{opts.drain_timeout_ms})
      die(5, "the saga did not end within the drain timeout");
    // Read "idle" before the status: if idle, the status read after it is final for now.
    // The outbox and the timers are read in two transactions, so a write between them
    // (a fired timer replaced by an outbox row) could make both look empty: idle only if
    // no write was in flight before the reads and none was handed over during them.
    auto now = clock->now();
    auto writes_before = journal->submitted();
    bool quiet_before = !journal->writing();
    auto outbox = rt.journal().outbox_pending(0, 1);
    auto due = rt.journal().timers_due(now, 1);
    auto next = rt.journal().timers_due(std::numeric_limits<lp::time_ms>::max(), 1);
    if (!outbox || !due || !next)
      die(5, "reading the outbox or the timers failed");
    bool idle = quiet_before && journal->submitted() == writes_before && outbox->empty()
                && due->empty();
    auto st = rt.flow_status_of(saga.flow, saga.id);
    if (!st)
      die(4, "status " + saga.id + ": " + lp::describe(st.error()));
    if (ended(st->status) && idle && next->empty())
      break;
    // Cancels only when idle too, after the warehouse stored fetch_goods: the same order
    // of writes in every run.
    if (saga.cancel && idle && !ended(st->status) && st->waiting_for == "goods.fetched") {
      auto canceled = rt.cancel_flow(saga.flow, saga.id, "customer canceled");
      if (canceled
          && longhaul::actors::actor_code(canceled) != longhaul::actors::actor_errc::rejected)
        die(4, "cancel " + saga.id + ": " + lp::describe(canceled));
      continue;
    }
    if (idle && !next->empty() && next->front().due_ms > now) {
      // Nothing else can happen: time jumps to the next due timer.
      rt.advance_time(std::chrono::milliseconds{next->front().due_ms - now});
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  }
  say("writes " + std::to_string(journal->stored()));
  rt.stop();
  say("done");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  if (opts.mode == "reference")
    return run_reference(opts);
  if (opts.mode == "boundary")
    return run_boundary(opts);
  longhaul::runtime_config cfg;
  cfg.storage = longhaul::storage_kind::sqlite;
  cfg.database_path = opts.db;
  cfg.sync = lp::sync_mode::full;
  cfg.passivate_after = std::chrono::milliseconds{opts.passivate_ms};
  cfg.log_level = "warn";
  cfg.clock = std::make_shared<longhaul::actors::accelerated_clock>(
    static_cast<double>(opts.factor), static_cast<lp::time_ms>(opts.clock_start_ms));
  longhaul::runtime rt{cfg};
  register_types(rt, opts);
  if (auto err = rt.start())
    die(3, "start failed: " + lp::describe(err));
  say("ready");
  start_orders(rt, opts);
  say("started");
  auto begin = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                                 - begin);
  };
  while (!cancel_pass(rt, opts))
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  say("canceled");
  if (opts.mode == "crash") {
    for (;;)  // until the parent kills the process
      std::this_thread::sleep_for(std::chrono::seconds{1});
  }
  for (;;) {
    if (running_orders(rt, opts) == 0 && quiet(rt))
      break;
    if (elapsed().count() > static_cast<std::int64_t>(opts.drain_timeout_ms))
      die(5, "flows still running or messages pending after "
               + std::to_string(elapsed().count()) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  say("drained " + std::to_string(elapsed().count()));
  rt.stop();
  say("done");
  return 0;
}
