// The timer benchmark, run by `scripts/bench.sh timers`: 1M durable timers armed through
// entities, restart on the file -> first firing stored, lateness while 10,000 timers/s
// come due on the real clock, peak RSS growth.
#include "bench/bench_report.hpp"
#include "persistence/persistence_error.hpp"
#include "persistence/sqlite_journal.hpp"
#include "runtime/runtime.hpp"

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <sqlite3.h>

#include <malloc.h>
#include <stdlib.h>
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
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

// --- the entity ------------------------------------------------------------------------
// An alarm instance arms named timers; each firing delivers `ring` (the scheduler fills
// in late_by_ms), which stores one `rang` event with the due time and the lateness.

namespace bench_alarm {

struct arm {
  static constexpr auto command_name = "arm";
  std::string name;
  std::int64_t due_ms = 0;
};
struct ring {
  static constexpr auto command_name = "ring";
  std::string name;
  std::int64_t due_ms = 0;
  std::int64_t late_by_ms = 0;  // filled in by the scheduler when the timer fires
};
BOOST_DESCRIBE_STRUCT(arm, (), (name, due_ms))
BOOST_DESCRIBE_STRUCT(ring, (), (name, due_ms, late_by_ms))

struct armed {
  static constexpr auto event_name = "bench_alarm.armed";
  static constexpr std::uint32_t schema_version = 1;
  std::string name;
  std::int64_t due_ms = 0;
};
struct rang {
  static constexpr auto event_name = "bench_alarm.rang";
  static constexpr std::uint32_t schema_version = 1;
  std::string name;
  std::int64_t due_ms = 0;
  std::int64_t late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(armed, (), (name, due_ms))
BOOST_DESCRIBE_STRUCT(rang, (), (name, due_ms, late_by_ms))

struct alarm_state {
  std::uint64_t armed = 0;
  std::uint64_t rang = 0;
};
BOOST_DESCRIBE_STRUCT(alarm_state, (), (armed, rang))

/// Bench instrumentation, not a pattern to copy: apply() tells the bench when the first
/// `rang` event was stored (apply runs only after the journal stored it). It does not
/// touch the entity's state, so decide and apply stay deterministic.
struct ring_probe {
  static inline std::atomic<std::int64_t> first_rang_ns{0};  ///< steady clock; 0: none yet
  static inline std::atomic<std::uint64_t> rang_applied{0};

  static std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
  }
  static void reset() {
    first_rang_ns = 0;
    rang_applied = 0;
  }
  static void on_rang() {
    std::int64_t none = 0;
    first_rang_ns.compare_exchange_strong(none, steady_ns());
    rang_applied.fetch_add(1, std::memory_order_relaxed);
  }
};

struct alarm {
  static constexpr auto type_name = "alarm";
  using state = alarm_state;
  using command = std::variant<arm, ring>;
  using event = std::variant<armed, rang>;

  static longhaul::decision<event> decide(const state&, const command& c) {
    if (const auto* a = std::get_if<arm>(&c)) {
      longhaul::decision<event> d{armed{a->name, a->due_ms}};
      d.set_timer(a->name, a->due_ms, ring{a->name, a->due_ms, 0});
      return d;
    }
    const auto& r = std::get<ring>(c);
    return rang{r.name, r.due_ms, r.late_by_ms};
  }

  static void apply(state& s, const event& e) {
    if (std::holds_alternative<armed>(e)) {
      ++s.armed;
    } else {
      ++s.rang;
      ring_probe::on_rang();
    }
  }
};

}  // namespace bench_alarm

namespace {

using namespace longhaul;
using persistence::sync_mode;
using persistence::time_ms;
namespace lb = longhaul::bench;
namespace fs = std::filesystem;

// --- options -------------------------------------------------------------------------

constexpr const char* usage_text =
  "usage: timer_bench [--quick] [--sync full|normal|off] [--dir PATH] [--timers N]\n"
  "                   [--instances N] [--rate R] [--seconds S] [--journal-timers N]\n"
  "  --quick            small sizes, for smoke tests (20,000 timers, 1,000/s for 2 s)\n"
  "  --sync MODE        synchronous mode of the journal (default full)\n"
  "  --dir PATH         parent of the scratch directory (default: the system temp dir)\n"
  "  --timers N         timers scheduled through the runtime (default 1,000,000)\n"
  "  --instances N      alarm instances they are spread over (default: one per timer)\n"
  "  --rate R           timers per second that come due in the lateness phase (10,000)\n"
  "  --seconds S        length of the lateness phase (default 8)\n"
  "  --journal-timers N timers written straight to a journal, for comparison (200,000;\n"
  "                     0 skips it)\n"
  "  --passivate-ms N   idle time before an instance is passivated (default 1000)\n"
  "  --max-recoveries N runtime_config::max_concurrent_recoveries (default: the\n"
  "                     runtime's, 50)\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  bool quick = false;
  sync_mode sync = sync_mode::full;
  std::string sync_name = "full";
  std::string dir;
  std::uint64_t timers = 1'000'000;
  std::uint64_t instances = 0;  // 0: one per timer
  double rate = 10'000;
  double seconds = 8;
  std::uint64_t journal_timers = 200'000;
  std::uint64_t restart_timers = 10;  // due when the second runtime starts
  std::size_t drivers = 4;
  std::size_t window_per_driver = 250;  // commands in flight per driver actor
  /// Passivation in both runtimes: instances that armed or handled their timer leave
  /// memory, as they would in a service holding far more instances than it keeps live.
  std::chrono::milliseconds passivate_after{1000};
  std::size_t max_recoveries = runtime_config{}.max_concurrent_recoveries;
};

options parse_options(int argc, char** argv) {
  options o;
  bool timers_given = false;
  bool rate_given = false;
  bool seconds_given = false;
  bool journal_given = false;
  auto count_arg = [](std::string_view flag, std::string_view text, std::uint64_t min,
                      std::uint64_t max) {
    auto n = lb::parse_count(text);
    if (!n || *n < min || *n > max)
      throw usage_error{std::string{flag} + " must be a whole number in " + std::to_string(min)
                        + ".." + std::to_string(max) + ", not '" + std::string{text} + "'"};
    return *n;
  };
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
    } else if (arg == "--timers") {
      o.timers = count_arg(arg, value(), 1'000, 100'000'000);
      timers_given = true;
    } else if (arg == "--instances") {
      o.instances = count_arg(arg, value(), 1, 100'000'000);
    } else if (arg == "--rate") {
      auto text = value();
      auto r = lb::parse_positive(text);
      if (!r || *r < 1 || *r > 1'000'000)
        throw usage_error{"--rate must be a number in 1..1000000, not '" + std::string{text}
                          + "'"};
      o.rate = *r;
      rate_given = true;
    } else if (arg == "--seconds") {
      auto text = value();
      auto s = lb::parse_positive(text);
      if (!s || *s > 3600)
        throw usage_error{"--seconds must be a positive number up to 3600, not '"
                          + std::string{text} + "'"};
      o.seconds = *s;
      seconds_given = true;
    } else if (arg == "--passivate-ms") {
      o.passivate_after = std::chrono::milliseconds{
        static_cast<std::int64_t>(count_arg(arg, value(), 1, 86'400'000))};
    } else if (arg == "--max-recoveries") {
      o.max_recoveries = count_arg(arg, value(), 1, 1'000'000);
    } else if (arg == "--journal-timers") {
      o.journal_timers = count_arg(arg, value(), 0, 100'000'000);
      journal_given = true;
    } else {
      throw usage_error{"unknown argument '" + std::string{arg} + "'"};
    }
  }
  if (o.quick) {
    if (!timers_given)
      o.timers = 20'000;
    if (!rate_given)
      o.rate = 1'000;
    if (!seconds_given)
      o.seconds = 2;
    if (!journal_given)
      o.journal_timers = 10'000;
  }
  if (o.instances == 0)
    o.instances = o.timers;
  if (o.instances > o.timers)
    throw usage_error{"--instances must not exceed --timers"};
  auto lateness = static_cast<std::uint64_t>(std::llround(o.rate * o.seconds));
  if (lateness + o.restart_timers >= o.timers)
    throw usage_error{"--rate x --seconds (" + std::to_string(lateness)
                      + " timers) must leave room within --timers"};
  return o;
}

// --- helpers ---------------------------------------------------------------------------

time_ms now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string fixed(double value, int decimals) {
  if (!std::isfinite(value))
    return "n/a";
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

/// Bytes malloc has handed out and not yet got back (all arenas): RSS minus this is
/// memory malloc keeps for reuse (fragmentation) or that was never malloc'd.
double heap_in_use_mib() {
  return static_cast<double>(::mallinfo2().uordblks) / (1024.0 * 1024.0);
}

/// Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0: "5" > clear_refs).
/// Returns false when the kernel refuses; the peak then covers the whole process.
bool reset_peak_rss() {
  std::ofstream f{"/proc/self/clear_refs"};
  if (!f)
    return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

constexpr double mib = 1024.0 * 1024.0;

/// One-minute load average of the machine ("n/a" if unknown): the lateness figures
/// depend on whether the bench had the cores to itself.
std::string load_average() {
  double load[1] = {0};
  if (::getloadavg(load, 1) != 1)
    return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", load[0]);
  return buf;
}

/// Value at fraction `q` (0..1) of the sorted samples, nearest rank; NaN when empty.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty())
    return std::numeric_limits<double>::quiet_NaN();
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

/// "alarm" instance id of `instance` ("a0000042").
std::string instance_id(std::uint64_t instance) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "a%07llu", static_cast<unsigned long long>(instance));
  return buf;
}

// --- the schedule ----------------------------------------------------------------------
// Timer slot s belongs to instance s % instances and is named "t<s / instances>".
// Slots [0, far) are due days ahead; [far, far + restart) are due when the second
// runtime starts; the rest come due at `rate` per second in the lateness phase.

struct slot_plan {
  std::uint64_t instances = 1;
  std::uint64_t far = 0;
  std::uint64_t restart = 0;
  std::uint64_t lateness = 0;
  time_ms far_base_ms = 0;     ///< far slots are due in [far_base, far_base + 30 days)
  time_ms restart_due_ms = 0;  ///< set before the restart and lateness slots are armed
  time_ms lateness_start_ms = 0;
  double rate = 1;

  std::uint64_t total() const { return far + restart + lateness; }

  bench_alarm::arm arm_of(std::uint64_t s) const {
    bench_alarm::arm a;
    a.name = "t" + std::to_string(s / instances);
    if (s < far) {
      // A fixed pseudo-random spread over 30 days: index inserts land all over the index.
      constexpr std::uint64_t span_ms = 30ull * 24 * 3600 * 1000;
      a.due_ms = far_base_ms + static_cast<time_ms>((s * 2'654'435'761ull) % span_ms);
    } else if (s < far + restart) {
      a.due_ms = restart_due_ms;
    } else {
      auto k = static_cast<double>(s - far - restart);
      a.due_ms = lateness_start_ms + static_cast<time_ms>(std::floor(k * 1000.0 / rate));
    }
    return a;
  }

  actors::command_envelope envelope(std::uint64_t s) const {
    return runtime::envelope(bench_alarm::alarm::type_name, instance_id(s % instances),
                             arm_of(s));
  }
};

// --- driver actors ---------------------------------------------------------------------
// Driver actors take slot numbers from a shared counter and ask the supervisor to arm
// them (request/then), each with a bounded number of commands in flight.

using go_atom = caf::atom_constant<caf::atom("benchgo")>;

struct arm_job {
  caf::actor supervisor;
  const slot_plan* plan = nullptr;
  std::uint64_t end = 0;  ///< slots [next, end) are still to be armed
  std::size_t window = 1;
  std::atomic<std::uint64_t> next{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<bool> failed{false};
  std::mutex mtx;
  std::condition_variable done;
  std::size_t active = 0;   // guarded by mtx
  std::string first_error;  // guarded by mtx
};

struct driver_state {
  static inline const char* name = "bench.timer_driver";
  std::shared_ptr<arm_job> job;
  std::size_t in_flight = 0;
};

using driver_ptr = caf::stateful_actor<driver_state>*;

/// Records the first failure; the drivers stop issuing new commands.
void driver_fail(arm_job& job, std::string what) {
  std::lock_guard guard{job.mtx};
  if (job.first_error.empty())
    job.first_error = std::move(what);
  job.failed = true;
}

/// Quits once nothing of this driver is in flight; the last driver wakes the waiter.
void driver_quit_if_idle(driver_ptr self) {
  auto& job = *self->state.job;
  if (self->state.in_flight != 0)
    return;
  {
    std::lock_guard guard{job.mtx};
    if (--job.active == 0)
      job.done.notify_all();
  }
  self->quit();
}

void driver_issue_next(driver_ptr self) {
  auto& job = *self->state.job;
  if (job.failed)
    return;
  auto s = job.next.fetch_add(1, std::memory_order_relaxed);
  if (s >= job.end)
    return;
  ++self->state.in_flight;
  // No CAF request timeout: CAF 0.17 keeps each in its clock until it expires, answered
  // or not, which would count in the RSS measured; arm_slots() watches for stalls.
  self->request(job.supervisor, caf::infinite, job.plan->envelope(s))
    .then(
      [self, s](actors::command_reply& r) {
        auto& job = *self->state.job;
        --self->state.in_flight;
        if (r.highest_seq == 0)
          driver_fail(job, "arming slot " + std::to_string(s) + " stored nothing");
        job.completed.fetch_add(1, std::memory_order_relaxed);
        driver_issue_next(self);
        driver_quit_if_idle(self);
      },
      [self, s](caf::error& err) {
        --self->state.in_flight;
        driver_fail(*self->state.job,
                    "arming slot " + std::to_string(s) + ": " + persistence::describe(err));
        driver_quit_if_idle(self);
      });
}

caf::behavior driver(driver_ptr self, std::shared_ptr<arm_job> job) {
  self->state.job = std::move(job);
  return {
    [self](go_atom) {
      for (std::size_t i = 0; i < self->state.job->window; ++i)
        driver_issue_next(self);
      driver_quit_if_idle(self);
    },
  };
}

/// Arms slots [begin, end) through `rt` and waits; prints progress every 10 s. Returns the
/// seconds it took. Throws with the first failure.
double arm_slots(runtime& rt, const slot_plan& plan, std::uint64_t begin, std::uint64_t end,
                 const options& o) {
  auto job = std::make_shared<arm_job>();
  job->supervisor = rt.supervisor();
  job->plan = &plan;
  job->end = end;
  job->next = begin;
  job->window = o.window_per_driver;
  job->active = o.drivers;
  lb::stopwatch clock;
  for (std::size_t d = 0; d < o.drivers; ++d)
    caf::anon_send(rt.system().spawn(driver, job), go_atom::value);
  std::unique_lock guard{job->mtx};
  auto last_completed = job->completed.load();
  lb::stopwatch since_progress;
  while (!job->done.wait_for(guard, std::chrono::seconds{10}, [&] { return job->active == 0; })) {
    auto n = job->completed.load();
    if (n != last_completed) {
      last_completed = n;
      since_progress.restart();
    } else if (since_progress.elapsed_s() > 300) {
      throw std::runtime_error{"no arm command answered for 5 minutes"};
    }
    std::cout << "    armed " << lb::format_count(n) << " of " << lb::format_count(end - begin)
              << " (" << lb::format_rate(static_cast<double>(n) / clock.elapsed_s()) << ", "
              << "RSS " << rss_bytes() / (1024 * 1024) << " MiB)\n"
              << std::flush;
  }
  if (!job->first_error.empty())
    throw std::runtime_error{"arming failed: " + job->first_error};
  if (job->completed != end - begin)
    throw std::runtime_error{"arming: " + std::to_string(job->completed.load()) + " of "
                             + std::to_string(end - begin) + " commands completed"};
  return clock.elapsed_s();
}

// --- runtime, journal, raw checks ------------------------------------------------------

std::unique_ptr<runtime> start_runtime(const fs::path& db, const options& o) {
  runtime_config cfg;
  cfg.database_path = db.string();
  cfg.sync = o.sync;
  cfg.passivate_after = o.passivate_after;
  cfg.max_concurrent_recoveries = o.max_recoveries;
  cfg.log_level = "warn";
  cfg.ask_timeout = std::chrono::minutes{5};
  cfg.stop_timeout = std::chrono::minutes{5};
  auto rt = std::make_unique<runtime>(std::move(cfg));
  rt->register_entity<bench_alarm::alarm>();
  if (auto err = rt->start())
    throw std::runtime_error{"runtime start failed: " + persistence::describe(err)};
  return rt;
}

/// Read-only checks straight on the file (the journal API has no counts): number of
/// stored timers and the highest event position.
struct file_counts {
  std::uint64_t timers = 0;
  std::uint64_t max_position = 0;
};

file_counts count_on_file(const fs::path& db) {
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string msg = h ? sqlite3_errmsg(h) : "out of memory";
    sqlite3_close_v2(h);
    throw std::runtime_error{"cannot open '" + db.string() + "' read-only: " + msg};
  }
  auto scalar = [&](const char* sql) -> std::uint64_t {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, sql, -1, &st, nullptr) != SQLITE_OK) {
      std::string msg = sqlite3_errmsg(h);
      sqlite3_close_v2(h);
      throw std::runtime_error{std::string{sql} + ": " + msg};
    }
    std::uint64_t v = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
      v = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return v;
  };
  file_counts c;
  c.timers = scalar("SELECT count(*) FROM timers");
  c.max_position = scalar("SELECT coalesce(max(position), 0) FROM events");
  sqlite3_close_v2(h);
  return c;
}

/// A `rang` event read back from the journal.
struct ring_record {
  std::string instance;
  std::string name;
  time_ms due_ms = 0;
  time_ms late_by_ms = 0;   ///< what the scheduler reported (due -> delivery)
  time_ms written_at_ms = 0;  ///< journal commit time of the handling
};

std::vector<ring_record> rings_after(persistence::journal& j, std::uint64_t after_position) {
  std::vector<ring_record> out;
  for (;;) {
    auto page = j.read_all(after_position, 10'000, std::string{bench_alarm::alarm::type_name});
    if (!page)
      throw std::runtime_error{"read_all failed: " + persistence::describe(page.error())};
    if (page->empty())
      return out;
    for (const auto& ev : *page) {
      after_position = ev.position;
      if (ev.type != bench_alarm::rang::event_name)
        continue;
      auto r = boost::json::value_to<bench_alarm::rang>(boost::json::parse(ev.payload_json));
      out.push_back({ev.persistence_id, r.name, r.due_ms, r.late_by_ms, ev.written_at_ms});
    }
  }
}

/// Timers stored per second straight through the journal (no actors): one atomic write
/// per instance holding its `armed` event and its timer, `in_flight` writes outstanding
/// so the writer's group commit sees many at once. The storage ceiling for scheduling.
double journal_schedule_rate(const fs::path& db, const options& o) {
  persistence::sqlite_journal_config cfg;
  cfg.path = db.string();
  cfg.sync = o.sync;
  auto opened = persistence::sqlite_journal::open(std::move(cfg));
  if (!opened)
    throw std::runtime_error{"cannot open journal '" + db.string()
                             + "': " + persistence::describe(opened.error())};
  auto& j = **opened;
  slot_plan plan;
  plan.instances = o.journal_timers;
  plan.far = o.journal_timers;
  plan.far_base_ms = now_ms() + 24 * 3600 * 1000;
  constexpr std::size_t in_flight = 1000;
  std::mutex mtx;
  std::condition_variable cv;
  std::size_t pending = 0;
  std::string first_error;
  lb::stopwatch clock;
  for (std::uint64_t s = 0; s < o.journal_timers; ++s) {
    {
      std::unique_lock guard{mtx};
      cv.wait(guard, [&] { return pending < in_flight; });
      if (!first_error.empty())
        break;
      ++pending;
    }
    auto a = plan.arm_of(s);
    persistence::atomic_write w;
    w.persistence_id = actors::persistence_id_of(bench_alarm::alarm::type_name, instance_id(s));
    w.expected_seq = 1;
    w.events.push_back({bench_alarm::armed::event_name, bench_alarm::armed::schema_version,
                        boost::json::serialize(boost::json::value_from(
                          bench_alarm::armed{a.name, a.due_ms})),
                        {bench_alarm::alarm::type_name}});
    boost::json::object cmd;
    cmd["name"] = bench_alarm::ring::command_name;
    cmd["payload"] = boost::json::value_from(bench_alarm::ring{a.name, a.due_ms, 0});
    w.timers_to_set.push_back({a.name, a.due_ms, boost::json::serialize(cmd)});
    j.write(std::move(w), [&](caf::expected<persistence::write_result> r) {
      std::lock_guard guard{mtx};
      if (!r && first_error.empty())
        first_error = persistence::describe(r.error());
      --pending;
      cv.notify_all();
    });
  }
  j.flush();
  auto seconds = clock.elapsed_s();
  j.close();
  if (!first_error.empty())
    throw std::runtime_error{"journal scheduling failed: " + first_error};
  return static_cast<double>(o.journal_timers) / seconds;
}

// --- the run ---------------------------------------------------------------------------

int run(const options& o) {
  lb::scratch_dir scratch{o.dir};
  auto lateness = static_cast<std::uint64_t>(std::llround(o.rate * o.seconds));
  slot_plan plan;
  plan.instances = o.instances;
  plan.restart = o.restart_timers;
  plan.lateness = lateness;
  plan.far = o.timers - lateness - o.restart_timers;
  plan.rate = o.rate;
  std::cout << "timer bench: synchronous=" << o.sync_name << ", "
            << lb::format_count(o.timers) << " timers on " << lb::format_count(o.instances)
            << " instances (" << lb::format_count(plan.far) << " due in 1-31 days, "
            << plan.restart << " due at the restart, " << lb::format_count(lateness)
            << " due at " << lb::format_rate(o.rate) << " for " << o.seconds << " s), "
            << std::thread::hardware_concurrency() << " cores (load average " << load_average()
            << "), passivation after "
            << o.passivate_after.count() << " ms, " << o.max_recoveries
            << " concurrent recoveries, scratch " << scratch.path().string()
            << (o.quick ? " (quick)" : "") << "\n"
            << std::flush;
  auto dir = scratch.fresh("timers");
  auto db = dir / "journal.db";

  // 1. Schedule every timer through the runtime: one `arm` command per timer, each
  //    stored (event + timer row) before its reply.
  auto rt = start_runtime(db, o);
  ::malloc_trim(0);
  auto rss_base = rss_bytes();
  bool peak_reset = reset_peak_rss();
  plan.far_base_ms = now_ms() + 24 * 3600 * 1000;
  auto cpu_schedule = lb::process_cpu_s();
  std::cout << "  1. scheduling " << lb::format_count(plan.far) << " far timers\n"
            << std::flush;
  auto far_s = arm_slots(*rt, plan, 0, plan.far, o);
  // The rest are due relative to now: the restart slots once they are armed and the
  // runtime has been stopped (2.5 times the time arming them at the rate just seen
  // would take, plus 5 s), the lateness phase 5 s after that so that start-up and the
  // restart firings are over.
  auto far_rate = static_cast<double>(plan.far) / far_s;
  auto rest = plan.restart + plan.lateness;
  auto arm_rest_ms = static_cast<time_ms>(2500.0 * static_cast<double>(rest) / far_rate);
  plan.restart_due_ms = now_ms() + arm_rest_ms + 5000;
  plan.lateness_start_ms = plan.restart_due_ms + 5000;
  auto lateness_end_ms = plan.lateness_start_ms
                         + static_cast<time_ms>(std::ceil(static_cast<double>(lateness) * 1000.0 / o.rate));
  std::cout << "  2. scheduling " << lb::format_count(rest) << " restart and lateness timers\n"
            << std::flush;
  auto rest_s = arm_slots(*rt, plan, plan.far, plan.total(), o);
  if (now_ms() + 1000 > plan.restart_due_ms)
    throw std::runtime_error{"scheduling slowed down so much that the restart timers came "
                             "due before the runtime could be stopped; rerun on a quieter "
                             "machine"};
  auto schedule_s = far_s + rest_s;
  cpu_schedule = lb::process_cpu_s() - cpu_schedule;
  auto schedule_rate = static_cast<double>(plan.total()) / schedule_s;
  auto peak_schedule_kib = lb::peak_rss_kib();
  // SQLite's own allocations (page caches of the writer and reader connections,
  // statements), process-wide: how much of the RSS is the journal's configured cache.
  auto sqlite_peak_schedule = static_cast<double>(sqlite3_memory_highwater(1)) / mib;
  auto rss_after_schedule = rss_bytes();
  auto heap_after_schedule = heap_in_use_mib();
  lb::stopwatch stop_clock;
  rt->stop();
  rt.reset();
  auto stop_s = stop_clock.elapsed_s();
  auto heap_after_stop = heap_in_use_mib();
  auto before_restart = count_on_file(db);
  if (before_restart.timers != plan.total())
    throw std::runtime_error{"the file holds " + std::to_string(before_restart.timers)
                             + " timers, expected " + std::to_string(plan.total())};
  std::cout << "     stored " << lb::format_count(before_restart.timers) << " timers in "
            << fixed(schedule_s, 1) << " s; runtime stopped in " << fixed(stop_s * 1e3, 0)
            << " ms\n"
            << std::flush;

  // 2. Restart on the file once the restart slots are due; time start() -> first firing
  //    stored (the probe in apply()).
  ::malloc_trim(0);
  auto rss_restart_base = rss_bytes();
  auto heap_after_stop_trimmed = heap_in_use_mib();
  bool restart_on_time = now_ms() <= plan.restart_due_ms;
  while (now_ms() <= plan.restart_due_ms)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  if (now_ms() + 2000 > plan.lateness_start_ms)
    throw std::runtime_error{"stopping the first runtime took so long that the lateness "
                             "phase would begin before the restart"};
  bench_alarm::ring_probe::reset();
  bool peak_reset2 = peak_reset && reset_peak_rss();
  auto cpu_restart = lb::process_cpu_s();
  auto t0 = bench_alarm::ring_probe::steady_ns();
  rt = start_runtime(db, o);
  auto start_ms = static_cast<double>(bench_alarm::ring_probe::steady_ns() - t0) / 1e6;
  std::cout << "  3. restarted (start() took " << fixed(start_ms, 1) << " ms)\n" << std::flush;
  auto first_deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  while (bench_alarm::ring_probe::first_rang_ns == 0
         && std::chrono::steady_clock::now() < first_deadline)
    std::this_thread::sleep_for(std::chrono::microseconds{100});
  if (bench_alarm::ring_probe::first_rang_ns == 0)
    throw std::runtime_error{"no timer fired within 60 s of the restart"};
  auto first_fire_ms =
    static_cast<double>(bench_alarm::ring_probe::first_rang_ns - t0) / 1e6;
  std::cout << "     first firing stored " << fixed(first_fire_ms, 1) << " ms after start()\n"
            << std::flush;

  // 3. Lateness: wait until every timer due by the end of the phase was handled (its
  //    removal is stored with its `rang` event), then read the firings from the journal.
  std::cout << "  4. lateness phase: " << lb::format_count(lateness) << " timers due from "
            << fixed(static_cast<double>(plan.lateness_start_ms - now_ms()) / 1e3, 1)
            << " s from now\n"
            << std::flush;
  auto settle_deadline = std::chrono::steady_clock::now()
                         + std::chrono::milliseconds{lateness_end_ms - now_ms() + 120'000};
  std::uint64_t left = 1;
  for (unsigned tick = 1; std::chrono::steady_clock::now() < settle_deadline; ++tick) {
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
    if (tick % 10 == 0 && now_ms() >= plan.lateness_start_ms)
      std::cout << "    fired " << lb::format_count(bench_alarm::ring_probe::rang_applied)
                << " of " << lb::format_count(rest) << " (RSS " << rss_bytes() / (1024 * 1024)
                << " MiB)\n"
                << std::flush;
    if (now_ms() < lateness_end_ms)
      continue;
    auto due = rt->journal().timers_due(lateness_end_ms, 1);
    if (!due)
      throw std::runtime_error{"timers_due failed: " + persistence::describe(due.error())};
    left = due->size();
    if (left == 0)
      break;
  }
  auto settled_after_s = static_cast<double>(now_ms() - lateness_end_ms) / 1e3;
  cpu_restart = lb::process_cpu_s() - cpu_restart;
  auto load_after = load_average();
  auto peak_restart_kib = lb::peak_rss_kib();
  auto sqlite_peak_restart = static_cast<double>(sqlite3_memory_highwater(1)) / mib;
  auto rings = rings_after(rt->journal(), before_restart.max_position);
  rt->stop();
  rt.reset();
  if (left != 0)
    throw std::runtime_error{"timers due in the lateness phase were still pending 120 s after it"};
  auto after = count_on_file(db);

  // Checks: each restart and lateness timer fired exactly once, no far timer fired.
  std::vector<double> late_restart;
  std::vector<double> late_sched;
  std::vector<double> late_commit;
  std::vector<std::string> seen;
  time_ms last_commit_ms = 0;
  for (const auto& r : rings) {
    last_commit_ms = std::max(last_commit_ms, r.written_at_ms);
    seen.push_back(r.instance + "#" + r.name);
    if (r.due_ms < plan.lateness_start_ms) {
      late_restart.push_back(static_cast<double>(r.late_by_ms));
      continue;
    }
    late_sched.push_back(static_cast<double>(r.late_by_ms));
    late_commit.push_back(static_cast<double>(r.written_at_ms - r.due_ms));
  }
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end())
    throw std::runtime_error{"a timer fired twice"};
  if (late_restart.size() != plan.restart || late_sched.size() != plan.lateness)
    throw std::runtime_error{"fired " + std::to_string(late_restart.size()) + " restart and "
                             + std::to_string(late_sched.size()) + " lateness timers, expected "
                             + std::to_string(plan.restart) + " and "
                             + std::to_string(plan.lateness)};
  if (after.timers != plan.far)
    throw std::runtime_error{"after the run the file holds " + std::to_string(after.timers)
                             + " timers, expected the " + std::to_string(plan.far)
                             + " far ones"};
  std::sort(late_sched.begin(), late_sched.end());
  std::sort(late_commit.begin(), late_commit.end());
  std::sort(late_restart.begin(), late_restart.end());

  // RSS: the peak across both runtimes, against the RSS after the first start.
  auto peak_kib = peak_reset ? std::max(peak_schedule_kib, peak_restart_kib)
                             : lb::peak_rss_kib();
  auto rss_growth = (static_cast<double>(peak_kib) * 1024.0 - static_cast<double>(rss_base)) / mib;
  auto growth_schedule = (static_cast<double>(peak_schedule_kib) * 1024.0
                          - static_cast<double>(rss_base)) / mib;
  auto growth_restart = (static_cast<double>(peak_restart_kib) * 1024.0
                         - static_cast<double>(rss_restart_base)) / mib;
  lb::scratch_dir::remove(dir);

  // 4. For comparison: the same writes straight through the journal.
  double journal_rate = std::numeric_limits<double>::quiet_NaN();
  if (o.journal_timers > 0) {
    auto jdir = scratch.fresh("journal-only");
    journal_rate = journal_schedule_rate(jdir / "journal.db", o);
    lb::scratch_dir::remove(jdir);
  }
  std::cout << "\n";

  lb::result_table table{{"measurement", "value", "detail"}};
  table.add_row({"schedule through entities", lb::format_rate(schedule_rate) + " timers",
                 lb::format_count(plan.total()) + " arm commands in " + fixed(schedule_s, 1)
                   + " s, " + std::to_string(o.drivers * o.window_per_driver)
                   + " in flight, each stored durably before its reply"});
  if (o.journal_timers > 0)
    table.add_row({"schedule through the journal only",
                   lb::format_rate(journal_rate) + " timers",
                   lb::format_count(o.journal_timers)
                     + " atomic writes (event + timer), no actors, 1,000 in flight"});
  table.add_row({"runtime start() on the file", fixed(start_ms, 1) + " ms",
                 lb::format_count(before_restart.timers) + " timers stored"});
  table.add_row({"restart -> first firing stored", fixed(first_fire_ms, 1) + " ms",
                 std::string{restart_on_time ? "" : "restart began after the due time; "}
                   + "restart timers late by " + fixed(percentile(late_restart, 0.0), 0) + ".."
                   + fixed(percentile(late_restart, 1.0), 0) + " ms (includes the restart)"});
  table.add_row({"lateness p50 / p99 / max (scheduler)",
                 fixed(percentile(late_sched, 0.5), 0) + " / "
                   + fixed(percentile(late_sched, 0.99), 0) + " / "
                   + fixed(percentile(late_sched, 1.0), 0) + " ms",
                 "late_by_ms: due -> delivery to the instance, "
                   + lb::format_count(late_sched.size()) + " timers at "
                   + lb::format_rate(o.rate)});
  table.add_row({"lateness p50 / p99 / max (stored)",
                 fixed(percentile(late_commit, 0.5), 0) + " / "
                   + fixed(percentile(late_commit, 0.99), 0) + " / "
                   + fixed(percentile(late_commit, 1.0), 0) + " ms",
                 "due -> journal commit of the handling (activation, decide, write)"});
  table.add_row({"all lateness timers handled", fixed(settled_after_s, 1) + " s",
                 "after the last came due (polled every 200 ms)"});
  auto fire_span_s = static_cast<double>(last_commit_ms - plan.lateness_start_ms) / 1e3;
  table.add_row({"firings stored per second", lb::format_rate(static_cast<double>(lateness)
                                                               / fire_span_s),
                 "lateness timers / (last commit - first due); due at "
                   + lb::format_rate(o.rate)});
  table.add_row({"CPU per arm / per firing",
                 fixed(cpu_schedule * 1e6 / static_cast<double>(plan.total()), 0) + " / "
                   + fixed(cpu_restart * 1e6 / static_cast<double>(rest), 0) + " us",
                 "process CPU, all threads (firing: restart to the end of the phase); "
                 "load average now " + load_after});
  table.add_row({"RSS growth, peak", fixed(rss_growth, 1) + " MiB",
                 "over " + fixed(static_cast<double>(rss_base) / mib, 1)
                   + " MiB after the first start"
                   + (peak_reset ? "" : " (peak not resettable: whole process)")});
  table.add_row({"  while scheduling", fixed(growth_schedule, 1) + " MiB",
                 "RSS after scheduling " + fixed(static_cast<double>(rss_after_schedule) / mib, 1)
                   + " MiB; SQLite's allocations peaked at " + fixed(sqlite_peak_schedule, 1)
                   + " MiB"});
  table.add_row({"  heap in use (malloc)", fixed(heap_after_schedule, 1) + " MiB",
                 "after scheduling; " + fixed(heap_after_stop, 1)
                   + " MiB once the first runtime was stopped and destroyed (RSS then "
                   + fixed(static_cast<double>(rss_restart_base) / mib, 1) + " MiB, heap "
                   + fixed(heap_after_stop_trimmed, 1) + " MiB after malloc_trim)"});
  table.add_row({"  restart + lateness", peak_reset2 ? fixed(growth_restart, 1) + " MiB" : "n/a",
                 "over " + fixed(static_cast<double>(rss_restart_base) / mib, 1)
                   + " MiB before the restart; SQLite's allocations peaked at "
                   + fixed(sqlite_peak_restart, 1) + " MiB"});
  table.print(std::cout);
  std::cout << "\n";

  lb::json_summary json{"timers"};
  json.add("schedule_per_s", schedule_rate, 0);
  json.add("restart_to_first_fire_ms", first_fire_ms, 1);
  json.add("lateness_p50_ms", percentile(late_sched, 0.5), 1);
  json.add("lateness_p99_ms", percentile(late_sched, 0.99), 1);
  json.add("rss_growth_mb", rss_growth, 1);
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
    std::cerr << "timer_bench: " << e.what() << "\n" << usage_text;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "timer_bench: " << e.what() << "\n";
    return 1;
  }
}
