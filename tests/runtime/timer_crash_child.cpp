// Child process of timer_crash_test: runs a longhaul runtime (real scheduler, real clock,
// SQLite file, synchronous=FULL) whose `pulse` instances set durable timers due within
// about a second and store one event per firing, until the parent SIGKILLs it; a final
// run lets every timer fire and stops cleanly.
//
// Usage: timer_crash_child --db PATH --wave W [--instances N] [--timers K]
//                          [--spread-ms S] [--follow-up-ms F] [--passivate-ms P]
//                          [--final 0|1] [--drain-timeout-ms MS]
// Each run asks every instance to plan waves 0..W (waves already planned are skipped, so
// a wave a killed run did not finish planning is planned by the next run). Planning wave w
// stores "pulse.wave_planned" and sets timers "w<w>t<k>" (k < K) due 20 + (i*K + k)*S/(N*K)
// ms later (instance i); when "w<w>t<k>" fires it stores "pulse.fired" and sets the
// follow-up timer "w<w>f<k>" due F ms later, in the same atomic write; a follow-up firing
// stores "pulse.fired" only. So every (instance, timer) must fire exactly once.
// stdout protocol: "ready" once the runtime started, "planned" when every instance
// acknowledged the plan; in a final run then "drained <ms>" when no timer is left and
// "done" after a clean stop. Exit codes: 0 clean end, 2 bad arguments, 3 start failed,
// 4 a plan failed, 5 timers left after the drain timeout.

// GCC 12 with -fsanitize=address reports a false -Wmaybe-uninitialized inside
// boost::json::value_to for described structs holding vectors (pulse_state).
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "runtime/runtime.hpp"

#include <boost/describe.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include <unistd.h>

namespace pulses {

/// Plans waves 0..upto_wave of instance `index` (of `instances`) that are not planned yet.
struct plan {
  static constexpr auto command_name = "plan";
  std::int64_t upto_wave = 0;
  std::int64_t index = 0;
  std::int64_t instances = 1;
  std::int64_t timers = 1;
  std::int64_t spread_ms = 0;
  std::int64_t follow_up_ms = 0;
};
/// The timer command. `follow_up` (if non-empty) is set `follow_up_ms` after it fired.
struct fire {
  static constexpr auto command_name = "fire";
  std::string timer;
  std::string follow_up;
  std::int64_t follow_up_ms = 0;
  std::int64_t late_by_ms = 0;  // filled in by the scheduler
};
BOOST_DESCRIBE_STRUCT(plan, (), (upto_wave, index, instances, timers, spread_ms, follow_up_ms))
BOOST_DESCRIBE_STRUCT(fire, (), (timer, follow_up, follow_up_ms, late_by_ms))

struct wave_planned {
  static constexpr auto event_name = "pulse.wave_planned";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t wave = 0;
  std::int64_t timers = 0;
};
struct fired {
  static constexpr auto event_name = "pulse.fired";
  static constexpr std::uint32_t schema_version = 1;
  std::string timer;
  std::int64_t late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(wave_planned, (), (wave, timers))
BOOST_DESCRIBE_STRUCT(fired, (), (timer, late_by_ms))

struct pulse_state {
  std::vector<std::int64_t> planned_waves;
  std::int64_t firings = 0;
};
BOOST_DESCRIBE_STRUCT(pulse_state, (), (planned_waves, firings))

struct pulse {
  static constexpr auto type_name = "pulse";
  using state = pulse_state;
  using command = std::variant<plan, fire>;
  using event = std::variant<wave_planned, fired>;

  static longhaul::decision<event> decide(const state& s, const command& c) {
    longhaul::decision<event> d;
    if (auto* p = std::get_if<plan>(&c)) {
      auto slots = std::max<std::int64_t>(1, p->instances * p->timers);
      for (std::int64_t w = 0; w <= p->upto_wave; ++w) {
        if (std::find(s.planned_waves.begin(), s.planned_waves.end(), w)
            != s.planned_waves.end())
          continue;
        d.emit(wave_planned{w, p->timers});
        for (std::int64_t k = 0; k < p->timers; ++k) {
          auto prefix = "w" + std::to_string(w);
          auto offset = 20 + (p->index * p->timers + k) * p->spread_ms / slots;
          d.set_timer_after(prefix + "t" + std::to_string(k), std::chrono::milliseconds{offset},
                            fire{prefix + "t" + std::to_string(k), prefix + "f" + std::to_string(k),
                                 p->follow_up_ms, 0});
        }
      }
      return d;
    }
    const auto& f = std::get<fire>(c);
    d.emit(fired{f.timer, f.late_by_ms});
    if (!f.follow_up.empty())
      d.set_timer_after(f.follow_up, std::chrono::milliseconds{f.follow_up_ms},
                        fire{f.follow_up, "", 0, 0});
    return d;
  }

  static void apply(state& s, const event& e) {
    if (auto* p = std::get_if<wave_planned>(&e))
      s.planned_waves.push_back(p->wave);
    else
      ++s.firings;
  }
};

}  // namespace pulses

namespace {

struct options {
  std::string db;
  std::uint64_t wave = 0;
  std::uint64_t instances = 200;
  std::uint64_t timers = 2;
  std::uint64_t spread_ms = 400;
  std::uint64_t follow_up_ms = 50;
  std::uint64_t passivate_ms = 250;
  std::uint64_t final_run = 0;
  std::uint64_t drain_timeout_ms = 60000;
};

[[noreturn]] void die(int code, const std::string& what) {
  std::fprintf(stderr, "timer_crash_child: %s\n", what.c_str());
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
    std::uint64_t* number = flag == "--wave"               ? &opts.wave
                            : flag == "--instances"        ? &opts.instances
                            : flag == "--timers"           ? &opts.timers
                            : flag == "--spread-ms"        ? &opts.spread_ms
                            : flag == "--follow-up-ms"     ? &opts.follow_up_ms
                            : flag == "--passivate-ms"     ? &opts.passivate_ms
                            : flag == "--final"            ? &opts.final_run
                            : flag == "--drain-timeout-ms" ? &opts.drain_timeout_ms
                                                           : nullptr;
    if (number == nullptr)
      die(2, "unknown option " + std::string{flag});
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), *number);
    if (ec != std::errc{} || end != value.data() + value.size())
      die(2, "option " + std::string{flag} + " needs a number, got '" + std::string{value} + "'");
  }
  if (opts.db.empty())
    die(2, "--db is required");
  if (opts.instances == 0 || opts.instances > 100000 || opts.timers == 0 || opts.timers > 100)
    die(2, "--instances must be 1..100000 and --timers 1..100");
  if (opts.final_run > 1)
    die(2, "--final must be 0 or 1");
  return opts;
}

std::string instance_id(std::uint64_t i) { return "p" + std::to_string(i); }

/// Asks every instance to plan waves 0..opts.wave, from a few threads at once (so that
/// the journal's group commit batches the writes).
void plan_all(longhaul::runtime& rt, const options& opts) {
  constexpr std::uint64_t threads = 8;
  std::vector<std::thread> workers;
  for (std::uint64_t t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (auto i = t; i < opts.instances; i += threads) {
        pulses::plan p{static_cast<std::int64_t>(opts.wave), static_cast<std::int64_t>(i),
                       static_cast<std::int64_t>(opts.instances),
                       static_cast<std::int64_t>(opts.timers),
                       static_cast<std::int64_t>(opts.spread_ms),
                       static_cast<std::int64_t>(opts.follow_up_ms)};
        auto r = rt.ask("pulse", instance_id(i), p);
        if (!r)
          die(4, "plan " + instance_id(i) + " failed: "
                   + longhaul::persistence::describe(r.error()));
      }
    });
  for (auto& w : workers)
    w.join();
}

/// Final run: waits (bounded) until no timer is stored any more.
void wait_until_no_timers(longhaul::runtime& rt, std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto left = rt.journal().timers_due(std::numeric_limits<longhaul::time_ms>::max(), 1);
    if (!left)
      die(5, "timers_due failed: " + longhaul::persistence::describe(left.error()));
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
    if (left->empty()) {
      say("drained " + std::to_string(elapsed.count()));
      return;
    }
    if (elapsed > timeout) {
      // Where the instance owning the first leftover timer stands, for the report.
      auto who = left->front().persistence_id.substr(left->front().persistence_id.find('/') + 1);
      auto st = rt.status("pulse", who);
      auto where = st ? "mode " + st->mode + ", " + std::to_string(st->queued_commands)
                          + " queued, highest seq " + std::to_string(st->highest_seq)
                      : longhaul::persistence::describe(st.error());
      die(5, "timers are still stored after " + std::to_string(elapsed.count())
               + " ms (first: " + left->front().persistence_id + " '" + left->front().name
               + "' due " + std::to_string(left->front().due_ms) + ", now "
               + std::to_string(rt.now()) + "; instance: " + where + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  longhaul::runtime_config cfg;
  cfg.storage = longhaul::storage_kind::sqlite;
  cfg.database_path = opts.db;
  cfg.sync = longhaul::persistence::sync_mode::full;
  cfg.passivate_after = std::chrono::milliseconds{opts.passivate_ms};
  const char* log_level = std::getenv("LONGHAUL_TEST_LOG");
  cfg.log_level = log_level != nullptr ? log_level : "warn";
  longhaul::runtime rt{cfg};
  rt.register_entity<pulses::pulse>();
  if (auto err = rt.start())
    die(3, "start failed: " + longhaul::persistence::describe(err));
  say("ready");
  plan_all(rt, opts);
  say("planned");
  if (opts.final_run == 1) {
    wait_until_no_timers(rt, std::chrono::milliseconds{opts.drain_timeout_ms});
    rt.stop();
    say("done");
    return 0;
  }
  for (;;)  // until the parent kills the process
    std::this_thread::sleep_for(std::chrono::seconds{1});
}
