// The actor benchmark: the runtime's command path (supervisor -> persistent actor ->
// journal -> reply) against raw SQLite inserts, recovery of many instances, rehydration
// of one long history and memory per idle instance. Run by `scripts/bench.sh actors`.
#include "actors/persistent_entity_actor.hpp"
#include "actors/supervisor_actor.hpp"
#include "bench/bench_report.hpp"
#include "bench/raw_sqlite.hpp"
#include "persistence/persistence_error.hpp"
#include "persistence/sqlite_journal.hpp"
#include "runtime/runtime.hpp"

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <sqlite3.h>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

// --- the entity ------------------------------------------------------------------------
// One command -> one event of about 200 bytes; a cheap command that stores nothing and
// replies the number of orders (activation, recovery checks).

namespace bench_item {

struct place_order {
  static constexpr auto command_name = "place_order";
  std::string order_id;
  std::string customer_id;
  std::int64_t amount_cents = 0;
  std::string currency;
  std::string note;
};
struct count_orders {
  static constexpr auto command_name = "count_orders";
};
BOOST_DESCRIBE_STRUCT(place_order, (), (order_id, customer_id, amount_cents, currency, note))
BOOST_DESCRIBE_STRUCT(count_orders, (), ())

struct order_placed {
  static constexpr auto event_name = "bench.order_placed";
  static constexpr std::uint32_t schema_version = 1;
  std::string order_id;
  std::string customer_id;
  std::int64_t amount_cents = 0;
  std::string currency;
  std::string note;
};
BOOST_DESCRIBE_STRUCT(order_placed, (), (order_id, customer_id, amount_cents, currency, note))

/// Tiny state: what an idle instance keeps besides the runtime's own bookkeeping.
struct item_state {
  std::uint64_t orders = 0;
  std::int64_t total_cents = 0;
};
BOOST_DESCRIBE_STRUCT(item_state, (), (orders, total_cents))

struct item {
  static constexpr auto type_name = "item";
  using state = item_state;
  using command = std::variant<place_order, count_orders>;
  using event = std::variant<order_placed>;

  static longhaul::decision<event> decide(const state& s, const command& c) {
    if (const auto* cmd = std::get_if<place_order>(&c))
      return order_placed{cmd->order_id, cmd->customer_id, cmd->amount_cents, cmd->currency,
                          cmd->note};
    longhaul::decision<event> d;
    d.reply(s.orders);
    return d;
  }

  static void apply(state& s, const event& e) {
    const auto& ev = std::get<order_placed>(e);
    ++s.orders;
    s.total_cents += ev.amount_cents;
  }
};

}  // namespace bench_item

namespace {

using namespace longhaul;
using persistence::sequence_nr;
using persistence::sync_mode;
using persistence::time_ms;
namespace lb = longhaul::bench;
using lb::raw_db;
using lb::raw_stmt;
namespace fs = std::filesystem;

// --- options -------------------------------------------------------------------------

constexpr const char* usage_text =
  "usage: actor_bench [--runs N] [--quick] [--sync full|normal|off] [--dir PATH]\n"
  "                   [--seconds S] [--only PARTS] [--instances N,...]\n"
  "                   [--recoveries N] [--readers N] [--workers N] [--scheduling S]\n"
  "  --runs N       repeat every measurement N times, report medians (default 3; 1 with\n"
  "                 --quick)\n"
  "  --quick        small sizes and short runs, for smoke tests\n"
  "  --sync MODE    synchronous mode of raw SQLite and the runtime's journal (default full)\n"
  "  --dir PATH     parent of the scratch directory (default: the system temp dir)\n"
  "  --seconds S    duration of each throughput measurement (default 3; 0.3 with --quick)\n"
  "  --only PARTS   comma-separated subset of throughput,recovery,rehydrate,rss (default\n"
  "                 all); figures of skipped parts are null in the JSON line\n"
  "  --instances L  closed-loop instance counts of the throughput part (default\n"
  "                 1,100,10000)\n"
  "  --recoveries N max_concurrent_recoveries of the runtime (default: the runtime's)\n"
  "  --readers N    reader_threads of the runtime (default: the runtime's)\n"
  "  --workers N    worker_threads (CAF scheduler threads) of the runtime (default: the\n"
  "                 runtime's)\n"
  "  --scheduling S sharing or work_stealing (default: the runtime's)\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  std::size_t runs = 3;
  bool quick = false;
  sync_mode sync = sync_mode::full;
  std::string sync_name = "full";
  std::string dir;
  double seconds = 3.0;
  std::size_t raw_txn_rows = 1000;
  std::size_t raw_ids = 10'000;
  std::vector<std::size_t> instance_counts{1, 100, 10'000};
  std::size_t recovery_instances = 100'000;
  std::size_t recovery_events = 20;
  std::size_t rehydrate_events = 1000;
  std::size_t rehydrate_samples = 21;  // instances rehydrated per run (one sample each)
  std::size_t rss_instances = 100'000;
  std::size_t rss_warmup_instances = 1000;
  bool throughput = true;
  bool recovery = true;
  bool rehydrate = true;
  bool rss = true;
  std::size_t recoveries = 0;  // runtime_config::max_concurrent_recoveries; 0: default
  std::size_t readers = 0;     // runtime_config::reader_threads; 0: default
  std::size_t workers = 0;     // runtime_config::worker_threads; 0: default
  std::optional<worker_scheduling> scheduling;  // runtime_config::scheduling; none: default
};

options parse_options(int argc, char** argv) {
  options o;
  bool runs_given = false;
  bool seconds_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc)
        throw usage_error{std::string{arg} + " needs a value"};
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage_text;
      std::exit(0);
    } else if (arg == "--quick") {
      o.quick = true;
    } else if (arg == "--runs") {
      auto text = value();
      auto n = lb::parse_count(text);
      if (!n || *n == 0 || *n > 1000)
        throw usage_error{"--runs must be a whole number in 1..1000, not '"
                          + std::string{text} + "'"};
      o.runs = *n;
      runs_given = true;
    } else if (arg == "--sync") {
      auto text = value();
      auto mode = persistence::parse_sync_mode(text);
      if (!mode)
        throw usage_error{"--sync must be full, normal or off, not '" + std::string{text}
                          + "'"};
      o.sync = *mode;
      o.sync_name = text;
    } else if (arg == "--dir") {
      o.dir = value();
      if (o.dir.empty())
        throw usage_error{"--dir must not be empty"};
    } else if (arg == "--seconds") {
      auto text = value();
      auto s = lb::parse_positive(text);
      if (!s || *s > 3600)
        throw usage_error{"--seconds must be a positive number up to 3600, not '"
                          + std::string{text} + "'"};
      o.seconds = *s;
      seconds_given = true;
    } else if (arg == "--instances") {
      auto text = value();
      o.instance_counts.clear();
      while (!text.empty()) {
        auto comma = text.find(',');
        auto n = lb::parse_count(text.substr(0, comma));
        if (!n || *n == 0 || *n > 1'000'000)
          throw usage_error{"--instances takes counts in 1..1000000, not '"
                            + std::string{text.substr(0, comma)} + "'"};
        o.instance_counts.push_back(*n);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
      }
      if (o.instance_counts.empty())
        throw usage_error{"--instances needs at least one count"};
    } else if (arg == "--recoveries" || arg == "--readers" || arg == "--workers") {
      auto text = value();
      auto n = lb::parse_count(text);
      if (!n || *n == 0 || *n > 100'000)
        throw usage_error{std::string{arg} + " must be a whole number in 1..100000, not '"
                          + std::string{text} + "'"};
      (arg == "--recoveries" ? o.recoveries : arg == "--readers" ? o.readers : o.workers) = *n;
    } else if (arg == "--scheduling") {
      auto text = value();
      runtime_config probe;
      if (auto err = longhaul::set_option(probe, "scheduling", text))
        throw usage_error{"--scheduling: " + persistence::describe(err)};
      o.scheduling = probe.scheduling;
    } else if (arg == "--only") {
      auto text = value();
      o.throughput = o.recovery = o.rehydrate = o.rss = false;
      while (!text.empty()) {
        auto comma = text.find(',');
        auto part = text.substr(0, comma);
        if (part == "throughput")
          o.throughput = true;
        else if (part == "recovery")
          o.recovery = true;
        else if (part == "rehydrate")
          o.rehydrate = true;
        else if (part == "rss")
          o.rss = true;
        else
          throw usage_error{"--only takes throughput, recovery, rehydrate or rss, not '"
                            + std::string{part} + "'"};
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
      }
      if (!o.throughput && !o.recovery && !o.rehydrate && !o.rss)
        throw usage_error{"--only needs at least one part"};
    } else {
      throw usage_error{"unknown argument '" + std::string{arg} + "'"};
    }
  }
  if (o.quick) {
    if (!runs_given)
      o.runs = 1;
    if (!seconds_given)
      o.seconds = 0.3;
    o.recovery_instances = 2'000;
    o.rehydrate_samples = 5;
    o.rss_instances = 5'000;
    o.rss_warmup_instances = 200;
  }
  return o;
}

// --- workload --------------------------------------------------------------------------

/// An order command whose event serializes to about 200 bytes; `n` varies its numbers.
bench_item::place_order make_order(std::uint64_t n) {
  char order_id[32];
  char customer_id[32];
  std::snprintf(order_id, sizeof(order_id), "ord-%08llu",
                static_cast<unsigned long long>(n % 100'000'000));
  std::snprintf(customer_id, sizeof(customer_id), "cust-%06llu",
                static_cast<unsigned long long>(n % 997'331));
  static constexpr std::string_view words[] = {"express", "gift",   "fragile", "weekday",
                                               "pickup",  "backup", "invoice", "priority"};
  std::string note = "deliver ";
  for (std::uint64_t k = 0; note.size() < 95; ++k)
    note.append(words[(n + k * 3) % std::size(words)]).append(" ");
  return {order_id, customer_id, static_cast<std::int64_t>(1'000 + n % 90'000), "EUR",
          std::move(note)};
}

/// Stored payload of the event `make_order(n)` leads to (what the entity's codec writes).
std::string order_event_json(std::uint64_t n) {
  auto cmd = make_order(n);
  return boost::json::serialize(boost::json::value_from(bench_item::order_placed{
    cmd.order_id, cmd.customer_id, cmd.amount_cents, cmd.currency, cmd.note}));
}

/// Commands and their event payloads made once, so no measurement pays for formatting.
class order_pool {
public:
  explicit order_pool(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      orders_.push_back(make_order(i * 7'919 + 1));
      events_.push_back(order_event_json(i * 7'919 + 1));
    }
  }
  const bench_item::place_order& order(std::uint64_t i) const {
    return orders_[i % orders_.size()];
  }
  const std::string& event_json(std::uint64_t i) const { return events_[i % events_.size()]; }
  double average_event_bytes() const {
    double total = 0;
    for (const auto& e : events_)
      total += static_cast<double>(e.size());
    return total / static_cast<double>(events_.size());
  }

private:
  std::vector<bench_item::place_order> orders_;
  std::vector<std::string> events_;
};

std::vector<std::string> make_ids(std::string_view prefix, std::size_t n) {
  std::vector<std::string> ids;
  ids.reserve(n);
  char buf[32];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%06zu", i);
    ids.push_back(std::string{prefix} + buf);
  }
  return ids;
}

time_ms now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string fixed(double value, int decimals) {
  if (!std::isfinite(value))
    return "";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

/// Resident set size now, in bytes (second field of /proc/self/statm, in pages).
std::uint64_t rss_bytes() {
  std::ifstream statm{"/proc/self/statm"};
  std::uint64_t size_pages = 0;
  std::uint64_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages))
    throw std::runtime_error{"cannot read /proc/self/statm"};
  return resident_pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// --- the journal and the runtime -------------------------------------------------------

std::unique_ptr<persistence::sqlite_journal> open_journal(const fs::path& db, sync_mode sync) {
  persistence::sqlite_journal_config cfg;
  cfg.path = db.string();
  cfg.sync = sync;
  auto j = persistence::sqlite_journal::open(std::move(cfg));
  if (!j)
    throw std::runtime_error{"cannot open journal '" + db.string()
                             + "': " + persistence::describe(j.error())};
  return std::move(*j);
}

/// Stores `per_id` order events for each of `ids` ("item/<id>") through the journal,
/// one atomic write per id, synchronous=OFF (loading is not measured), with a bounded
/// number of writes in flight. Events carry the tag the entity's codec adds.
void bulk_load(const fs::path& db, const order_pool& pool, const std::vector<std::string>& ids,
               std::size_t per_id) {
  auto j = open_journal(db, sync_mode::off);
  constexpr std::size_t in_flight = 64;
  std::mutex mtx;
  std::condition_variable cv;
  std::size_t pending = 0;
  std::string first_error;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    {
      std::unique_lock guard{mtx};
      cv.wait(guard, [&] { return pending < in_flight; });
      if (!first_error.empty())
        break;
      ++pending;
    }
    persistence::atomic_write aw;
    aw.persistence_id = actors::persistence_id_of(bench_item::item::type_name, ids[i]);
    aw.expected_seq = 1;
    aw.events.reserve(per_id);
    for (std::size_t k = 0; k < per_id; ++k)
      aw.events.push_back({bench_item::order_placed::event_name,
                           bench_item::order_placed::schema_version,
                           pool.event_json(i * per_id + k),
                           {bench_item::item::type_name}});
    j->write(std::move(aw), [&, i](caf::expected<persistence::write_result> r) {
      std::lock_guard guard{mtx};
      if (!r && first_error.empty())
        first_error = "'" + ids[i] + "': " + persistence::describe(r.error());
      --pending;
      cv.notify_all();
    });
  }
  j->flush();
  j->close();
  if (!first_error.empty())
    throw std::runtime_error{"bulk load failed: " + first_error};
}

/// A started runtime with the bench entity on the SQLite file `db`, passivation off;
/// stopped on destruction unless `stop` was called.
class bench_runtime {
public:
  bench_runtime(const fs::path& db, const options& o) {
    runtime_config cfg;
    cfg.database_path = db.string();
    cfg.sync = o.sync;
    cfg.passivate_after = std::chrono::milliseconds{0};
    if (o.recoveries != 0)
      cfg.max_concurrent_recoveries = o.recoveries;
    if (o.readers != 0)
      cfg.reader_threads = o.readers;
    if (o.workers != 0)
      cfg.worker_threads = o.workers;
    if (o.scheduling)
      cfg.scheduling = *o.scheduling;
    cfg.log_level = "warn";
    cfg.ask_timeout = std::chrono::minutes{5};
    cfg.stop_timeout = std::chrono::minutes{5};
    rt_ = std::make_unique<runtime>(std::move(cfg));
    rt_->register_entity<bench_item::item>();
    if (auto err = rt_->start())
      throw std::runtime_error{"runtime start failed: " + persistence::describe(err)};
  }
  ~bench_runtime() { rt_->stop(); }
  bench_runtime(const bench_runtime&) = delete;
  bench_runtime& operator=(const bench_runtime&) = delete;

  runtime& get() { return *rt_; }

  std::uint64_t live() {
    auto n = rt_->live_instances();
    if (!n)
      throw std::runtime_error{"live_instances failed: " + persistence::describe(n.error())};
    return *n;
  }

  /// Asks the supervisor to drain every live instance, as stop() does first; returns the
  /// seconds until the answer.
  double drain() {
    lb::stopwatch clock;
    caf::scoped_actor self{rt_->system()};
    caf::error failed;
    self->request(rt_->supervisor(), std::chrono::minutes{10}, actors::drain_atom::value)
      .receive([] {}, [&](caf::error& err) { failed = std::move(err); });
    if (failed)
      throw std::runtime_error{"drain failed: " + persistence::describe(failed)};
    return clock.elapsed_s();
  }

  /// Stops the runtime (drain, stop actors, close the journal); returns the seconds.
  double stop() {
    lb::stopwatch clock;
    rt_->stop();
    return clock.elapsed_s();
  }

private:
  std::unique_ptr<runtime> rt_;
};

// --- driver actors ---------------------------------------------------------------------
// Each driver actor owns a slice of the instance ids and sends commands to the
// supervisor with request(). Closed loop: one command in flight per id, the next sent
// when the reply arrives, until the deadline. Once: every id gets one command, with at
// most `window` in flight per driver.

using go_atom = caf::atom_constant<caf::atom("benchgo")>;

/// What a group of drivers does and what they found; shared by the drivers and the
/// thread that waits for them.
struct drive_plan {
  caf::actor supervisor;
  const std::vector<std::string>* ids = nullptr;
  /// Builds the command for `id`; `n` counts the commands of the whole group.
  std::function<actors::command_envelope(const std::string& id, std::uint64_t n)> make;
  /// Checks a reply; returns a description of what is wrong, or "".
  std::function<std::string(const std::string& id, const actors::command_reply&)> check;
  bool closed_loop = false;
  std::chrono::steady_clock::time_point deadline;
  std::size_t window = 1;
  std::chrono::milliseconds timeout{std::chrono::minutes{5}};  ///< longest wait for progress

  std::atomic<std::uint64_t> issued{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<bool> failed{false};
  lb::stopwatch clock;
  std::mutex mtx;
  std::condition_variable done;
  std::size_t active = 0;         // guarded by mtx
  double finished_after_s = 0;    // guarded by mtx
  std::string first_error;        // guarded by mtx
};

struct driver_state {
  static inline const char* name = "bench.driver";
  std::shared_ptr<drive_plan> plan;
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t next = 0;       // once mode: next id to send to
  std::size_t in_flight = 0;
};

using driver_ptr = caf::stateful_actor<driver_state>*;

void driver_finish(driver_ptr self) {
  auto& p = *self->state.plan;
  {
    std::lock_guard guard{p.mtx};
    if (--p.active == 0) {
      p.finished_after_s = p.clock.elapsed_s();
      p.done.notify_all();
    }
  }
  self->quit();
}

void driver_fail(drive_plan& p, std::string what) {
  std::lock_guard guard{p.mtx};
  if (p.first_error.empty())
    p.first_error = std::move(what);
  p.failed = true;
}

void driver_issue(driver_ptr self, std::size_t idx);

void driver_on_reply(driver_ptr self, std::size_t idx, const actors::command_reply* reply,
                     const caf::error* err) {
  auto& st = self->state;
  auto& p = *st.plan;
  --st.in_flight;
  const auto& id = (*p.ids)[idx];
  if (err != nullptr) {
    driver_fail(p, "'" + id + "': " + persistence::describe(*err));
  } else {
    p.completed.fetch_add(1, std::memory_order_relaxed);
    if (p.check)
      if (auto what = p.check(id, *reply); !what.empty())
        driver_fail(p, "'" + id + "': " + what);
  }
  if (!p.failed) {
    if (p.closed_loop) {
      if (std::chrono::steady_clock::now() < p.deadline)
        driver_issue(self, idx);
    } else if (st.next < st.end) {
      driver_issue(self, st.next++);
    }
  }
  if (st.in_flight == 0)
    driver_finish(self);
}

void driver_issue(driver_ptr self, std::size_t idx) {
  auto& st = self->state;
  auto& p = *st.plan;
  ++st.in_flight;
  auto n = p.issued.fetch_add(1, std::memory_order_relaxed);
  self->request(p.supervisor, caf::infinite, p.make((*p.ids)[idx], n))
    .then([self, idx](actors::command_reply& r) { driver_on_reply(self, idx, &r, nullptr); },
          [self, idx](caf::error& e) { driver_on_reply(self, idx, nullptr, &e); });
}

caf::behavior driver(driver_ptr self, std::shared_ptr<drive_plan> plan, std::size_t begin,
                     std::size_t end) {
  self->state.plan = std::move(plan);
  self->state.begin = begin;
  self->state.end = end;
  self->state.next = begin;
  return {
    [self](go_atom) {
      auto& st = self->state;
      auto first = st.plan->closed_loop ? st.end : std::min(st.end, st.begin + st.plan->window);
      for (; st.next < first; ++st.next)
        driver_issue(self, st.next);
      if (st.in_flight == 0)
        driver_finish(self);
    },
  };
}

struct drive_outcome {
  std::uint64_t completed = 0;
  double seconds = 0;
};

/// Runs `plan` with `drivers` driver actors over `*plan->ids` (split evenly) and waits
/// until every driver finished. Throws with the first error a driver saw.
drive_outcome drive(runtime& rt, std::shared_ptr<drive_plan> plan, std::size_t drivers) {
  const auto n = plan->ids->size();
  drivers = std::clamp<std::size_t>(drivers, 1, std::max<std::size_t>(n, 1));
  plan->active = drivers;
  plan->clock.restart();
  for (std::size_t d = 0; d < drivers; ++d) {
    auto begin = n * d / drivers;
    auto end = n * (d + 1) / drivers;
    auto a = rt.system().spawn(driver, plan, begin, end);
    caf::anon_send(a, go_atom::value);
  }
  // Requests carry no CAF timeout (CAF 0.17 keeps each in its clock until it expires,
  // answered or not, which would add to the memory and CPU measured): a stall shows here.
  std::unique_lock guard{plan->mtx};
  auto last_completed = plan->completed.load();
  lb::stopwatch since_progress;
  while (!plan->done.wait_for(guard, std::chrono::seconds{1}, [&] { return plan->active == 0; })) {
    if (auto now_completed = plan->completed.load(); now_completed != last_completed) {
      last_completed = now_completed;
      since_progress.restart();
    } else if (since_progress.elapsed_s() * 1000.0 > static_cast<double>(plan->timeout.count())) {
      throw std::runtime_error{"no command answered for "
                               + std::to_string(plan->timeout.count() / 1000) + " s"};
    }
  }
  if (!plan->first_error.empty())
    throw std::runtime_error{"command failed: " + plan->first_error};
  return {plan->completed.load(), plan->finished_after_s};
}

/// Drivers for `n` closed-loop instances: about sqrt(n), at most 100 (1 -> 1,
/// 100 -> 10, 10,000 -> 100), so that no single driver is the bottleneck.
std::size_t closed_loop_drivers(std::size_t n) {
  auto d = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  return std::clamp<std::size_t>(d, 1, 100);
}

std::shared_ptr<drive_plan> order_plan(runtime& rt, const std::vector<std::string>& ids,
                                       const order_pool& pool) {
  auto plan = std::make_shared<drive_plan>();
  plan->supervisor = rt.supervisor();
  plan->ids = &ids;
  plan->make = [&pool](const std::string& id, std::uint64_t n) {
    return runtime::envelope(bench_item::item::type_name, id, pool.order(n));
  };
  plan->check = [](const std::string&, const actors::command_reply& r) -> std::string {
    return r.highest_seq == 0 ? "reply without a stored event" : "";
  };
  return plan;
}

/// Sends count_orders once to every id (at most `window` in flight per driver, 100
/// drivers) and checks each reply equals `expected_orders`.
drive_outcome activate_all(runtime& rt, const std::vector<std::string>& ids,
                           std::uint64_t expected_orders, std::size_t window) {
  auto plan = std::make_shared<drive_plan>();
  plan->supervisor = rt.supervisor();
  plan->ids = &ids;
  plan->make = [](const std::string& id, std::uint64_t) {
    return runtime::envelope(bench_item::item::type_name, id, bench_item::count_orders{});
  };
  plan->check = [expected_orders](const std::string&,
                                  const actors::command_reply& r) -> std::string {
    if (!r.reply || (!r.reply->is_uint64() && !r.reply->is_int64()))
      return "count_orders replied no number";
    auto got = r.reply->to_number<std::uint64_t>();
    if (got != expected_orders)
      return "recovered " + std::to_string(got) + " orders, expected "
             + std::to_string(expected_orders);
    return "";
  };
  plan->closed_loop = false;
  plan->window = window;
  return drive(rt, std::move(plan), 100);
}

// --- measurements ----------------------------------------------------------------------

/// One measurement: a rate, and the process CPU per item (all threads).
struct sample {
  double per_s = 0;
  double cpu_us = 0;
  double writes_per_txn = std::numeric_limits<double>::quiet_NaN();  ///< journal batches
  std::string threads;  ///< cores busy per thread name (thread_load)
};

template <class F>
sample measure(F body) {
  auto threads_before = lb::thread_cpu_s();
  auto cpu_before = lb::process_cpu_s();
  auto [items, seconds] = body();
  auto cpu = lb::process_cpu_s() - cpu_before;
  if (items == 0 || seconds <= 0)
    throw std::runtime_error{"a measurement completed nothing"};
  sample s;
  s.per_s = static_cast<double>(items) / seconds;
  s.cpu_us = cpu * 1e6 / static_cast<double>(items);
  s.threads = lb::thread_load(threads_before, lb::thread_cpu_s(), seconds);
  return s;
}

/// Adds the journal's atomic writes per transaction during `body` to its sample.
template <class F>
sample measure_journal(runtime& rt, F body) {
  auto* sj = dynamic_cast<persistence::sqlite_journal*>(&rt.journal());
  auto before = sj ? sj->statistics() : persistence::sqlite_journal::stats{};
  auto s = measure(std::move(body));
  if (sj) {
    auto after = sj->statistics();
    if (after.transactions > before.transactions)
      s.writes_per_txn = static_cast<double>(after.writes - before.writes)
                         / static_cast<double>(after.transactions - before.transactions);
  }
  return s;
}

/// Commands through the runtime with `instances` closed-loop instances (activated first,
/// untimed), each command storing one event; drivers are CAF actors using request().
sample command_throughput(const fs::path& db, const options& o, const order_pool& pool,
                          std::size_t instances) {
  bench_runtime brt{db, o};
  auto& rt = brt.get();
  auto ids = make_ids("c", instances);
  activate_all(rt, ids, 0, 100);
  return measure_journal(rt, [&] {
    auto plan = order_plan(rt, ids, pool);
    plan->closed_loop = true;
    plan->deadline = std::chrono::steady_clock::now()
                     + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(o.seconds));
    auto r = drive(rt, plan, closed_loop_drivers(instances));
    return std::pair{r.completed, r.seconds};
  });
}

/// The same path through the blocking facade: ask() from one plain thread, one instance.
sample ask_throughput(const fs::path& db, const options& o, const order_pool& pool) {
  bench_runtime brt{db, o};
  auto& rt = brt.get();
  if (auto r = rt.ask("item", "ask-1", bench_item::count_orders{}); !r)
    throw std::runtime_error{"ask failed: " + persistence::describe(r.error())};
  return measure_journal(rt, [&] {
    std::uint64_t n = 0;
    lb::stopwatch clock;
    double seconds = 0;
    do {
      if (auto r = rt.ask("item", "ask-1", pool.order(n)); !r)
        throw std::runtime_error{"ask failed: " + persistence::describe(r.error())};
      ++n;
      seconds = clock.elapsed_s();
    } while (seconds < o.seconds);
    return std::pair{n, seconds};
  });
}

struct recovery_sample {
  double instances_per_s = 0;
  double events_per_s = 0;
  double cpu_us_per_event = 0;
  double stop_s = 0;  ///< stop() with every instance live
};

/// Restarts a runtime on `db` (loaded with `ids` x `per_id` events) and activates every
/// instance with count_orders, checking each recovered all its events; timed from the
/// first command to the last reply.
recovery_sample recovery(const fs::path& db, const options& o,
                         const std::vector<std::string>& ids, std::size_t per_id) {
  bench_runtime brt{db, o};
  auto& rt = brt.get();
  auto cpu_before = lb::process_cpu_s();
  auto r = activate_all(rt, ids, per_id, 50);
  auto cpu = lb::process_cpu_s() - cpu_before;
  if (r.completed != ids.size())
    throw std::runtime_error{"recovery: " + std::to_string(r.completed) + " of "
                             + std::to_string(ids.size()) + " instances answered"};
  auto events = static_cast<double>(ids.size() * per_id);
  return {static_cast<double>(ids.size()) / r.seconds, events / r.seconds,
          cpu * 1e6 / events, brt.stop()};
}

/// One rehydration: wall and process CPU milliseconds.
struct rehydrate_sample {
  double wall_ms = 0;
  double cpu_ms = 0;
};

/// Time from asking a passive instance with `per_id` stored events until its reply
/// (activation, permit, loading, applying, the command), one sample per id.
std::vector<rehydrate_sample> rehydrate(const fs::path& db, const options& o,
                                        const std::vector<std::string>& ids,
                                        std::size_t per_id) {
  bench_runtime brt{db, o};
  auto& rt = brt.get();
  // Warm the runtime's own paths (threads, reader connections) on another instance.
  if (auto r = rt.ask<std::uint64_t>("item", "warm-up", bench_item::count_orders{}); !r)
    throw std::runtime_error{"warm-up ask failed: " + persistence::describe(r.error())};
  std::vector<rehydrate_sample> out;
  for (const auto& id : ids) {
    auto cpu_before = lb::process_cpu_s();
    lb::stopwatch clock;
    auto r = rt.ask<std::uint64_t>("item", id, bench_item::count_orders{});
    auto elapsed = clock.elapsed_s();
    auto cpu = lb::process_cpu_s() - cpu_before;
    if (!r)
      throw std::runtime_error{"rehydrating '" + id + "' failed: "
                               + persistence::describe(r.error())};
    if (*r != per_id)
      throw std::runtime_error{"rehydrating '" + id + "' recovered " + std::to_string(*r)
                               + " orders, expected " + std::to_string(per_id)};
    out.push_back({elapsed * 1e3, cpu * 1e3});
  }
  return out;
}

struct rss_sample {
  double bytes_per_instance = 0;
  double heap_bytes_per_instance = 0;  ///< malloc'ed bytes in use (mallinfo2), per instance
  std::uint64_t instances = 0;
  double activation_per_s = 0;
  double drain_s = 0;  ///< the supervisor's drain with every instance live
  double stop_s = 0;   ///< stop() afterwards (its own drain finds them idle)
};

/// RSS growth per idle live instance: activates `o.rss_warmup_instances` (untimed, so
/// threads, pools and caches are warm), then `o.rss_instances` more with a tiny state
/// and passivation off; malloc_trim before both readings returns freed heap.
rss_sample rss_per_instance(const fs::path& db, const options& o) {
  bench_runtime brt{db, o};
  auto& rt = brt.get();
  auto warm = make_ids("warm", o.rss_warmup_instances);
  activate_all(rt, warm, 0, 50);
  ::malloc_trim(0);
  auto before = rss_bytes();
  auto heap_before = ::mallinfo2().uordblks;
  auto ids = make_ids("idle", o.rss_instances);
  auto r = activate_all(rt, ids, 0, 50);
  ::malloc_trim(0);
  auto after = rss_bytes();
  auto heap_after = ::mallinfo2().uordblks;
  auto live = brt.live();
  if (live != warm.size() + ids.size())
    throw std::runtime_error{"rss: " + std::to_string(live) + " live instances, expected "
                             + std::to_string(warm.size() + ids.size())};
  auto delta = after > before ? static_cast<double>(after - before) : 0.0;
  auto heap_delta =
    heap_after > heap_before ? static_cast<double>(heap_after - heap_before) : 0.0;
  auto n = static_cast<double>(ids.size());
  auto drain_s = brt.drain();
  return {delta / n, heap_delta / n, live, n / r.seconds, drain_s, brt.stop()};
}

// --- raw SQLite --------------------------------------------------------------------------


/// The baseline: one prepared INSERT into the journal's events table (schema created by
/// opening a sqlite_journal), transactions of `o.raw_txn_rows` rows, round-robin over
/// `o.raw_ids` streams (inserted first, untimed), the same event payloads, for
/// `o.seconds`. The same measurement as journal_bench's raw baseline.
sample raw_append(const fs::path& db_path, const options& o, const order_pool& pool) {
  open_journal(db_path, o.sync)->close();
  raw_db db{db_path, o.sync};
  auto ids = make_ids("item/raw-", o.raw_ids);
  auto stream_ids = lb::insert_streams(db, ids);
  raw_stmt begin{db, "BEGIN"};
  raw_stmt commit{db, "COMMIT"};
  raw_stmt insert{db, "INSERT INTO events (stream_id, seq, type, schema_version, payload,"
                      " tags, written_at) VALUES (?, ?, ?, ?, ?, NULL, ?)"};
  return measure([&] {
    std::uint64_t rows = 0;
    lb::stopwatch clock;
    double seconds = 0;
    do {
      begin.run();
      auto written_at = now_ms();
      for (std::size_t k = 0; k < o.raw_txn_rows; ++k, ++rows) {
        auto id_index = rows % ids.size();
        auto seq = rows / ids.size() + 1;
        insert.bind_int(1, stream_ids[id_index]);
        insert.bind_int(2, static_cast<std::int64_t>(seq));
        insert.bind_text(3, bench_item::order_placed::event_name);
        insert.bind_int(4, 1);
        insert.bind_text(5, pool.event_json(seq * 31 + id_index));
        insert.bind_int(6, written_at);
        insert.run();
      }
      commit.run();
      seconds = clock.elapsed_s();
    } while (seconds < o.seconds);
    return std::pair{rows, seconds};
  });
}

// --- the report ------------------------------------------------------------------------

struct series {
  std::string label;
  std::vector<sample> samples;
  double median_rate() const { return median_of(&sample::per_s); }
  double median_of(double sample::*field) const {
    std::vector<double> v;
    for (const auto& s : samples)
      if (!std::isnan(s.*field))
        v.push_back(s.*field);
    return v.empty() ? std::numeric_limits<double>::quiet_NaN() : lb::median(v);
  }
};

void add_rate_row(lb::result_table& table, const series& s, const series* baseline,
                  const std::string& unit) {
  std::vector<double> rates;
  for (const auto& x : s.samples)
    rates.push_back(x.per_s);
  auto [lo, hi] = std::minmax_element(rates.begin(), rates.end());
  table.add_row({s.label, lb::format_rate(s.median_rate()) + " " + unit,
                 lb::format_rate(*lo), lb::format_rate(*hi),
                 baseline ? fixed(s.median_rate() / baseline->median_rate(), 3) : "",
                 fixed(s.median_of(&sample::cpu_us), 2),
                 fixed(s.median_of(&sample::writes_per_txn), 1)});
}

template <class T>
double median_field(const std::vector<T>& v, double T::*field) {
  std::vector<double> x;
  for (const auto& s : v)
    x.push_back(s.*field);
  return x.empty() ? std::numeric_limits<double>::quiet_NaN() : lb::median(x);
}

int run(const options& o) {
  constexpr double none = std::numeric_limits<double>::quiet_NaN();
  order_pool pool{4096};
  lb::scratch_dir scratch{o.dir};
  std::cout << "actor bench: synchronous=" << o.sync_name << ", " << o.runs
            << " run(s) per measurement (medians), throughput " << o.seconds
            << " s each, event payload ~" << static_cast<int>(pool.average_event_bytes())
            << " bytes, " << std::thread::hardware_concurrency() << " cores, scratch "
            << scratch.path().string() << (o.quick ? " (quick)" : "") << "\n"
            << std::flush;

  // Raw baseline and command throughput: fresh database per run and configuration,
  // interleaved within a run so drift over time affects all alike.
  series raw_s{"raw INSERT, " + lb::format_count(o.raw_txn_rows) + "-row txns", {}};
  series ask_s{"ask(), 1 thread, 1 instance", {}};
  std::vector<series> cmd_s;
  for (auto n : o.instance_counts)
    cmd_s.push_back({"commands, " + lb::format_count(n)
                       + (n == 1 ? " instance" : " instances"),
                     {}});
  for (std::size_t r = 0; o.throughput && r < o.runs; ++r) {
    {
      auto dir = scratch.fresh("raw");
      raw_s.samples.push_back(raw_append(dir / "journal.db", o, pool));
      lb::scratch_dir::remove(dir);
    }
    {
      auto dir = scratch.fresh("ask");
      ask_s.samples.push_back(ask_throughput(dir / "journal.db", o, pool));
      lb::scratch_dir::remove(dir);
    }
    for (std::size_t c = 0; c < o.instance_counts.size(); ++c) {
      auto dir = scratch.fresh("commands");
      cmd_s[c].samples.push_back(
        command_throughput(dir / "journal.db", o, pool, o.instance_counts[c]));
      lb::scratch_dir::remove(dir);
    }
    std::cout << "  throughput: run " << r + 1 << "/" << o.runs << " done\n" << std::flush;
  }

  // Recovery: one loaded database, a fresh runtime per run.
  std::vector<recovery_sample> rec_s;
  if (o.recovery) {
    auto dir = scratch.fresh("recovery");
    auto ids = make_ids("r", o.recovery_instances);
    lb::stopwatch clock;
    bulk_load(dir / "journal.db", pool, ids, o.recovery_events);
    std::cout << "  loaded " << lb::format_count(ids.size() * o.recovery_events)
              << " events (" << lb::format_count(ids.size()) << " instances x "
              << o.recovery_events << ") in " << fixed(clock.elapsed_s(), 1) << " s\n"
              << std::flush;
    for (std::size_t r = 0; r < o.runs; ++r)
      rec_s.push_back(recovery(dir / "journal.db", o, ids, o.recovery_events));
    lb::scratch_dir::remove(dir);
    std::cout << "  recovery: done\n" << std::flush;
  }

  // Rehydration of single instances with long histories: fresh ids for every run.
  std::vector<rehydrate_sample> rh_s;
  if (o.rehydrate) {
    auto dir = scratch.fresh("rehydrate");
    auto ids = make_ids("h", o.rehydrate_samples * o.runs);
    bulk_load(dir / "journal.db", pool, ids, o.rehydrate_events);
    for (std::size_t r = 0; r < o.runs; ++r) {
      auto first = ids.begin() + static_cast<std::ptrdiff_t>(r * o.rehydrate_samples);
      auto last = first + static_cast<std::ptrdiff_t>(o.rehydrate_samples);
      std::vector<std::string> slice(first, last);
      auto samples = rehydrate(dir / "journal.db", o, slice, o.rehydrate_events);
      rh_s.insert(rh_s.end(), samples.begin(), samples.end());
    }
    lb::scratch_dir::remove(dir);
    std::cout << "  rehydration: done\n" << std::flush;
  }

  // Memory per idle instance.
  std::vector<rss_sample> rss_s;
  for (std::size_t r = 0; o.rss && r < o.runs; ++r) {
    auto dir = scratch.fresh("rss");
    rss_s.push_back(rss_per_instance(dir / "journal.db", o));
    lb::scratch_dir::remove(dir);
  }
  if (o.rss)
    std::cout << "  memory: done\n";
  std::cout << "\n";

  if (o.throughput) {
    lb::result_table table{
      {"measurement", "median", "min", "max", "vs raw", "cpu us/item", "writes/txn"}};
    add_rate_row(table, raw_s, nullptr, "ev");
    add_rate_row(table, ask_s, &raw_s, "cmd");
    for (const auto& s : cmd_s)
      add_rate_row(table, s, &raw_s, "cmd");
    table.print(std::cout);
    std::cout << "cpu us/item: process CPU (all threads) per event or command; when\n"
                 "1e6/median is far above it, the run waited for the disk or other processes.\n"
                 "Cores busy per thread name in the last run:\n";
    for (const auto* s : {&raw_s, &ask_s})
      std::cout << "  " << s->label << ": " << s->samples.back().threads << "\n";
    for (const auto& s : cmd_s)
      std::cout << "  " << s.label << ": " << s.samples.back().threads << "\n";
    std::cout << "\n";
  }

  auto recovery_eps = o.recovery ? median_field(rec_s, &recovery_sample::events_per_s) : none;
  auto rehydrate_ms = o.rehydrate ? median_field(rh_s, &rehydrate_sample::wall_ms) : none;
  auto rss_per = o.rss ? median_field(rss_s, &rss_sample::bytes_per_instance) : none;
  lb::result_table other{{"measurement", "median", "detail"}};
  if (o.recovery)
    other.add_row({"recovery, " + lb::format_count(o.recovery_instances) + " x "
                     + std::to_string(o.recovery_events) + " events",
                   lb::format_rate(recovery_eps) + " ev",
                   lb::format_rate(median_field(rec_s, &recovery_sample::instances_per_s))
                     + " instances, cpu "
                     + fixed(median_field(rec_s, &recovery_sample::cpu_us_per_event), 2)
                     + " us/event, stop() "
                     + fixed(median_field(rec_s, &recovery_sample::stop_s), 1)
                     + " s"});
  if (o.rehydrate) {
    std::vector<double> wall;
    for (const auto& s : rh_s)
      wall.push_back(s.wall_ms);
    auto [lo, hi] = std::minmax_element(wall.begin(), wall.end());
    other.add_row({"rehydrate 1 instance, " + lb::format_count(o.rehydrate_events) + " events",
                   fixed(rehydrate_ms, 2) + " ms",
                   "cpu " + fixed(median_field(rh_s, &rehydrate_sample::cpu_ms), 2)
                     + " ms, min " + fixed(*lo, 2) + ", max " + fixed(*hi, 2) + " ms, "
                     + std::to_string(rh_s.size()) + " samples"});
  }
  if (o.rss)
    other.add_row({"RSS per idle instance", fixed(rss_per, 0) + " B",
                   "heap in use "
                     + fixed(median_field(rss_s, &rss_sample::heap_bytes_per_instance), 0)
                     + " B; " + lb::format_count(o.rss_instances) + " activated at "
                     + lb::format_rate(median_field(rss_s, &rss_sample::activation_per_s))
                     + ", drain " + fixed(median_field(rss_s, &rss_sample::drain_s), 1)
                     + " s, stop() " + fixed(median_field(rss_s, &rss_sample::stop_s), 1)
                     + " s"});
  other.add_row({"  sizeof(stateful_actor<entity_actor_state>)",
                 std::to_string(sizeof(caf::stateful_actor<actors::entity_actor_state>)) + " B",
                 "of which entity_actor_state "
                   + std::to_string(sizeof(actors::entity_actor_state)) + " B"});
  other.print(std::cout);
  std::cout << "peak RSS " << lb::peak_rss_kib() / 1024 << " MiB\n\n";

  auto rate_of = [&](std::size_t n) {
    for (std::size_t c = 0; o.throughput && c < o.instance_counts.size(); ++c)
      if (o.instance_counts[c] == n)
        return cmd_s[c].median_rate();
    return none;
  };
  auto raw_eps = o.throughput ? raw_s.median_rate() : none;
  lb::json_summary json{"actors"};
  json.add("raw_append_eps", raw_eps, 0);
  json.add("cmd_per_s_1", rate_of(1), 0);
  json.add("cmd_per_s_100", rate_of(100), 0);
  json.add("cmd_per_s_10000", rate_of(10'000), 0);
  json.add("cmd_ratio_10000", rate_of(10'000) / raw_eps, 3);
  json.add("recovery_eps", recovery_eps, 0);
  json.add("rehydrate_1000_ms", rehydrate_ms, 2);
  json.add("rss_per_instance_bytes", rss_per, 0);
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
    std::cerr << "actor_bench: " << e.what() << "\n" << usage_text;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "actor_bench: " << e.what() << "\n";
    return 1;
  }
}
