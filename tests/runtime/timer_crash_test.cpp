// Real crash test of durable timers: timer_crash_child runs a SQLite-backed runtime whose
// instances set timers due within about a second and store one event per firing; it is
// SIGKILLed at random moments (during start-up, while timers are due but not handled, after
// they were handled) and restarted; a final run lets every timer fire. Every timer must
// fire exactly once, none may be left, and no instance may have a gap in its events.
// Env: LONGHAUL_CRASH_SEED (kill timing), LONGHAUL_CRASH_KILLS (default 20).
#include "persistence/sqlite_journal.hpp"
#include "tests/crash_harness.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#ifndef LONGHAUL_TIMER_CRASH_CHILD
#  error "LONGHAUL_TIMER_CRASH_CHILD must name the timer_crash_child executable"
#endif

namespace {

using namespace longhaul::persistence;
namespace fs = std::filesystem;
using longhaul::testing::child_process;

constexpr std::uint64_t default_kills = 20;
constexpr std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t instances = 200;
constexpr std::uint64_t timers_per_wave = 2;  // each with a follow-up: 4 firings per wave
constexpr std::uint64_t spread_ms = 400;
constexpr std::uint64_t follow_up_ms = 50;

/// A numeric environment variable, or nullopt when unset. Malformed values fail the test.
std::optional<std::uint64_t> env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0')
    return std::nullopt;
  std::uint64_t value = 0;
  std::string_view sv{text};
  auto [end, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), value);
  if (ec != std::errc{} || end != sv.data() + sv.size())
    FAIL(name << " must be a non-negative integer, got '" << text << "'");
  return value;
}

/// A fresh directory under the system temp dir; kept for inspection if the test fails.
struct scratch_dir {
  fs::path path;

  explicit scratch_dir(const std::string& name) {
    path = fs::temp_directory_path() / ("longhaul_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }

  ~scratch_dir() {
    if (std::uncaught_exceptions() > 0) {
      std::cout << "kept " << path << " for inspection\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string instance_id(std::uint64_t i) { return "p" + std::to_string(i); }
std::string pid_of(std::uint64_t i) { return "pulse/" + instance_id(i); }

/// Field `key` of a JSON object text, or nullopt.
std::optional<boost::json::value> json_field(const std::string& json, std::string_view key) {
  boost::json::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec || !v.is_object() || !v.as_object().contains(key))
    return std::nullopt;
  return v.at(key);
}

// -- the model -------------------------------------------------------------------------

/// What the journal holds after the runs.
struct observation {
  std::uint64_t waves = 0;                            ///< waves 0..waves-1 were planned
  std::map<std::uint64_t, replay_result> journal;     ///< by instance index
  std::vector<timer_record> timers_left;
  std::vector<dead_letter_record> dead;
};

struct check_report {
  std::vector<std::string> problems;
  std::uint64_t firings = 0;
  std::int64_t max_late_by_ms = 0;

  void problem(std::string text) { problems.push_back(std::move(text)); }

  [[nodiscard]] bool reported(std::string_view text) const {
    return std::any_of(problems.begin(), problems.end(),
                       [&](const std::string& p) { return p.find(text) != std::string::npos; });
  }

  [[nodiscard]] std::string summary() const {
    std::string out = std::to_string(problems.size()) + " problem(s):";
    for (std::size_t i = 0; i < problems.size() && i < 25; ++i)
      out += "\n  " + problems[i];
    return out;
  }
};

/// Every instance has planned each wave exactly once and fired each of its timers
/// ("w<w>t<k>" and its follow-up "w<w>f<k>") exactly once, the follow-up after its timer;
/// its sequence numbers run 1..highest without gaps; no timer is left; no dead letters.
check_report check_model(const observation& obs) {
  check_report report;
  for (std::uint64_t i = 0; i < instances; ++i) {
    auto who = instance_id(i);
    auto it = obs.journal.find(i);
    if (it == obs.journal.end()) {
      report.problem(who + ": not in the journal");
      continue;
    }
    const auto& r = it->second;
    if (r.highest_seq != r.events.size())
      report.problem(who + ": highest_seq " + std::to_string(r.highest_seq) + " but "
                     + std::to_string(r.events.size()) + " events stored");
    std::map<std::uint64_t, std::vector<sequence_nr>> planned;  // wave -> seqs
    std::map<std::string, std::vector<sequence_nr>> fired;      // timer -> seqs
    for (std::size_t j = 0; j < r.events.size(); ++j) {
      const auto& ev = r.events[j];
      auto where = who + " seq " + std::to_string(ev.seq);
      if (ev.seq != j + 1) {
        report.problem(who + ": event " + std::to_string(j) + " has seq " + std::to_string(ev.seq)
                       + " (gap)");
        break;
      }
      if (ev.type == "pulse.wave_planned") {
        auto w = json_field(ev.payload_json, "wave");
        if (!w || !w->is_int64() || w->as_int64() < 0)
          report.problem(where + ": undecodable " + ev.payload_json);
        else
          planned[static_cast<std::uint64_t>(w->as_int64())].push_back(ev.seq);
      } else if (ev.type == "pulse.fired") {
        auto t = json_field(ev.payload_json, "timer");
        auto late = json_field(ev.payload_json, "late_by_ms");
        if (!t || !t->is_string() || !late || !late->is_int64()) {
          report.problem(where + ": undecodable " + ev.payload_json);
          continue;
        }
        fired[std::string{t->as_string()}].push_back(ev.seq);
        report.max_late_by_ms = std::max(report.max_late_by_ms, late->as_int64());
        ++report.firings;
      } else {
        report.problem(where + ": unexpected event '" + ev.type + "' " + ev.payload_json);
      }
    }
    std::set<std::string> expected;
    for (std::uint64_t w = 0; w < obs.waves; ++w) {
      auto p = planned.find(w);
      if (p == planned.end()) {
        report.problem(who + ": wave " + std::to_string(w) + " was never planned");
        continue;
      }
      if (p->second.size() != 1)
        report.problem(who + ": wave " + std::to_string(w) + " planned "
                       + std::to_string(p->second.size()) + " times");
      for (std::uint64_t k = 0; k < timers_per_wave; ++k) {
        auto timer = "w" + std::to_string(w) + "t" + std::to_string(k);
        auto follow = "w" + std::to_string(w) + "f" + std::to_string(k);
        expected.insert(timer);
        expected.insert(follow);
        for (const auto& name : {timer, follow}) {
          auto f = fired.find(name);
          if (f == fired.end())
            report.problem(who + ": timer '" + name + "' never fired");
          else if (f->second.size() != 1)
            report.problem(who + ": timer '" + name + "' fired " + std::to_string(f->second.size())
                           + " times");
        }
        auto ft = fired.find(timer);
        auto ff = fired.find(follow);
        if (ft != fired.end() && ff != fired.end() && ff->second.front() < ft->second.front())
          report.problem(who + ": follow-up '" + follow + "' fired before '" + timer + "'");
        if (ft != fired.end() && ft->second.front() < p->second.front())
          report.problem(who + ": timer '" + timer + "' fired before its wave was planned");
      }
    }
    for (const auto& [w, seqs] : planned)
      if (w >= obs.waves)
        report.problem(who + ": unexpected wave " + std::to_string(w) + " planned");
    for (const auto& [name, seqs] : fired)
      if (expected.count(name) == 0)
        report.problem(who + ": unexpected timer '" + name + "' fired");
  }
  for (const auto& [i, r] : obs.journal)
    if (i >= instances)
      report.problem("unexpected instance " + std::to_string(i));
  if (!obs.timers_left.empty())
    report.problem(std::to_string(obs.timers_left.size()) + " timers left (first: "
                   + obs.timers_left.front().persistence_id + " '"
                   + obs.timers_left.front().name + "')");
  if (!obs.dead.empty())
    report.problem(std::to_string(obs.dead.size()) + " dead letters (first: "
                   + obs.dead.front().message_id + ": " + obs.dead.front().reason + ")");
  return report;
}

// -- reading what the child left -------------------------------------------------------

std::unique_ptr<sqlite_journal> open_read_only(const fs::path& db, check_report& report) {
  sqlite_journal_config cfg;
  cfg.path = db.string();
  cfg.read_only = true;
  auto opened = sqlite_journal::open(std::move(cfg));
  if (!opened) {
    report.problem("opening the journal read-only failed: " + describe(opened.error()));
    return nullptr;
  }
  return std::move(*opened);
}

/// Reads the final journal into `obs`; checks that read_all holds exactly the replayed
/// events in strictly increasing positions.
void read_journal(const fs::path& db, observation& obs, check_report& report) {
  auto journal = open_read_only(db, report);
  if (!journal)
    return;
  std::uint64_t replayed = 0;
  for (std::uint64_t i = 0; i < instances; ++i) {
    auto r = journal->replay(pid_of(i), 1, max_sequence_nr, unlimited);
    if (!r) {
      report.problem("replay " + pid_of(i) + ": " + describe(r.error()));
      continue;
    }
    replayed += r->events.size();
    obs.journal[i] = std::move(*r);
  }
  auto all = journal->read_all(0, unlimited, std::nullopt);
  if (!all) {
    report.problem("read_all: " + describe(all.error()));
  } else {
    if (all->size() != replayed)
      report.problem("read_all returned " + std::to_string(all->size())
                     + " events, replay of the instances " + std::to_string(replayed));
    for (std::size_t i = 1; i < all->size(); ++i)
      if ((*all)[i].position <= (*all)[i - 1].position) {
        report.problem("read_all positions do not increase at index " + std::to_string(i));
        break;
      }
  }
  auto left = journal->timers_due(std::numeric_limits<time_ms>::max(), unlimited);
  if (!left)
    report.problem("timers_due: " + describe(left.error()));
  else
    obs.timers_left = std::move(*left);
  auto dead = journal->dead_letters(0, unlimited);
  if (!dead)
    report.problem("dead_letters: " + describe(dead.error()));
  else
    obs.dead = std::move(*dead);
}

time_ms wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// One chain of child runs on one journal, with the checks run between the kills.
struct crash_fixture {
  scratch_dir dir;
  fs::path db;
  std::uint64_t runs = 0;
  // Incremental check after each kill: the firings stored so far.
  std::uint64_t cursor = 0;
  std::set<std::pair<std::string, std::string>> fired;  // (persistence id, timer)

  explicit crash_fixture(const std::string& name) : dir(name), db(dir.path / "journal.db") {}

  /// Starts run number `runs`, which plans waves 0..wave.
  child_process start_child(std::uint64_t wave, bool final_run) {
    std::vector<std::string> args{"--db",           db.string(),
                                  "--wave",         std::to_string(wave),
                                  "--instances",    std::to_string(instances),
                                  "--timers",       std::to_string(timers_per_wave),
                                  "--spread-ms",    std::to_string(spread_ms),
                                  "--follow-up-ms", std::to_string(follow_up_ms),
                                  "--final",        final_run ? "1" : "0"};
    ++runs;
    return child_process::spawn(LONGHAUL_TIMER_CRASH_CHILD, args);
  }

  struct after_kill {
    bool inspected = true;            ///< false: the journal could not be opened read-only
    std::uint64_t new_firings = 0;
    std::uint64_t due_unhandled = 0;  ///< timers due before the kill, still stored
    std::uint64_t pending = 0;        ///< all stored timers
  };

  /// After a kill: no timer fired twice so far; counts what the run left. A child killed
  /// before "ready" may have been creating the journal: SQLite then leaves a hot rollback
  /// journal that only a writer can roll back, and a read-only open fails (the next run
  /// recovers it); with `killed_during_start` that is tolerated and nothing is inspected.
  after_kill check_after_kill(time_ms killed_at, bool killed_during_start,
                              const std::string& what) {
    after_kill out;
    check_report report;
    auto journal = open_read_only(db, report);
    if (!journal && killed_during_start) {
      std::cout << what << ": journal not inspectable (" << report.problems.front() << ")"
                << std::endl;
      out.inspected = false;
      return out;
    }
    if (journal) {
      auto fresh = journal->read_all(cursor, unlimited, std::nullopt);
      if (!fresh)
        report.problem("read_all: " + describe(fresh.error()));
      else
        for (const auto& ev : *fresh) {
          cursor = std::max(cursor, ev.position);
          if (ev.type != "pulse.fired")
            continue;
          auto t = json_field(ev.payload_json, "timer");
          if (!t || !t->is_string())
            report.problem("undecodable event " + ev.payload_json);
          else if (!fired.emplace(ev.persistence_id, std::string{t->as_string()}).second)
            report.problem(ev.persistence_id + " timer '" + std::string{t->as_string()}
                           + "' fired twice");
          else
            ++out.new_firings;
        }
      auto due = journal->timers_due(killed_at, unlimited);
      auto all = journal->timers_due(std::numeric_limits<time_ms>::max(), unlimited);
      if (!due || !all)
        report.problem("timers_due failed");
      else {
        out.due_unhandled = due->size();
        out.pending = all->size();
      }
    }
    INFO(what);
    INFO(report.summary());
    REQUIRE(report.problems.empty());
    return out;
  }
};

// -- forged journals: the checker itself must catch each kind of damage ------------------

event_record forged_event(std::uint64_t i, sequence_nr seq, std::string type,
                          boost::json::object payload) {
  event_record ev;
  ev.persistence_id = pid_of(i);
  ev.seq = seq;
  ev.type = std::move(type);
  ev.payload_json = boost::json::serialize(payload);
  return ev;
}

/// A journal in which every instance planned `waves` waves and fired every timer once.
observation perfect_world(std::uint64_t waves) {
  observation obs;
  obs.waves = waves;
  for (std::uint64_t i = 0; i < instances; ++i) {
    auto& r = obs.journal[i];
    auto add = [&](std::string type, boost::json::object payload) {
      r.events.push_back(forged_event(i, r.events.size() + 1, std::move(type), std::move(payload)));
    };
    for (std::uint64_t w = 0; w < waves; ++w) {
      add("pulse.wave_planned", {{"wave", w}, {"timers", timers_per_wave}});
      for (std::uint64_t k = 0; k < timers_per_wave; ++k)
        add("pulse.fired", {{"timer", "w" + std::to_string(w) + "t" + std::to_string(k)},
                            {"late_by_ms", 3}});
      for (std::uint64_t k = 0; k < timers_per_wave; ++k)
        add("pulse.fired", {{"timer", "w" + std::to_string(w) + "f" + std::to_string(k)},
                            {"late_by_ms", 0}});
    }
    r.highest_seq = r.events.size();
  }
  return obs;
}

}  // namespace

TEST_CASE("the timer crash checker reports lost, doubled and leftover timers and gaps",
          "[crash][timers]") {
  auto good = perfect_world(3);
  auto ok = check_model(good);
  INFO(ok.summary());
  REQUIRE(ok.problems.empty());
  CHECK(ok.firings == instances * 3 * timers_per_wave * 2);
  SECTION("a timer that fired twice") {
    auto obs = good;
    auto& r = obs.journal[7];
    r.events.push_back(forged_event(7, r.events.size() + 1, "pulse.fired",
                                    {{"timer", "w1t0"}, {"late_by_ms", 0}}));
    r.highest_seq = r.events.size();
    auto report = check_model(obs);
    CHECK(report.reported("p7: timer 'w1t0' fired 2 times"));
    CHECK(report.problems.size() == 1);
  }
  SECTION("a timer that never fired, and one left stored") {
    auto obs = good;
    auto& r = obs.journal[3];
    r.events.pop_back();  // w2f1
    r.highest_seq = r.events.size();
    obs.timers_left.push_back({pid_of(3), "w2f1", 5, "{}"});
    auto report = check_model(obs);
    CHECK(report.reported("p3: timer 'w2f1' never fired"));
    CHECK(report.reported("1 timers left"));
    CHECK(report.problems.size() == 2);
  }
  SECTION("a gap in the sequence numbers") {
    auto obs = good;
    obs.journal[9].events[4].seq = 6;
    auto report = check_model(obs);
    CHECK(report.reported("p9: event 4 has seq 6 (gap)"));
  }
  SECTION("a wave never planned, a follow-up before its timer, a stray timer") {
    auto obs = good;
    obs.waves = 4;
    std::swap(obs.journal[1].events[1].payload_json, obs.journal[1].events[3].payload_json);
    auto& r = obs.journal[2];
    r.events.push_back(forged_event(2, r.events.size() + 1, "pulse.fired",
                                    {{"timer", "w9t0"}, {"late_by_ms", 0}}));
    r.highest_seq = r.events.size();
    auto report = check_model(obs);
    INFO(report.summary());
    CHECK(report.reported("p0: wave 3 was never planned"));
    CHECK(report.reported("p1: follow-up 'w0f0' fired before 'w0t0'"));
    CHECK(report.reported("p2: unexpected timer 'w9t0' fired"));
  }
}

TEST_CASE("every durable timer fires exactly once across repeated SIGKILLs of the runtime, "
          "also when killed before or after the firing was handled",
          "[crash][timers]") {
  auto seed = env_number("LONGHAUL_CRASH_SEED").value_or(std::random_device{}());
  auto kills = env_number("LONGHAUL_CRASH_KILLS").value_or(default_kills);
  REQUIRE(kills > 0);
  std::cout << "timer crash test: seed " << seed << ", " << kills
            << " kills (LONGHAUL_CRASH_SEED / LONGHAUL_CRASH_KILLS)" << std::endl;
  auto started = std::chrono::steady_clock::now();
  crash_fixture fx{"timer_crash"};
  std::mt19937_64 rng{seed};
  std::uint64_t kills_before_ready = 0;
  std::uint64_t kills_with_due_unhandled = 0;
  std::uint64_t due_unhandled_total = 0;
  std::uint64_t kills_with_firings = 0;
  for (std::uint64_t i = 0; i < kills; ++i) {
    INFO("kill " << i << " (seed " << seed << ")");
    auto child = fx.start_child(i, false);
    std::chrono::milliseconds delay{0};
    auto choice = rng() % 6;
    if (choice == 0) {
      // During start(): opening the journal; the scheduler fires overdue timers at once.
      delay = std::chrono::milliseconds{rng() % 150};
    } else {
      REQUIRE(child.wait_for_line("ready", std::chrono::seconds{30}));
      // Right after start-up (overdue timers being handled, the new wave being planned) or
      // later, while this wave's timers come due and are handled.
      delay = choice <= 2 ? std::chrono::milliseconds{rng() % 40}
                          : std::chrono::milliseconds{40 + rng() % (spread_ms + 400)};
    }
    std::this_thread::sleep_for(delay);
    auto killed_at = wall_ms();
    child.kill();
    auto status = child.wait();
    INFO("child ended by " << status.describe() << "; stdout: " << child.output());
    REQUIRE(status.killed());
    bool was_ready = child.has_line("ready");
    kills_before_ready += was_ready ? 0 : 1;
    auto after = fx.check_after_kill(killed_at, !was_ready, "after kill " + std::to_string(i));
    kills_with_due_unhandled += after.due_unhandled > 0 ? 1 : 0;
    due_unhandled_total += after.due_unhandled;
    kills_with_firings += after.new_firings > 0 ? 1 : 0;
    std::cout << "kill " << i << " after " << delay.count() << " ms"
              << (was_ready ? "" : " (before ready)")
              << (child.has_line("planned") ? "" : " (before planned)") << ": "
              << after.new_firings << " firings stored, " << after.due_unhandled
              << " due but not handled, " << after.pending << " timers pending" << std::endl;
  }
  // The final run plans nothing new (every wave is planned by now, or here if a kill cut
  // planning short) and waits until every timer fired.
  auto child = fx.start_child(kills - 1, true);
  REQUIRE(child.wait_for_line("ready", std::chrono::seconds{30}));
  auto status = child.wait();
  INFO("final run ended by " << status.describe() << "; stdout: " << child.output());
  REQUIRE(status.exited);
  REQUIRE(status.exit_code == 0);
  REQUIRE(child.has_line("done"));
  check_report report;
  observation obs;
  obs.waves = kills;
  read_journal(fx.db, obs, report);
  auto model = check_model(obs);
  report.problems.insert(report.problems.end(), model.problems.begin(), model.problems.end());
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  std::string drained;
  if (auto pos = child.output().find("drained "); pos != std::string::npos)
    drained = child.output().substr(pos + 8, child.output().find('\n', pos) - pos - 8);
  std::cout << "timer crash test: " << kills << " kills (" << kills_before_ready
            << " before ready, " << kills_with_due_unhandled << " with " << due_unhandled_total
            << " due timers not yet handled, " << kills_with_firings
            << " after firings were handled); " << model.firings << " firings of "
            << instances * kills * timers_per_wave * 2 << " timers, max late by "
            << model.max_late_by_ms << " ms; final run drained in " << drained << " ms; "
            << elapsed.count() << " ms" << std::endl;
  INFO("seed " << seed << ", dir " << fx.dir.path);
  INFO(report.summary());
  REQUIRE(report.problems.empty());
  REQUIRE(model.firings == instances * kills * timers_per_wave * 2);
}
