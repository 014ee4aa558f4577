// The retail benchmark (issue 6): completed orders per second, end to end and durable,
// of the retail sample on longhaul (samples/retail as it is, every order on the happy
// path, many orders in flight) against the naive hand-written version of the same happy
// path (retail_naive.hpp), in one run on the same file system and sync mode.
// Run by `scripts/bench.sh retail`.
//
// Naive baseline: one request thread by default (--naive-threads N for more, each with its
// own connection). Every state change commits with its own fsync while it holds SQLite's
// single write lock, so more request threads cannot share fsyncs; they queue on the lock
// and back off in SQLite's busy handler. Measured here: with 1.3 ms commits 4 threads made
// 39-48 orders/s against 61-64 for one; with 0.4 ms commits 4 threads were 0-30% faster.
// One thread is what a request handler does per order, and the baseline's best case
// wherever the fsync dominates. Longhaul: the retail sample as it is, every order on the
// happy path (retail::simulation with no failures), --in-flight orders placed and not yet
// completed at a time, on the real clock (nothing on the happy path waits for a timer).
// --sync-delay-ms simulates a slower disk on both sides (a VFS shim that sleeps after
// each fsync) to show how the ratio follows the cost of a commit.
#include "bench/bench_report.hpp"
#include "bench/retail_naive.hpp"
#include "persistence/persistence_error.hpp"
#include "persistence/forwarding_journal.hpp"
#include "persistence/sqlite_journal.hpp"
#include "runtime/runtime.hpp"
#include "samples/retail/retail_domain.hpp"
#include "samples/retail/retail_audit.hpp"
#include "samples/retail/retail_setup.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using namespace longhaul;
using persistence::sync_mode;
namespace lb = longhaul::bench;
namespace naive = longhaul::bench::retail_naive;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

// --- options -------------------------------------------------------------------------

constexpr const char* usage_text =
  "usage: retail_bench [--runs N] [--quick] [--orders N] [--customers N] [--in-flight N]\n"
  "                    [--naive-threads N] [--sync full|normal|off] [--dir PATH]\n"
  "  --runs N           runs of each side, interleaved; medians reported (default 3;\n"
  "                     1 with --quick)\n"
  "  --quick            50 orders, for smoke tests\n"
  "  --orders N         orders per run, the same on both sides (default 1000)\n"
  "  --customers N      customers the orders are spread over (default 500; 20 quick)\n"
  "  --in-flight N      longhaul: orders placed and not yet completed at most (default 500)\n"
  "  --naive-threads N  naive: request threads, each with its own connection (default 1)\n"
  "  --sync MODE        synchronous mode of both sides (default full)\n"
  "  --dir PATH         parent of the scratch directory (default: the system temp dir)\n"
  "  --timeout S        longest a longhaul run may take before the bench fails (default 600)\n"
  "  --only SIDE        run only longhaul or only naive (profiling); the other side's\n"
  "                     figures are null in the JSON line\n"
  "  --sync-delay-ms D  simulate a slower disk: both sides sleep D ms after every fsync,\n"
  "                     through a SQLite VFS shim (default 0: the disk as it is)\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  std::size_t runs = 3;
  bool quick = false;
  std::size_t orders = 1000;
  std::size_t customers = 500;
  std::size_t in_flight = 500;
  std::size_t naive_threads = 1;
  sync_mode sync = sync_mode::full;
  std::string sync_name = "full";
  std::string dir;
  double timeout_s = 600;
  std::size_t probe_commits = 200;  // fsync'ed commits timed per run
  bool longhaul = true;
  bool naive = true;
  double sync_delay_ms = 0;
  std::string vfs;  // the slow-sync VFS when sync_delay_ms > 0
};

options parse_options(int argc, char** argv) {
  options o;
  bool runs_given = false, orders_given = false, customers_given = false, window_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc)
        throw usage_error{std::string{arg} + " needs a value"};
      return argv[++i];
    };
    auto count = [&](std::size_t max) {
      auto text = value();
      auto n = lb::parse_count(text);
      if (!n || *n == 0 || *n > max)
        throw usage_error{std::string{arg} + " must be a whole number in 1.."
                          + std::to_string(max) + ", not '" + std::string{text} + "'"};
      return static_cast<std::size_t>(*n);
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage_text;
      std::exit(0);
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--runs") {
      o.runs = count(1000);
      runs_given = true;
    } else if (arg == "--orders") {
      o.orders = count(999'999);
      orders_given = true;
    } else if (arg == "--customers") {
      o.customers = count(1'000'000);
      customers_given = true;
    } else if (arg == "--in-flight") {
      o.in_flight = count(1'000'000);
      window_given = true;
    } else if (arg == "--naive-threads") {
      o.naive_threads = count(256);
    } else if (arg == "--sync") {
      auto text = value();
      auto mode = persistence::parse_sync_mode(text);
      if (!mode)
        throw usage_error{"--sync must be full, normal or off, not '" + std::string{text} + "'"};
      o.sync = *mode;
      o.sync_name = text;
    } else if (arg == "--dir") {
      o.dir = value();
      if (o.dir.empty())
        throw usage_error{"--dir must not be empty"};
    } else if (arg == "--timeout") {
      auto text = value();
      auto s = lb::parse_positive(text);
      if (!s)
        throw usage_error{"--timeout must be a positive number, not '" + std::string{text} + "'"};
      o.timeout_s = *s;
    } else if (arg == "--sync-delay-ms") {
      auto text = value();
      auto d = lb::parse_positive(text);
      if (!d || *d > 1000)
        throw usage_error{"--sync-delay-ms must be a positive number up to 1000, not '"
                          + std::string{text} + "'"};
      o.sync_delay_ms = *d;
    } else if (arg == "--only") {
      auto text = value();
      if (text != "longhaul" && text != "naive")
        throw usage_error{"--only takes longhaul or naive, not '" + std::string{text} + "'"};
      o.longhaul = text == "longhaul";
      o.naive = text == "naive";
    } else {
      throw usage_error{"unknown argument '" + std::string{arg} + "'"};
    }
  }
  if (o.quick) {
    if (!runs_given)
      o.runs = 1;
    if (!orders_given)
      o.orders = 50;
    if (!customers_given)
      o.customers = 20;
    if (!window_given)
      o.in_flight = 50;
    o.probe_commits = 30;
  }
  return o;
}

// --- workload --------------------------------------------------------------------------

std::string order_id(std::size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "order-%06zu", i);
  return buf;
}

std::string customer_id(std::size_t i) { return "customer-" + std::to_string(i); }

/// The orders of a run, as retail_main.cpp's demo makes them: 1 to 3 items of 5 to 50.
std::vector<retail::place_order> make_orders(const options& o) {
  std::vector<retail::place_order> orders;
  for (std::size_t i = 0; i < o.orders; ++i) {
    std::mt19937_64 rng{42 * 7919 + i};
    retail::place_order cmd;
    cmd.order_id = order_id(i);
    cmd.customer = customer_id(static_cast<std::size_t>(rng() % o.customers));
    auto n = 1 + rng() % 3;
    for (std::uint64_t k = 0; k < n; ++k) {
      retail::item it{"article-" + std::to_string(1 + rng() % 40),
                      static_cast<std::int64_t>(500 + rng() % 4500)};
      cmd.total += it.amount;
      cmd.items.push_back(std::move(it));
    }
    orders.push_back(std::move(cmd));
  }
  return orders;
}

/// Starting credit as in the demo: none, some or plenty; credit runs out after a few
/// orders, so most payments take credit and then charge the card.
std::vector<naive::customer_credit> make_customers(const options& o) {
  std::vector<naive::customer_credit> out;
  for (std::size_t c = 0; c < o.customers; ++c)
    out.push_back({customer_id(c), static_cast<std::int64_t>(c % 5) * 1500});
  return out;
}

/// Every order takes the happy path: no gateway timeouts, no expired cards, every article
/// picked, no shipment lost. Read by both sides' decisions.
void happy_path_only() {
  auto& sim = retail::settings();
  sim.seed = 42;
  sim.card_expired_share = 0;
  sim.gateway_timeout_share = 0;
  sim.shipment_lost_share = 0;
  sim.never_picked.clear();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return std::nan("");
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(idx, v.size() - 1)];
}

std::string fixed(double value, int decimals) {
  if (!std::isfinite(value))
    return "";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

std::string load_average() {
  std::ifstream in{"/proc/loadavg"};
  double a = 0, b = 0, c = 0;
  if (!(in >> a >> b >> c))
    return "n/a";
  return fixed(a, 2) + " " + fixed(b, 2) + " " + fixed(c, 2);
}


// --- the observed journal ----------------------------------------------------------------

std::int64_t since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - t0).count();
}

/// Call counts and time spent per journal operation (timing counters for the profile).
struct op_counter {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> ns{0};
  std::atomic<std::uint64_t> items{0};  ///< rows returned or handled, events written

  void add(std::int64_t t_ns, std::uint64_t n = 0) {
    calls.fetch_add(1, std::memory_order_relaxed);
    ns.fetch_add(static_cast<std::uint64_t>(t_ns), std::memory_order_relaxed);
    items.fetch_add(n, std::memory_order_relaxed);
  }
  void reset() {
    calls = 0;
    ns = 0;
    items = 0;
  }
};

/// Passes every call to the SQLite journal, and notes when each order's flow ended
/// (the write holding "flow.ended" of "order/<id>" was committed: the order completed
/// durably) plus call counts and times. The runtime uses it as its journal_override.
class observed_journal final : public persistence::forwarding_journal<persistence::sqlite_journal> {
public:
  using forwarding_journal::forwarding_journal;

  /// Clears the counters and starts noting the completions of `orders` orders.
  void start_measuring(std::size_t orders, steady::time_point t0) {
    std::lock_guard guard{mtx_};
    t0_ = t0;
    completed_ns_.assign(orders, -1);
    completed_ = 0;
    measuring_ = true;
    for (auto* c : {&writes_, &outbox_pending_, &outbox_delivered_, &recovery_reads_,
                    &snapshots_})
      c->reset();
  }

  /// Blocks until at least `n` orders completed or `deadline` passed; returns the count.
  std::size_t wait_completed(std::size_t n, steady::time_point deadline) {
    std::unique_lock guard{mtx_};
    cv_.wait_until(guard, deadline, [&] { return completed_ >= n || !error_.empty(); });
    if (!error_.empty())
      throw std::runtime_error{error_};
    return completed_;
  }

  /// Nanoseconds from t0 to the commit of order i's end (-1: not completed).
  std::int64_t completed_ns(std::size_t i) {
    std::lock_guard guard{mtx_};
    return completed_ns_[i];
  }

  std::uint64_t writes_ok() const { return writes_ok_.load(); }
  const op_counter& writes() const { return writes_; }
  const op_counter& outbox_pending_calls() const { return outbox_pending_; }
  const op_counter& outbox_delivered_calls() const { return outbox_delivered_; }
  const op_counter& recovery_reads() const { return recovery_reads_; }
  const op_counter& snapshots() const { return snapshots_; }

  /// What a write is, noted before it goes to the journal.
  struct observation {
    steady::time_point t0;  ///< set when the write is wrapped
    std::size_t events = 0;
    std::size_t order = no_order;  ///< the order whose flow this write ends, if any
    bool completed = false;        ///< ...with outcome "completed"
    std::string id;                ///< its persistence id, if it ends an order
  };

  static observation observe(const persistence::atomic_write& w) {
    observation o;
    if (w.persistence_id.rfind("order/order-", 0) == 0)
      for (const auto& e : w.events)
        if (e.type == "flow.ended") {
          std::size_t i = 0;
          auto text = std::string_view{w.persistence_id}.substr(12);
          auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
          if (ec == std::errc{} && end == text.data() + text.size())
            o.order = i;
          o.completed = e.payload_json.find("\"outcome\":\"completed\"") != std::string::npos;
        }
    o.events = w.events.size();
    if (o.order != no_order)
      o.id = w.persistence_id;
    return o;
  }

  void settle(const observation& o, const caf::expected<persistence::write_result>& r) {
    if (r) {
      writes_ok_.fetch_add(1, std::memory_order_relaxed);
      writes_.add(since(o.t0), o.events);
      if (o.order != no_order)
        note_end(o.order, o.completed, o.id);
    } else if (!persistence::is_rejection(r.error())) {  // rejections: statistics()
      fail("a journal write failed: " + persistence::describe(r.error()));
    }
  }

  void write(persistence::atomic_write w, persistence::write_callback done) override {
    auto o = observe(w);
    o.t0 = steady::now();
    inner().write(std::move(w), [this, done = std::move(done), o = std::move(o)](
                                  caf::expected<persistence::write_result> r) {
      settle(o, r);
      done(std::move(r));
    });
  }

  /// The runtime submits tickets (their writes go back to it to be freed): observe them
  /// through a wrapper, moving the write into it and back, so both paths are measured.
  struct observed_ticket final : persistence::write_ticket,
                                 std::enable_shared_from_this<observed_ticket> {
    observed_journal* journal = nullptr;
    observation o;
    std::shared_ptr<persistence::write_ticket> inner;
    void done(caf::expected<persistence::write_result> r) override {
      auto in = std::move(inner);
      in->w = std::move(w);
      journal->settle(o, r);
      in->rider = shared_from_this();  // freed with the runtime's ticket, on its side
      in->done(std::move(r));
    }
  };

  /// Wraps only the writes it must see: before measuring (the setup waits for them), those
  /// that end an order (their commit is the order's completion), and one write in
  /// `ack_sample` (the average acknowledgement time). The others go straight to the journal,
  /// whose statistics() count them: a wrapper is an allocation, two clock reads and a few
  /// atomics per write, and wrapping every write cost about 4% of the run's CPU samples,
  /// which the bench would have charged to longhaul.
  void submit(std::shared_ptr<persistence::write_ticket> t) override {
    auto o = observe(t->w);
    auto n = submitted_.fetch_add(1, std::memory_order_relaxed);
    if (measuring_.load(std::memory_order_relaxed) && o.order == no_order
        && n % ack_sample != 0) {
      inner().submit(std::move(t));
      return;
    }
    auto wrapper = std::make_shared<observed_ticket>();
    wrapper->journal = this;
    o.t0 = steady::now();
    wrapper->o = std::move(o);
    wrapper->w = std::move(t->w);
    wrapper->inner = std::move(t);
    inner().submit(std::move(wrapper));
  }

  /// One write in this many is timed from submit to acknowledgement while measuring.
  static constexpr std::uint64_t ack_sample = 16;

  caf::expected<persistence::replay_result> replay(std::string_view id,
                                                   persistence::sequence_nr from,
                                                   persistence::sequence_nr to,
                                                   std::uint64_t max) override {
    auto t0 = steady::now();
    auto r = inner().replay(id, from, to, max);
    recovery_reads_.add(since(t0), r ? r->events.size() : 0);
    return r;
  }
  caf::expected<persistence::sequence_nr> highest_seq(std::string_view id) override {
    auto t0 = steady::now();
    auto r = inner().highest_seq(id);
    recovery_reads_.add(since(t0));
    return r;
  }
  caf::error save_snapshot(persistence::snapshot_record snap) override {
    auto t0 = steady::now();
    auto r = inner().save_snapshot(std::move(snap));
    snapshots_.add(since(t0));
    return r;
  }
  caf::expected<std::optional<persistence::snapshot_record>>
  load_snapshot(std::string_view id, const persistence::snapshot_selection& sel) override {
    auto t0 = steady::now();
    auto r = inner().load_snapshot(id, sel);
    recovery_reads_.add(since(t0));
    return r;
  }
  caf::expected<persistence::recovery_start> load_recovery_start(std::string_view id,
                                                                 std::uint64_t max) override {
    auto t0 = steady::now();
    auto r = inner().load_recovery_start(id, max);
    recovery_reads_.add(since(t0), r ? r->events.events.size() : 0);
    return r;
  }
  caf::expected<std::vector<persistence::timer_record>> timers_of(std::string_view id) override {
    auto t0 = steady::now();
    auto r = inner().timers_of(id);
    recovery_reads_.add(since(t0));
    return r;
  }
  caf::expected<std::vector<persistence::outbox_record>> outbox_pending(std::uint64_t after,
                                                                        std::uint64_t max) override {
    auto t0 = steady::now();
    auto r = inner().outbox_pending(after, max);
    outbox_pending_.add(since(t0), r ? r->size() : 0);
    return r;
  }
  caf::error outbox_delivered(std::vector<std::uint64_t> seqs) override {
    auto t0 = steady::now();
    auto n = seqs.size();
    auto r = inner().outbox_delivered(std::move(seqs));
    outbox_delivered_.add(since(t0), n);
    return r;
  }
  void outbox_delivered_async(std::vector<std::uint64_t> seqs,
                              std::function<void(caf::error)> done) override {
    auto t0 = steady::now();
    auto n = seqs.size();
    inner().outbox_delivered_async(std::move(seqs),
                                   [this, t0, n, done = std::move(done)](caf::error err) {
                                     outbox_delivered_.add(since(t0), n);
                                     done(std::move(err));
                                   });
  }
  caf::error record_dead_letter(persistence::dead_letter_record rec) override {
    fail("dead letter " + rec.message_id + " to " + rec.destination + ": " + rec.reason);
    return inner().record_dead_letter(std::move(rec));
  }
  caf::expected<bool> is_processed(std::string_view id, std::string_view message_id) override {
    auto t0 = steady::now();
    auto r = inner().is_processed(id, message_id);
    recovery_reads_.add(since(t0));
    return r;
  }
  caf::expected<std::optional<persistence::processed_message>>
  processed_outcome(std::string_view id, std::string_view message_id) override {
    auto t0 = steady::now();
    auto r = inner().processed_outcome(id, message_id);
    recovery_reads_.add(since(t0));
    return r;
  }

private:
  static constexpr std::size_t no_order = static_cast<std::size_t>(-1);

  void note_end(std::size_t order, bool completed, const std::string& id) {
    std::lock_guard guard{mtx_};
    if (!completed) {
      if (error_.empty())
        error_ = id + " did not complete: not the happy path";
    } else if (order < completed_ns_.size() && completed_ns_[order] < 0) {
      completed_ns_[order] = since(t0_);
      ++completed_;
    }
    cv_.notify_all();
  }

  void fail(std::string what) {
    std::lock_guard guard{mtx_};
    if (error_.empty())
      error_ = std::move(what);
    cv_.notify_all();
  }

  std::mutex mtx_;
  std::condition_variable cv_;
  steady::time_point t0_;
  std::vector<std::int64_t> completed_ns_;  // guarded by mtx_
  std::size_t completed_ = 0;               // guarded by mtx_
  std::string error_;                       // guarded by mtx_
  std::atomic<std::uint64_t> writes_ok_{0};  ///< of the wrapped writes
  std::atomic<std::uint64_t> submitted_{0};
  std::atomic<bool> measuring_{false};
  op_counter writes_, outbox_pending_, outbox_delivered_, recovery_reads_, snapshots_;
};

// --- longhaul ------------------------------------------------------------------------

/// What one longhaul run measured, plus its profile counters.
struct longhaul_result {
  double seconds = 0;
  std::vector<double> latencies_ms;
  double events = 0;        ///< journal events of the measured orders (until all settled)
  double transactions = 0;  ///< journal transactions during the measured window
  double writes = 0;        ///< atomic writes during the measured window
  double cpu_s = 0;
  double write_ack_ms = 0;  ///< mean write -> acknowledgement (queue + commit + fsync)
  double outbox_polls = 0, outbox_poll_ms = 0, outbox_rows = 0, outbox_polls_in_memory = 0;
  double outbox_removals = 0, outbox_removal_ms = 0;
  double recovery_reads = 0, recovery_read_ms = 0;
  double snapshots = 0;
  double rejected = 0;      ///< writes the journal rejected (redeliveries), whole run
  double writer_busy_s = 0, commit_s = 0, checkpoints = 0, checkpoint_s = 0;  ///< measured window
  std::string threads;
};

longhaul_result run_longhaul(const fs::path& dir, const options& o,
                             const std::vector<retail::place_order>& orders,
                             const std::vector<naive::customer_credit>& customers) {
  // The journal as runtime::start() would open it from a default runtime_config.
  runtime_config cfg;
  persistence::sqlite_journal_config jc;
  jc.path = (dir / "retail.db").string();
  jc.sync = o.sync;
  jc.cache_mb = cfg.cache_mb;
  jc.writer_cache_mb = cfg.writer_cache_mb;
  jc.limits.max_id_bytes = std::max<std::size_t>(cfg.max_id_bytes + 64, 512);
  jc.vfs = o.vfs;
  auto opened = persistence::sqlite_journal::open(jc);
  if (!opened)
    throw std::runtime_error{"cannot open journal: " + persistence::describe(opened.error())};
  std::shared_ptr<persistence::sqlite_journal> inner{std::move(*opened)};
  auto observed = std::make_shared<observed_journal>(inner);

  cfg.journal_override = observed;
  cfg.log_level = "error";
  cfg.ask_timeout = std::chrono::minutes{5};
  cfg.stop_timeout = std::chrono::seconds{60};  // bounds the drain when a run failed
  longhaul_result res;
  {
    runtime rt{cfg};
    if (auto err = retail::register_retail(rt))
      throw std::runtime_error{"registering the retail sample: " + persistence::describe(err)};
    if (auto err = rt.start())
      throw std::runtime_error{"runtime start failed: " + persistence::describe(err)};

    // Untimed: the customers' credit.
    std::uint64_t grants = 0;
    for (const auto& c : customers)
      if (c.credit > 0) {
        if (auto err = rt.send("customer", c.customer, retail::grant_credit{c.credit}))
          throw std::runtime_error{"grant_credit: " + persistence::describe(err)};
        ++grants;
      }
    auto setup_deadline = steady::now() + std::chrono::seconds{120};
    while (observed->writes_ok() < grants) {
      if (steady::now() > setup_deadline)
        throw std::runtime_error{"granting credit did not finish within 120 s"};
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }

    // Timed: place orders, at most in_flight not yet completed, until the last completed.
    auto stats0 = inner->statistics();
    auto threads0 = lb::thread_cpu_s();
    auto cpu0 = lb::process_cpu_s();
    auto t0 = steady::now();
    auto deadline = t0 + std::chrono::duration_cast<steady::duration>(
                           std::chrono::duration<double>{o.timeout_s});
    observed->start_measuring(orders.size(), t0);
    std::vector<std::int64_t> placed_ns(orders.size());
    for (std::size_t i = 0; i < orders.size(); ++i) {
      if (i >= o.in_flight
          && observed->wait_completed(i + 1 - o.in_flight, deadline) < i + 1 - o.in_flight)
        throw std::runtime_error{"longhaul run timed out after placing " + std::to_string(i)
                                 + " orders"};
      placed_ns[i] = since(t0);
      if (auto err = rt.send("checkout", orders[i].order_id, orders[i]))
        throw std::runtime_error{"place_order: " + persistence::describe(err)};
    }
    auto done = observed->wait_completed(orders.size(), deadline);
    if (done < orders.size())
      throw std::runtime_error{"longhaul run timed out with " + std::to_string(done) + " of "
                               + std::to_string(orders.size()) + " orders completed"};
    std::int64_t last_ns = 0;
    res.latencies_ms.resize(orders.size());
    for (std::size_t i = 0; i < orders.size(); ++i) {
      auto end_ns = observed->completed_ns(i);
      last_ns = std::max(last_ns, end_ns);
      res.latencies_ms[i] = static_cast<double>(end_ns - placed_ns[i]) / 1e6;
    }
    res.seconds = static_cast<double>(last_ns) / 1e9;
    res.cpu_s = lb::process_cpu_s() - cpu0;
    res.threads = lb::thread_load(threads0, lb::thread_cpu_s(), since(t0) / 1e9);
    auto stats1 = inner->statistics();
    res.transactions = static_cast<double>(stats1.transactions - stats0.transactions);
    res.writer_busy_s = static_cast<double>(stats1.writer_busy_ns - stats0.writer_busy_ns) / 1e9;
    res.commit_s = static_cast<double>(stats1.commit_ns - stats0.commit_ns) / 1e9;
    res.checkpoints = static_cast<double>(stats1.checkpoints - stats0.checkpoints);
    res.checkpoint_s = static_cast<double>(stats1.checkpoint_ns - stats0.checkpoint_ns) / 1e9;
    res.writes = static_cast<double>(stats1.writes - stats0.writes);
    const auto& w = observed->writes();
    res.write_ack_ms = w.calls ? static_cast<double>(w.ns) / 1e6 / static_cast<double>(w.calls) : 0;
    auto per_call_ms = [](const op_counter& c) {
      return c.calls ? static_cast<double>(c.ns) / 1e6 / static_cast<double>(c.calls) : 0.0;
    };
    res.outbox_polls = static_cast<double>(observed->outbox_pending_calls().calls);
    res.outbox_polls_in_memory =
      static_cast<double>(stats1.outbox_reads_in_memory - stats0.outbox_reads_in_memory);
    res.outbox_poll_ms = per_call_ms(observed->outbox_pending_calls());
    res.outbox_rows = static_cast<double>(observed->outbox_pending_calls().items);
    res.outbox_removals = static_cast<double>(observed->outbox_delivered_calls().calls);
    res.outbox_removal_ms = per_call_ms(observed->outbox_delivered_calls());
    res.recovery_reads = static_cast<double>(observed->recovery_reads().calls);
    res.recovery_read_ms = per_call_ms(observed->recovery_reads());
    res.snapshots = static_cast<double>(observed->snapshots().calls);
    res.rejected = static_cast<double>(stats1.refused_writes - stats0.refused_writes);

    // Untimed: let the last deliveries (e-mails after the last completion) settle, so the
    // events per order count all the work an order causes.
    auto settle_deadline = steady::now() + std::chrono::seconds{60};
    for (;;) {
      auto pending = inner->outbox_pending(0, 1);
      if (pending && pending->empty())
        break;
      if (steady::now() > settle_deadline)
        throw std::runtime_error{"the outbox did not drain within 60 s after the last order"};
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    inner->flush();
    auto stats2 = inner->statistics();
    res.events = static_cast<double>(stats2.events - stats0.events);
    if (stats2.failed_writes != stats0.failed_writes)
      throw std::runtime_error{std::to_string(stats2.failed_writes - stats0.failed_writes)
                               + " journal writes failed during the run"};
    rt.stop();
  }
  // Untimed: the sample's own audit of the whole history (every order ended once, no
  // command handled and no e-mail recorded twice, the money balances).
  std::vector<std::string> ids;
  for (const auto& order : orders)
    ids.push_back(order.order_id);
  auto report = retail::audit_journal(*inner, ids);
  if (!report)
    throw std::runtime_error{"auditing the journal: " + persistence::describe(report.error())};
  if (!report->ok())
    throw std::runtime_error{"the retail audit failed: " + report->problems.front()};
  if (report->end_states.size() != 1 || report->ended.size() != orders.size())
    throw std::runtime_error{"not every order completed on the happy path"};
  inner->close();
  return res;
}

// --- report ----------------------------------------------------------------------------

struct series {
  std::vector<double> v;
  double med() const { return v.empty() ? std::nan("") : lb::median(v); }
  double min() const { return v.empty() ? std::nan("") : *std::min_element(v.begin(), v.end()); }
  double max() const { return v.empty() ? std::nan("") : *std::max_element(v.begin(), v.end()); }
};

void add_row(lb::result_table& t, std::string name, const series& s, int decimals,
             std::string note = {}) {
  t.add_row({std::move(name), fixed(s.med(), decimals), fixed(s.min(), decimals),
             fixed(s.max(), decimals), std::move(note)});
}

int run(options o) {
  happy_path_only();
  if (o.sync_delay_ms > 0)
    o.vfs = naive::install_slow_sync_vfs(o.sync_delay_ms);
  lb::scratch_dir scratch{o.dir};
  auto orders = make_orders(o);
  auto customers = make_customers(o);
  std::cout << "retail bench: " << o.orders << " orders over " << o.customers
            << " customers, synchronous=" << o.sync_name << ", " << o.runs
            << " run(s) per side, interleaved (medians); longhaul: at most " << o.in_flight
            << " orders in flight, real clock; naive: " << o.naive_threads
            << " request thread(s) (each commit holds SQLite's one write lock through its "
               "fsync; more threads only queue); scratch " << scratch.path().string()
            << (o.quick ? " (quick)" : "") << "\n"
            << (o.vfs.empty() ? std::string{}
                              : "SIMULATED slower disk: +" + fixed(o.sync_delay_ms, 2)
                                  + " ms after every fsync, both sides\n")
            << "load average at start: " << load_average() << "\n"
            << std::flush;

  series commit, lh_rate, nv_rate, ratio, lh_p99, lh_p50, nv_p99, lh_events, lh_txns,
    lh_batch, nv_txns, nv_commit, lh_cpu, nv_cpu;
  longhaul_result last;
  for (std::size_t r = 0; r < o.runs; ++r) {
    {
      auto dir = scratch.fresh("commit-probe");
      commit.v.push_back(naive::commit_ms(dir, o.sync, o.probe_commits, o.vfs));
      lb::scratch_dir::remove(dir);
    }
    auto lh = std::nan(""), nv = std::nan("");
    auto run_longhaul_side = [&] {
      if (!o.longhaul)
        return;
      auto dir = scratch.fresh("longhaul");
      auto res = run_longhaul(dir, o, orders, customers);
      lb::scratch_dir::remove(dir);
      auto n = static_cast<double>(o.orders);
      lh = n / res.seconds;
      lh_rate.v.push_back(lh);
      lh_p99.v.push_back(percentile(res.latencies_ms, 0.99));
      lh_p50.v.push_back(percentile(res.latencies_ms, 0.50));
      lh_events.v.push_back(res.events / n);
      lh_txns.v.push_back(res.transactions / n);
      lh_batch.v.push_back(res.transactions > 0 ? res.writes / res.transactions : 0);
      lh_cpu.v.push_back(res.cpu_s * 1e3 / n);
      last = std::move(res);
    };
    auto run_naive_side = [&] {
      if (!o.naive)
        return;
      auto dir = scratch.fresh("naive");
      auto res = naive::run(dir / "shop.db", o.sync, runtime_config{}.writer_cache_mb, customers, orders,
                            o.naive_threads, o.vfs);
      lb::scratch_dir::remove(dir);
      auto n = static_cast<double>(o.orders);
      nv = n / res.seconds;
      nv_rate.v.push_back(nv);
      nv_p99.v.push_back(percentile(res.latencies_ms, 0.99));
      nv_txns.v.push_back(static_cast<double>(res.transactions) / n);
      nv_commit.v.push_back(res.seconds * 1e3 / static_cast<double>(res.transactions));
      nv_cpu.v.push_back(res.cpu_s * 1e3 / n);
    };
    // Alternate which side goes first, so that drift in load affects both alike.
    if (r % 2 == 0) {
      run_longhaul_side();
      run_naive_side();
    } else {
      run_naive_side();
      run_longhaul_side();
    }
    if (o.longhaul && o.naive)
      ratio.v.push_back(lh / nv);
    std::cout << "  run " << r + 1 << "/" << o.runs << ": longhaul " << lb::format_rate(lh)
              << ", naive " << lb::format_rate(nv) << ", ratio " << fixed(lh / nv, 2)
              << ", load " << load_average() << "\n"
              << std::flush;
  }
  std::cout << "\n";

  lb::result_table table{{"measurement", "median", "min", "max", "note"}};
  add_row(table, "fsync'ed commit, 1-row txn (ms)", commit, 2,
          "BEGIN IMMEDIATE; INSERT; COMMIT on this file system");
  add_row(table, "longhaul orders/s", lh_rate, 1,
          lb::format_count(o.in_flight) + " in flight, group commit");
  add_row(table, "naive orders/s", nv_rate, 1,
          lb::format_count(o.naive_threads) + " request thread(s)");
  add_row(table, "ratio longhaul / naive (per run)", ratio, 2,
          "target >= 5; JSON: ratio of the medians");
  add_row(table, "longhaul p50 order latency (ms)", lh_p50, 1, "placed -> completed, durable");
  add_row(table, "longhaul p99 order latency (ms)", lh_p99, 1, "");
  add_row(table, "naive p99 order latency (ms)", nv_p99, 1, "");
  add_row(table, "longhaul events/order", lh_events, 2, "journal events, all contexts");
  add_row(table, "longhaul journal commits/order", lh_txns, 2, "fsync'ed transactions");
  add_row(table, "longhaul writes/commit", lh_batch, 1, "atomic writes per transaction");
  add_row(table, "naive commits/order", nv_txns, 2, "one per state change");
  add_row(table, "naive ms per commit, in the run", nv_commit, 2, "incl. its CPU work");
  add_row(table, "longhaul CPU ms/order", lh_cpu, 3, "all threads");
  add_row(table, "naive CPU ms/order", nv_cpu, 3, "all threads");
  table.print(std::cout);
  if (o.longhaul && o.naive) {
    // Longhaul is CPU-bound with large batches, so its rate hardly depends on the fsync;
    // the naive version pays one per state change. Where would the ratio reach 5?
    auto needed_ms = 5e3 / lh_rate.med() / nv_txns.med();
    std::cout << "ratio 5 needs naive <= " << fixed(lh_rate.med() / 5, 1)
              << " orders/s, i.e. >= " << fixed(needed_ms, 2)
              << " ms per naive commit (this run: " << fixed(nv_commit.med(), 2)
              << " ms per naive commit, probe " << fixed(commit.med(), 2) << " ms)\n";
  }

  auto n = static_cast<double>(o.orders);
  if (o.longhaul)
    std::cout << "\nwhere longhaul's time goes (last run, per order):\n"
              << "  " << fixed(last.writes / n, 1) << " journal writes, acknowledged after "
              << fixed(last.write_ack_ms, 2)
              << " ms on average (queue + commit + fsync; timed on one write in "
              << observed_journal::ack_sample << " and each order's last)\n"
              << "  " << fixed(last.outbox_polls / n, 2) << " outbox reads ("
              << fixed(last.outbox_poll_ms, 2) << " ms each, "
              << fixed(last.outbox_rows / std::max(last.outbox_polls, 1.0), 1) << " rows each, "
              << fixed(100 * last.outbox_polls_in_memory / std::max(last.outbox_polls, 1.0), 0)
              << "% answered from the journal's outbox tail in memory)\n"
              << "  " << fixed(last.outbox_removals / n, 2)
              << " outbox removals (committed with the next write batch, " << fixed(last.outbox_removal_ms, 2)
              << " ms each until committed; the dispatcher does not wait)\n"
              << "  " << fixed(last.recovery_reads / n, 1)
              << " activation reads of new instances (" << fixed(last.recovery_read_ms, 3)
              << " ms each), " << fixed(last.snapshots / n, 2) << " snapshots, "
              << fixed(last.rejected, 0) << " rejected writes\n"
              << "  journal writer busy " << fixed(100 * last.writer_busy_s / std::max(last.seconds, 1e-9), 0)
              << "% of the run; COMMIT " << fixed(last.commit_s * 1e3 / std::max(last.transactions, 1.0), 2)
              << " ms per transaction (WAL write, fsync, checkpoints: "
              << fixed(last.checkpoints, 0) << ", " << fixed(last.checkpoint_s * 1e3 / std::max(last.checkpoints, 1.0), 1)
              << " ms each)\n"
              << "  CPU " << fixed(last.cpu_s * 1e3 / n, 3) << " ms; cores busy by thread: "
              << last.threads << "\n";
  std::cout << "\nload average at end: " << load_average() << "; peak RSS "
            << lb::peak_rss_kib() / 1024 << " MiB\n\n";

  lb::json_summary json{"retail"};
  json.add("orders_per_s", lh_rate.med(), 1);
  json.add("naive_orders_per_s", nv_rate.med(), 1);
  json.add("ratio_vs_naive", lh_rate.med() / nv_rate.med(), 2);
  json.add("events_per_order", lh_events.med(), 2);
  json.add("p99_order_latency_ms", lh_p99.med(), 1);
  std::cout << json.str() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // What a service's first journal open does (sqlite_journal_config::sqlite_memory_status),
  // done first here so that both sides of each comparison, which use SQLite before the
  // journal is opened (baselines, commit probe), run with it.
  (void) longhaul::persistence::disable_sqlite_memory_status();
  options o;
  try {
    o = parse_options(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "retail_bench: " << e.what() << "\n" << usage_text;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "retail_bench: " << e.what() << "\n";
    return 1;
  }
}
