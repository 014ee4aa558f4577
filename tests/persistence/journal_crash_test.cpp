// Real crash tests of the SQLite journal: journal_crash_child appends from many threads and
// is SIGKILLed at random moments; after each kill the journal must hold every acknowledged
// write, complete and contiguous, and pass PRAGMA integrity_check.
// Env: LONGHAUL_CRASH_SEED (reproduce a run), LONGHAUL_CRASH_KILLS (default 20).
#include "persistence/sqlite_journal.hpp"
#include "tests/crash_harness.hpp"

#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#ifndef LONGHAUL_CRASH_CHILD
#  error "LONGHAUL_CRASH_CHILD must name the journal_crash_child executable"
#endif

namespace {

using namespace longhaul::persistence;
namespace fs = std::filesystem;
using longhaul::testing::child_process;

constexpr std::uint64_t default_seed = 20240611;
constexpr std::uint64_t default_kills = 20;
constexpr std::uint64_t id_count = 300;  // persistence ids "crash-0" .. "crash-299"

/// A numeric environment variable, or `fallback` when unset. Malformed values fail the test.
std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0')
    return fallback;
  std::uint64_t value = 0;
  std::string_view sv{text};
  auto [end, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), value);
  if (ec != std::errc{} || end != sv.data() + sv.size())
    FAIL(name << " must be a non-negative integer, got '" << text << "'");
  return value;
}

/// A fresh directory under the system temp dir; removed unless the test is failing.
struct scratch_dir {
  fs::path path;

  explicit scratch_dir(const std::string& name) {
    path = fs::temp_directory_path()
           / ("longhaul_" + name + "_" + std::to_string(::getpid()));
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

/// One line of the ack log: a write the child saw acknowledged.
struct ack {
  std::string id;
  sequence_nr first = 0;
  std::uint64_t count = 0;
};

/// What a check found: the problems (empty = consistent) and what the journal holds.
struct check_report {
  std::vector<std::string> problems;
  std::uint64_t acked_writes = 0;
  std::uint64_t stored_writes = 0;
  std::uint64_t stored_events = 0;
  bool db_existed = false;

  void problem(std::string text) { problems.push_back(std::move(text)); }

  /// The first problems, one per line, for a failure message.
  [[nodiscard]] std::string summary() const {
    std::string out = std::to_string(problems.size()) + " problem(s):";
    for (std::size_t i = 0; i < problems.size() && i < 25; ++i)
      out += "\n  " + problems[i];
    return out;
  }
};

std::vector<ack> read_ack_log(const fs::path& file, check_report& report) {
  std::vector<ack> acks;
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return acks;  // no write was acknowledged yet
  std::string content{std::istreambuf_iterator<char>{in}, {}};
  if (!content.empty() && content.back() != '\n')
    report.problem("ack log ends with an incomplete line");
  std::istringstream lines{content};
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields{line};
    ack a;
    std::string rest;
    if (!(fields >> a.id >> a.first >> a.count) || (fields >> rest) || a.first == 0
        || a.count == 0) {
      report.problem("malformed ack log line '" + line + "'");
      continue;
    }
    acks.push_back(std::move(a));
  }
  return acks;
}

/// PRAGMA integrity_check through the sqlite3 C API; "ok" or SQLite's findings.
std::string integrity_check(const fs::path& db) {
  sqlite3* conn = nullptr;
  // Read-write without create: opening recovers the WAL the killed child left behind.
  int rc = sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = "cannot open: " + std::string{sqlite3_errstr(rc)};
    sqlite3_close(conn);
    return msg;
  }
  sqlite3_stmt* stmt = nullptr;
  std::string result;
  rc = sqlite3_prepare_v2(conn, "PRAGMA integrity_check", -1, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    result = "cannot prepare: " + std::string{sqlite3_errmsg(conn)};
  } else {
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (!result.empty())
        result += "; ";
      auto text = sqlite3_column_text(stmt, 0);
      result += text ? reinterpret_cast<const char*>(text) : "(null)";
    }
    if (rc != SQLITE_DONE)
      result += " (step failed: " + std::string{sqlite3_errmsg(conn)} + ")";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(conn);
  return result;
}

/// One event as the child wrote it (see the payload format in journal_crash_child.cpp).
struct parsed_event {
  std::string write_id;
  std::uint64_t n = 0;
  std::uint64_t k = 0;
};

/// Parses and checks one stored event against the child's payload format.
bool parse_event(const event_record& ev, parsed_event& out, check_report& report) {
  auto where = ev.persistence_id + " seq " + std::to_string(ev.seq);
  boost::json::error_code ec;
  auto value = boost::json::parse(ev.payload_json, ec);
  if (ec || !value.is_object()) {
    report.problem(where + ": payload is not a JSON object: " + ev.payload_json);
    return false;
  }
  const auto& obj = value.as_object();
  auto str = [&](const char* key) -> std::string {
    auto* v = obj.if_contains(key);
    return v && v->is_string() ? std::string{v->as_string()} : std::string{};
  };
  auto num = [&](const char* key) -> std::uint64_t {
    auto* v = obj.if_contains(key);
    if (v && v->is_int64() && v->as_int64() >= 0)
      return static_cast<std::uint64_t>(v->as_int64());
    if (v && v->is_uint64())
      return v->as_uint64();
    return 0;
  };
  out.write_id = str("write");
  out.n = num("n");
  out.k = num("k");
  auto pad = str("pad");
  bool ok = true;
  auto bad = [&](const std::string& what) {
    report.problem(where + ": " + what + " in payload " + ev.payload_json);
    ok = false;
  };
  if (out.write_id.empty() || out.n < 1 || out.n > 5 || out.k >= out.n)
    bad("bad write/n/k");
  if (str("id") != ev.persistence_id || num("seq") != ev.seq)
    bad("id/seq do not match the stored event");
  if (pad.find_first_not_of(static_cast<char>('a' + ev.seq % 26)) != std::string::npos)
    bad("pad has the wrong letters");
  if (ev.type != "crash.event_written")
    bad("type is '" + ev.type + "'");
  auto want_tags = out.n > 1 ? std::vector<std::string>{"crash"} : std::vector<std::string>{};
  if (ev.tags != want_tags)
    bad("wrong tags (" + std::to_string(ev.tags.size()) + ")");
  return ok;
}

/// Reopens the journal the child left behind and checks the crash invariants:
/// integrity_check is ok; per id the seqs are 1..highest with no gap; every event is
/// well-formed; every write is complete (all n events, k = 0..n-1 at consecutive seqs);
/// every acknowledged write is stored; global positions strictly increase.
check_report check_journal(const fs::path& db, const fs::path& ack_log) {
  check_report report;
  auto acks = read_ack_log(ack_log, report);
  report.acked_writes = acks.size();
  report.db_existed = fs::exists(db);
  if (report.db_existed) {
    auto integrity = integrity_check(db);
    if (integrity != "ok")
      report.problem("PRAGMA integrity_check: " + integrity);
  } else if (!acks.empty()) {
    report.problem("database file is missing but " + std::to_string(acks.size())
                   + " writes were acknowledged");
  }
  sqlite_journal_config cfg;
  cfg.path = db.string();
  auto opened = sqlite_journal::open(std::move(cfg));
  if (!opened) {
    report.problem("reopening the journal failed: " + describe(opened.error()));
    return report;
  }
  auto& journal = **opened;

  struct write_info {
    std::string write_id;
    std::string id;
    sequence_nr first = 0;   // seq of k == 0
    std::uint64_t n = 0;
    std::vector<bool> seen;  // by k
  };
  constexpr auto unparsed = std::numeric_limits<std::size_t>::max();
  std::vector<write_info> writes;
  std::unordered_map<std::string, std::size_t> write_index;  // write id -> writes[i]
  // id -> write index of each stored seq (position seq - 1; unparsed for bad payloads).
  std::unordered_map<std::string, std::vector<std::size_t>> write_at;
  for (std::uint64_t i = 0; i < id_count; ++i) {
    auto id = "crash-" + std::to_string(i);
    auto replayed = journal.replay(id, 1, max_sequence_nr,
                                   std::numeric_limits<std::uint64_t>::max());
    if (!replayed) {
      report.problem("replay " + id + ": " + describe(replayed.error()));
      continue;
    }
    const auto& events = replayed->events;
    if (replayed->highest_seq != events.size())
      report.problem(id + ": highest_seq " + std::to_string(replayed->highest_seq) + " but "
                     + std::to_string(events.size()) + " events stored");
    auto& at = write_at[id];
    for (std::size_t s = 0; s < events.size(); ++s) {
      const auto& ev = events[s];
      if (ev.seq != s + 1 || ev.persistence_id != id) {
        report.problem(id + ": event " + std::to_string(s) + " has seq " + std::to_string(ev.seq)
                       + " of '" + ev.persistence_id + "' (gap or foreign event)");
        break;
      }
      ++report.stored_events;
      at.push_back(unparsed);
      parsed_event pe;
      if (!parse_event(ev, pe, report))
        continue;
      auto [it, fresh] = write_index.try_emplace(pe.write_id, writes.size());
      if (fresh)
        writes.push_back(write_info{pe.write_id, id, 0, pe.n, std::vector<bool>(pe.n, false)});
      auto& w = writes[it->second];
      if (w.id != id || w.n != pe.n || w.seen[pe.k]) {
        report.problem(id + " seq " + std::to_string(ev.seq) + ": write " + pe.write_id
                       + " seen twice or with different id/n");
        continue;
      }
      w.seen[pe.k] = true;
      if (pe.k == 0)
        w.first = ev.seq;
      at.back() = it->second;
    }
  }
  report.stored_writes = writes.size();
  for (std::size_t wi = 0; wi < writes.size(); ++wi) {
    const auto& w = writes[wi];
    std::uint64_t present = std::count(w.seen.begin(), w.seen.end(), true);
    if (present != w.n) {
      report.problem("partial atomic write " + w.write_id + " of " + w.id + ": "
                     + std::to_string(present) + " of " + std::to_string(w.n)
                     + " events stored");
      continue;
    }
    // k runs along consecutive seqs: seq(k) == first + k.
    const auto& at = write_at[w.id];
    for (std::uint64_t k = 0; k < w.n; ++k) {
      auto seq = w.first + k;
      if (seq == 0 || seq > at.size() || at[seq - 1] != wi) {
        report.problem("write " + w.write_id + " of " + w.id
                       + " is not stored at consecutive seqs");
        break;
      }
    }
  }
  std::set<std::pair<std::string, sequence_nr>> acked;
  for (const auto& a : acks) {
    auto what = "acknowledged write " + a.id + " seq " + std::to_string(a.first) + " (+"
                + std::to_string(a.count) + ")";
    if (!acked.emplace(a.id, a.first).second)
      report.problem(what + " is in the ack log twice");
    const auto& at = write_at[a.id];
    for (std::uint64_t k = 0; k < a.count; ++k) {
      auto seq = a.first + k;
      if (seq > at.size()) {
        report.problem(what + ": seq " + std::to_string(seq) + " is missing");
        break;
      }
      if (at[seq - 1] == unparsed)
        break;  // already reported as a bad payload
      const auto& w = writes[at[seq - 1]];
      if (w.n != a.count || w.first != a.first) {
        report.problem(what + ": seq " + std::to_string(seq) + " belongs to write "
                       + w.write_id + " of " + std::to_string(w.n) + " events");
        break;
      }
    }
  }
  // The global position order must cover exactly the events the ids hold.
  auto all = journal.read_all(0, std::numeric_limits<std::uint64_t>::max(), std::nullopt);
  if (!all) {
    report.problem("read_all: " + describe(all.error()));
  } else {
    if (all->size() != report.stored_events)
      report.problem("read_all returned " + std::to_string(all->size()) + " events, replay "
                     + std::to_string(report.stored_events));
    for (std::size_t i = 1; i < all->size(); ++i)
      if ((*all)[i].position <= (*all)[i - 1].position) {
        report.problem("read_all positions do not increase at index " + std::to_string(i));
        break;
      }
  }
  journal.close();
  return report;
}

/// Paths and run counter of one chain of child runs on one journal.
struct crash_fixture {
  scratch_dir dir;
  fs::path db;
  fs::path acks;
  std::uint64_t seed;
  std::uint64_t runs = 0;

  crash_fixture(const std::string& name, std::uint64_t seed_in)
    : dir(name), db(dir.path / "journal.db"), acks(dir.path / "acks.log"), seed(seed_in) {
  }

  /// Starts the next child run on the journal; `writes` > 0 makes it end by itself.
  child_process start_child(std::uint64_t writes = 0) {
    std::vector<std::string> args{"--db",   db.string(),
                                  "--acks", acks.string(),
                                  "--run",  std::to_string(runs),
                                  "--seed", std::to_string(seed),
                                  "--ids",  std::to_string(id_count),
                                  "--threads", "16",
                                  "--inflight", "4",
                                  "--writes", std::to_string(writes)};
    ++runs;
    return child_process::spawn(LONGHAUL_CRASH_CHILD, args);
  }

  /// Checks the journal and fails the test with the problems found.
  check_report require_consistent(const std::string& after) {
    auto report = check_journal(db, acks);
    INFO("after " << after << " (seed " << seed << ", dir " << dir.path << ")");
    INFO(report.summary());
    REQUIRE(report.problems.empty());
    return report;
  }
};

}  // namespace

TEST_CASE("the crash check reports lost acknowledged writes, partial atomic writes and "
          "sequence gaps",
          "[crash][sqlite_journal]") {
  // The oracle of the crash tests must be able to fail: forge each kind of damage through
  // the journal API (a write claiming 3 events that stores 2, a deleted first event) and
  // the ack log (an acknowledgement of a write that is not stored).
  scratch_dir dir{"journal_crash_oracle"};
  auto db = dir.path / "journal.db";
  auto acks = dir.path / "acks.log";
  auto event = [](const std::string& write_id, int n, int k, const std::string& id, int seq) {
    auto payload = "{\"write\":\"" + write_id + "\",\"n\":" + std::to_string(n)
                   + ",\"k\":" + std::to_string(k) + ",\"id\":\"" + id
                   + "\",\"seq\":" + std::to_string(seq) + ",\"pad\":\"\"}";
    return new_event{"crash.event_written", 1, payload,
                     n > 1 ? std::vector<std::string>{"crash"} : std::vector<std::string>{}};
  };
  {
    sqlite_journal_config cfg;
    cfg.path = db.string();
    auto opened = sqlite_journal::open(std::move(cfg));
    REQUIRE(opened);
    auto& j = **opened;
    auto write = [&](const std::string& id, std::vector<new_event> events) {
      atomic_write w;
      w.persistence_id = id;
      w.expected_seq = *j.highest_seq(id) + 1;
      w.events = std::move(events);
      REQUIRE(j.write_and_wait(std::move(w)));
    };
    write("crash-1", {event("w1", 3, 0, "crash-1", 1), event("w1", 3, 1, "crash-1", 2),
                      event("w1", 3, 2, "crash-1", 3)});
    write("crash-2", {event("w2", 3, 0, "crash-2", 1), event("w2", 3, 1, "crash-2", 2)});
    write("crash-3", {event("w3", 1, 0, "crash-3", 1)});
    write("crash-3", {event("w4", 1, 0, "crash-3", 2)});
    REQUIRE(!j.delete_up_to("crash-3", 1));
  }
  std::ofstream{acks} << "crash-1 1 3\ncrash-4 1 1\n";
  auto report = check_journal(db, acks);
  INFO(report.summary());
  auto reported = [&](const std::string& text) {
    return std::any_of(report.problems.begin(), report.problems.end(),
                       [&](const std::string& p) { return p.find(text) != std::string::npos; });
  };
  CHECK(reported("partial atomic write w2 of crash-2: 2 of 3 events stored"));
  CHECK(reported("crash-3: highest_seq 2 but 1 events stored"));
  CHECK(reported("acknowledged write crash-4 seq 1 (+1): seq 1 is missing"));
  // The gap also shows as "event 0 has seq 2", and read_all then counts one event more
  // than the ids' contiguous prefixes.
  CHECK(reported("crash-3: event 0 has seq 2"));
  CHECK(reported("read_all returned 6 events, replay 5"));
  CHECK(report.problems.size() == 5);
  CHECK(report.acked_writes == 2);
}

TEST_CASE("acknowledged journal writes survive SIGKILL at random moments complete, "
          "contiguous and uncorrupted",
          "[crash][sqlite_journal]") {
  auto seed = env_number("LONGHAUL_CRASH_SEED", default_seed);
  auto kills = env_number("LONGHAUL_CRASH_KILLS", default_kills);
  std::cout << "journal crash test: seed " << seed << ", " << kills
            << " kills (LONGHAUL_CRASH_SEED / LONGHAUL_CRASH_KILLS)\n";
  crash_fixture fx{"journal_crash", seed};
  std::mt19937_64 rng{seed};
  std::uint64_t acked_before = 0;
  std::uint64_t runs_with_acks = 0;
  for (std::uint64_t i = 0; i < kills; ++i) {
    auto child = fx.start_child();
    INFO("run " << i << " (seed " << seed << ")");
    REQUIRE(child.wait_for_line("ready", std::chrono::seconds{20}));
    auto delay = std::chrono::milliseconds{50 + rng() % 351};
    auto status = child.kill_after(delay);
    INFO("child ended by " << status.describe() << "; stdout: " << child.output());
    REQUIRE(status.killed());
    // Every fifth kill is followed by a second one 0-5 ms into the next child's open, so
    // that opening a journal that a crash left behind (WAL recovery) is killed too; the
    // check runs only after both.
    std::string reopen_kill;
    if (i % 5 == 4) {
      auto again = fx.start_child();
      REQUIRE(again.wait_for_line("opening", std::chrono::seconds{20}));
      auto reopen_delay = std::chrono::microseconds{rng() % 5001};
      auto again_status = again.kill_after(reopen_delay);
      INFO("reopening child ended by " << again_status.describe() << "; stdout: "
                                       << again.output());
      REQUIRE(again_status.killed());
      reopen_kill = ", then " + std::to_string(reopen_delay.count()) + " us into reopening ("
                    + (again.has_line("opened") ? "after" : "during") + " open)";
    }
    auto check_start = std::chrono::steady_clock::now();
    auto report = fx.require_consistent("kill " + std::to_string(i));
    auto check_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - check_start);
    auto new_acks = report.acked_writes - acked_before;
    acked_before = report.acked_writes;
    runs_with_acks += new_acks > 0 ? 1 : 0;
    std::cout << "kill " << i << " after " << delay.count() << " ms" << reopen_kill << ": +"
              << new_acks
              << " acked writes; stored " << report.stored_writes << " writes, "
              << report.stored_events << " events; "
              << report.stored_writes - report.acked_writes
              << " stored but unacknowledged (checked in " << check_ms.count() << " ms)\n";
  }
  // A chain that never got writes acknowledged would check nothing.
  REQUIRE(runs_with_acks * 2 >= kills);
  // A clean end after the crashes: the child drains, acknowledges everything and exits 0.
  auto child = fx.start_child(500);
  REQUIRE(child.wait_for_line("ready", std::chrono::seconds{20}));
  auto status = child.wait();
  INFO("stdout: " << child.output());
  REQUIRE(status.exited);
  REQUIRE(status.exit_code == 0);
  REQUIRE(child.has_line("done"));
  auto report = fx.require_consistent("the clean run");
  REQUIRE(report.acked_writes == acked_before + 500);
}

TEST_CASE("a journal killed during its first schema creation opens consistent and writable",
          "[crash][sqlite_journal]") {
  auto seed = env_number("LONGHAUL_CRASH_SEED", default_seed);
  constexpr int attempts = 16;
  std::cout << "schema crash test: seed " << seed << ", " << attempts << " kills\n";
  std::mt19937_64 rng{seed ^ 0x5eed};
  int during_open = 0;
  int no_db_file = 0;
  for (int i = 0; i < attempts; ++i) {
    crash_fixture fx{"journal_schema_crash_" + std::to_string(i), seed + i};
    auto child = fx.start_child();
    INFO("attempt " << i << " (seed " << seed << ")");
    REQUIRE(child.wait_for_line("opening", std::chrono::seconds{20}));
    // Opening a new journal takes a few ms (WAL switch, schema transaction, fsyncs): a
    // kill 0-5 ms after "opening" lands before, inside or just after schema creation.
    auto delay = std::chrono::microseconds{rng() % 5001};
    auto status = child.kill_after(delay);
    INFO("child ended by " << status.describe() << "; stdout: " << child.output());
    REQUIRE(status.killed());
    bool opened_before_kill = child.has_line("opened");
    during_open += opened_before_kill ? 0 : 1;
    auto report = fx.require_consistent("schema kill " + std::to_string(i));
    no_db_file += report.db_existed ? 0 : 1;
    std::cout << "schema kill " << i << " after " << delay.count() << " us: "
              << (opened_before_kill ? "after" : "during") << " open, "
              << (report.db_existed ? "" : "no database file, ") << report.stored_events
              << " events\n";
    // The journal must be usable after such a crash, not only openable.
    sqlite_journal_config cfg;
    cfg.path = fx.db.string();
    auto opened = sqlite_journal::open(std::move(cfg));
    INFO((opened ? std::string{"opened"} : describe(opened.error())));
    REQUIRE(opened);
    atomic_write w;
    w.persistence_id = "after-crash";
    w.expected_seq = 1;
    w.events.push_back(new_event{"crash.event_written", 1, R"({"after":"crash"})", {}});
    auto written = (*opened)->write_and_wait(std::move(w));
    INFO((written ? std::string{"written"} : describe(written.error())));
    REQUIRE(written);
    REQUIRE(written->highest_seq == 1);
    auto replayed = (*opened)->replay("after-crash", 1, max_sequence_nr, 10);
    REQUIRE(replayed);
    REQUIRE(replayed->events.size() == 1);
    REQUIRE(replayed->events[0].payload_json == R"({"after":"crash"})");
  }
  std::cout << "schema crash test: " << during_open << " of " << attempts
            << " kills landed before open returned (" << no_db_file
            << " before the database file existed)\n";
}
