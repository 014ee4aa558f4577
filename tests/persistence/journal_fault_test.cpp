// Fault tests of the SQLite journal: injected write errors, failed fsyncs and a full disk
// (through sqlite_fault_vfs), and rejected writes inside a group-commit batch.
// Every test ends by reopening the file and comparing it with what was acknowledged.
#include "persistence/sqlite_fault_vfs.hpp"
#include "persistence/sqlite_journal.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace longhaul::persistence;
namespace fs = std::filesystem;

namespace {

// -- what a test wrote and what the journal answered ----------------------------------------

/// One submitted atomic write and its outcome.
struct attempt {
  int writer = 0;                    ///< which test thread submitted it (submission order kept)
  std::string id;
  sequence_nr first_seq = 0;
  std::vector<std::string> payloads; ///< one per event
  bool done = false;
  persistence_errc code = persistence_errc::ok;  ///< ok: acknowledged
  std::string error_text;
  write_result result;

  bool acknowledged() const { return done && code == persistence_errc::ok; }
};

/// Thread-safe record of every write a test submits; outcomes arrive on the writer thread.
class write_log {
public:
  /// Hands `w` to `j` and records it; returns its index in the log.
  std::size_t submit(journal& j, int writer, atomic_write w) {
    attempt* a = nullptr;
    std::size_t index = 0;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      index = attempts_.size();
      a = &attempts_.emplace_back();
      a->writer = writer;
      a->id = w.persistence_id;
      a->first_seq = w.expected_seq;
      for (const auto& ev : w.events)
        a->payloads.push_back(ev.payload_json);
      ++pending_;
    }
    j.write(std::move(w), [this, a](caf::expected<write_result> r) {
      std::lock_guard<std::mutex> guard{mtx_};
      a->done = true;
      if (r) {
        a->result = *r;
      } else {
        a->code = persistence_code(r.error());
        a->error_text = describe(r.error());
      }
      --pending_;
      cv_.notify_all();
    });
    return index;
  }

  /// Waits for the outcome of the attempt at `index` and returns a copy of it.
  attempt wait_for(std::size_t index) {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait(guard, [this, index] { return attempts_[index].done; });
    return attempts_[index];
  }

  /// Waits until every submitted write has its outcome.
  void wait_all() {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait(guard, [this] { return pending_ == 0; });
  }

  /// Snapshot of all attempts (call after wait_all).
  std::vector<attempt> attempts() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return {attempts_.begin(), attempts_.end()};
  }

  /// Attempts with index >= from.
  std::vector<attempt> attempts_since(std::size_t from) const {
    auto all = attempts();
    return {all.begin() + static_cast<std::ptrdiff_t>(std::min(from, all.size())), all.end()};
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return attempts_.size();
  }

  /// Next sequence number of `id` according to the acknowledged writes.
  sequence_nr next_seq(const std::string& id) const {
    std::lock_guard<std::mutex> guard{mtx_};
    sequence_nr next = 1;
    for (const auto& a : attempts_)
      if (a.id == id && a.acknowledged())
        next = std::max<sequence_nr>(next, a.first_seq + a.payloads.size());
    return next;
  }

private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<attempt> attempts_;  // deque: callbacks hold pointers to elements
  std::size_t pending_ = 0;
};

/// A JSON payload that names its write, so a reader can tell which write stored an event.
std::string payload_for(const std::string& id, sequence_nr seq, const std::string& note,
                        std::size_t pad_bytes) {
  return R"({"id":")" + id + R"(","seq":)" + std::to_string(seq) + R"(,"note":")" + note
         + R"(","pad":")" + std::string(pad_bytes, 'x') + R"("})";
}

/// An atomic write of `n_events` events to `id` starting at `first_seq`.
atomic_write make_write(const std::string& id, sequence_nr first_seq, std::size_t n_events,
                        const std::string& note, std::size_t pad_bytes = 64) {
  atomic_write w;
  w.persistence_id = id;
  w.expected_seq = first_seq;
  for (std::size_t i = 0; i < n_events; ++i)
    w.events.push_back(new_event{"fault_test.appended", 1,
                                 payload_for(id, first_seq + i, note, pad_bytes), {}});
  return w;
}

/// The first column of the first row of `sql` as text ("" when there is no row).
std::string query_text(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return out;
}

/// Runs `body(t)` on `n` threads at once and joins them.
void run_writers(int n, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t)
    threads.emplace_back(body, t);
  for (auto& th : threads)
    th.join();
}

std::size_t count_code(const std::vector<attempt>& attempts, persistence_errc code) {
  return static_cast<std::size_t>(std::count_if(
    attempts.begin(), attempts.end(), [code](const attempt& a) { return a.code == code; }));
}

/// Human-readable list of attempts whose outcome is not in `allowed` (empty: all fine).
std::string unexpected_outcomes(const std::vector<attempt>& attempts,
                                std::set<persistence_errc> allowed) {
  std::string out;
  for (const auto& a : attempts)
    if (!a.done || allowed.count(a.code) == 0)
      out += a.id + "@" + std::to_string(a.first_seq) + ": "
             + (a.done ? (a.code == persistence_errc::ok ? std::string{"acknowledged"}
                                                         : a.error_text)
                       : std::string{"no outcome"})
             + "\n";
  return out;
}

// -- the fixture -----------------------------------------------------------------------

/// A fresh directory with one journal file; faults are healed before and after each test.
class fault_fixture {
public:
  fault_fixture() {
    sqlite_fault_vfs::heal();
    std::random_device rd;
    dir_ = fs::temp_directory_path()
           / ("longhaul-fault-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    fs::create_directories(dir_);
    path_ = (dir_ / "journal.db").string();
  }

  ~fault_fixture() {
    sqlite_fault_vfs::heal();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fault_fixture(const fault_fixture&) = delete;
  fault_fixture& operator=(const fault_fixture&) = delete;

  /// Opens the journal through the fault VFS (which counts writes), with or without the
  /// writer's WAL buffering.
  std::unique_ptr<sqlite_journal> open_counting(bool buffer_wal_writes) {
    sqlite_journal_config cfg;
    cfg.path = path_;
    cfg.vfs = sqlite_fault_vfs::install();
    cfg.buffer_wal_writes = buffer_wal_writes;
    return open(std::move(cfg));
  }

  /// Opens the journal through the fault VFS.
  std::unique_ptr<sqlite_journal> open_with_faults(sync_mode sync = sync_mode::full,
                                                   std::function<time_ms()> clock = {}) {
    sqlite_journal_config cfg;
    cfg.path = path_;
    cfg.sync = sync;
    cfg.vfs = sqlite_fault_vfs::install();
    cfg.clock = std::move(clock);
    return open(std::move(cfg));
  }

  /// Reopens the journal through SQLite's default VFS, as a restarted process would.
  std::unique_ptr<sqlite_journal> reopen_plain() {
    sqlite_journal_config cfg;
    cfg.path = path_;
    return open(std::move(cfg));
  }

  /// PRAGMA integrity_check on the closed journal file, through the sqlite3 C API.
  std::string integrity_check() const {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::string err = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      return "cannot open: " + err;
    }
    std::string result;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) != SQLITE_OK) {
      result = std::string{"cannot prepare: "} + sqlite3_errmsg(db);
    } else {
      while (sqlite3_step(st) == SQLITE_ROW) {
        if (!result.empty())
          result += "; ";
        result += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return result;
  }

  /// Bytes of the files SQLite opens for the journal (database and WAL; not the
  /// shared-memory index, which is mapped, never written through the VFS).
  std::uint64_t journal_bytes() const {
    std::uint64_t total = 0;
    for (const auto& p : {path_, path_ + "-wal"}) {
      std::error_code ec;
      auto n = fs::file_size(p, ec);
      if (!ec)
        total += n;
    }
    return total;
  }

  /// Checks that `j` holds exactly the events of the acknowledged writes in `log`: every
  /// acknowledged event with its payload, nothing of a write that failed or was rejected.
  static void require_exactly_acknowledged(sqlite_journal& j, const write_log& log) {
    std::map<std::string, std::map<sequence_nr, std::string>> expected;
    for (const auto& a : log.attempts()) {
      auto& stream = expected[a.id];  // also ids that never got anything acknowledged
      if (a.acknowledged())
        for (std::size_t i = 0; i < a.payloads.size(); ++i)
          stream[a.first_seq + i] = a.payloads[i];
    }
    std::string mismatches;
    std::size_t total = 0;
    for (const auto& [id, stream] : expected) {
      total += stream.size();
      auto replayed = j.replay(id, 1, max_sequence_nr, max_sequence_nr);
      if (!replayed) {
        mismatches += id + ": replay failed: " + describe(replayed.error()) + "\n";
        continue;
      }
      sequence_nr want_highest = stream.empty() ? 0 : stream.rbegin()->first;
      if (replayed->highest_seq != want_highest)
        mismatches += id + ": highest " + std::to_string(replayed->highest_seq) + ", expected "
                      + std::to_string(want_highest) + "\n";
      std::map<sequence_nr, std::string> got;
      for (const auto& ev : replayed->events)
        got[ev.seq] = ev.payload_json;
      for (const auto& [seq, payload] : stream)
        if (auto it = got.find(seq); it == got.end())
          mismatches += id + "@" + std::to_string(seq) + ": acknowledged event lost\n";
        else if (it->second != payload)
          mismatches += id + "@" + std::to_string(seq) + ": holds " + it->second
                        + " instead of the acknowledged " + payload + "\n";
      for (const auto& [seq, payload] : got)
        if (stream.count(seq) == 0)
          mismatches += id + "@" + std::to_string(seq) + ": unacknowledged event " + payload
                        + "\n";
    }
    auto all = j.read_all(0, max_sequence_nr, std::nullopt);
    REQUIRE(all);
    INFO(mismatches);
    CHECK(mismatches.empty());
    CHECK(all->size() == total);
  }

  const std::string& path() const { return path_; }

private:
  static std::unique_ptr<sqlite_journal> open(sqlite_journal_config cfg) {
    auto j = sqlite_journal::open(std::move(cfg));
    if (!j)
      FAIL("opening the journal failed: " << describe(j.error()));
    return std::move(*j);
  }

  fs::path dir_;
  std::string path_;
};

constexpr int n_threads = 4;

/// Every thread appends ten two-event writes to its own id "acked-<t>", pipelined.
void write_acknowledged_history(sqlite_journal& j, write_log& log) {
  run_writers(n_threads, [&](int t) {
    auto id = "acked-" + std::to_string(t);
    for (sequence_nr k = 0; k < 10; ++k)
      log.submit(j, t, make_write(id, 2 * k + 1, 2, "before"));
  });
  log.wait_all();
  auto history = log.attempts();
  INFO(unexpected_outcomes(history, {persistence_errc::ok}));
  REQUIRE(count_code(history, persistence_errc::ok) == history.size());
}

/// Under a fault: every thread continues its "acked-<t>" id once and starts 15 fresh ids.
/// One write per id, so that a failure cannot turn a neighbour into a sequence conflict.
void write_during_fault(sqlite_journal& j, write_log& log) {
  run_writers(n_threads, [&](int t) {
    auto id = "acked-" + std::to_string(t);
    log.submit(j, t, make_write(id, log.next_seq(id), 1, "during"));
    for (int k = 0; k < 15; ++k)
      log.submit(j, t, make_write("fresh-" + std::to_string(t) + "-" + std::to_string(k), 1, 2,
                                  "during"));
  });
  log.wait_all();
}

/// After healing: every id of the log gets one more write at its next sequence number
/// (failed fresh ids are retried at 1 with a different payload).
void write_after_heal(sqlite_journal& j, write_log& log, const std::string& note) {
  std::set<std::string> ids;
  for (const auto& a : log.attempts())
    ids.insert(a.id);
  auto from = log.size();
  for (const auto& id : ids)
    log.submit(j, 0, make_write(id, log.next_seq(id), 1, note));
  log.wait_all();
  auto after = log.attempts_since(from);
  INFO(unexpected_outcomes(after, {persistence_errc::ok}));
  REQUIRE(count_code(after, persistence_errc::ok) == after.size());
}

}  // namespace

// -- the fault VFS itself ------------------------------------------------------------------

TEST_CASE("the fault VFS fails the write after the n allowed ones and fsyncs on command, "
          "in WAL mode",
          "[persistence][fault]") {
  fault_fixture fx;
  auto vfs = sqlite_fault_vfs::install();
  REQUIRE(sqlite_fault_vfs::install() == vfs);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(fx.path().c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          vfs.c_str())
          == SQLITE_OK);
  sqlite3_extended_result_codes(db, 1);
  auto exec = [db](const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); };
  // SQLite silently stays in rollback mode when a VFS lacks the shared-memory methods.
  REQUIRE(query_text(db, "PRAGMA journal_mode = WAL") == "wal");
  REQUIRE(exec("PRAGMA synchronous = FULL; CREATE TABLE t (x BLOB)") == SQLITE_OK);
  REQUIRE(exec("INSERT INTO t VALUES (randomblob(100))") == SQLITE_OK);

  // A commit of 20 pages needs far more than 3 writes: the fourth one fails.
  sqlite_fault_vfs::fail_writes(injected_fault::disk_full, 3);
  auto before = sqlite_fault_vfs::writes_seen();
  CHECK(exec("INSERT INTO t SELECT randomblob(3000) FROM (WITH RECURSIVE c(i) AS"
             " (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20) SELECT i FROM c)")
        == SQLITE_FULL);
  CHECK(sqlite_fault_vfs::writes_seen() - before == 4);

  sqlite_fault_vfs::heal();
  sqlite_fault_vfs::fail_syncs(true);
  CHECK(exec("INSERT INTO t VALUES (randomblob(100))") == SQLITE_IOERR_FSYNC);

  sqlite_fault_vfs::heal();
  sqlite_fault_vfs::fail_writes(injected_fault::io_error);
  CHECK(exec("INSERT INTO t VALUES (randomblob(100))") == SQLITE_IOERR_WRITE);

  sqlite_fault_vfs::heal();
  CHECK(exec("INSERT INTO t VALUES (randomblob(100))") == SQLITE_OK);
  CHECK(query_text(db, "SELECT count(*) FROM t") == "2");  // only the two healthy inserts
  // A second connection sees the same through the WAL index and can map pages (xFetch).
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(fx.path().c_str(), &other, SQLITE_OPEN_READONLY, vfs.c_str())
          == SQLITE_OK);
  CHECK(query_text(other, "PRAGMA mmap_size = 1048576") == "1048576");
  CHECK(query_text(other, "SELECT count(*) FROM t") == "2");
  sqlite3_close(other);
  REQUIRE(sqlite3_close(db) == SQLITE_OK);
  CHECK(fx.integrity_check() == "ok");
}

TEST_CASE("the fault VFS refuses growth past the simulated disk size and counts a file "
          "open in several connections once",
          "[persistence][fault]") {
  fault_fixture fx;
  auto vfs = sqlite_fault_vfs::install();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(fx.path().c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          vfs.c_str())
          == SQLITE_OK);
  auto exec = [db](const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); };
  REQUIRE(exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x BLOB)") == SQLITE_OK);
  for (int i = 0; i < 20; ++i)
    REQUIRE(exec("INSERT INTO t VALUES (randomblob(4000))") == SQLITE_OK);
  // A second connection opens the same ~100 KB of files: counted twice, they would fill
  // the 64 KiB of room below before the first insert.
  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open_v2(fx.path().c_str(), &reader, SQLITE_OPEN_READONLY, vfs.c_str())
          == SQLITE_OK);
  REQUIRE(sqlite3_exec(reader, "SELECT count(*) FROM t", nullptr, nullptr, nullptr)
          == SQLITE_OK);

  auto limit = fx.journal_bytes() + 64 * 1024;
  sqlite_fault_vfs::limit_total_bytes(limit);
  int stored = 0;
  int rc = SQLITE_OK;
  while (stored < 1000 && (rc = exec("INSERT INTO t VALUES (randomblob(4000))")) == SQLITE_OK)
    ++stored;
  CHECK(rc == SQLITE_FULL);
  CHECK(stored >= 3);  // 64 KiB hold several 4 KB rows
  CHECK(fx.journal_bytes() <= limit);

  sqlite_fault_vfs::heal();
  CHECK(exec("INSERT INTO t VALUES (randomblob(4000))") == SQLITE_OK);
  sqlite3_close(reader);
  REQUIRE(sqlite3_close(db) == SQLITE_OK);
  CHECK(fx.integrity_check() == "ok");
}

// -- the writer's WAL buffering (sqlite_wal_buffer.hpp) ----------------------------------------

TEST_CASE("the writer hands a commit's WAL frames down in a few large writes, and a write "
          "larger than the buffer is stored whole",
          "[persistence][fault]") {
  for (bool buffered : {false, true}) {
    CAPTURE(buffered);
    fault_fixture fx;
    auto j = fx.open_counting(buffered);
    REQUIRE(j->write_and_wait(make_write("big", 1, 100, "first", 1000)));
    // About 30 pages of events plus index pages: two writes per frame without buffering.
    auto before = sqlite_fault_vfs::writes_seen();
    REQUIRE(j->write_and_wait(make_write("big", 101, 100, "second", 1000)));
    auto writes = sqlite_fault_vfs::writes_seen() - before;
    CAPTURE(writes);
    if (buffered)
      CHECK(writes <= 3);
    else
      CHECK(writes >= 50);
    // 3,000 events of 1 KB in one transaction: more than the 1 MiB buffer holds.
    REQUIRE(j->write_and_wait(make_write("huge", 1, 3000, "third", 1000)));
    // A reader sees every commit at once (the frames were in the file before SQLite
    // published them).
    auto last = j->replay("huge", 3000, 3000, 1);
    REQUIRE(last);
    REQUIRE(last->events.size() == 1);
    CHECK(last->events[0].payload_json == payload_for("huge", 3000, "third", 1000));
    j.reset();
    CHECK(fx.integrity_check() == "ok");
    auto reopened = fx.reopen_plain();
    CHECK(*reopened->highest_seq("big") == 200);
    auto all = reopened->replay("huge", 1, max_sequence_nr, 5000);
    REQUIRE(all);
    REQUIRE(all->events.size() == 3000);
    for (std::size_t i = 0; i < all->events.size(); i += 499)
      CHECK(all->events[i].payload_json == payload_for("huge", i + 1, "third", 1000));
  }
}

TEST_CASE("an unknown VFS name is a clear error when the journal opens", "[persistence][fault]") {
  fault_fixture fx;
  for (bool buffered : {false, true}) {
    CAPTURE(buffered);
    sqlite_journal_config cfg;
    cfg.path = fx.path();
    cfg.vfs = "no-such-vfs";
    cfg.buffer_wal_writes = buffered;
    auto j = sqlite_journal::open(std::move(cfg));
    REQUIRE_FALSE(j);
    CHECK(describe(j.error()).find("no-such-vfs") != std::string::npos);
  }
}

// -- the journal under faults --------------------------------------------------------------

TEST_CASE("appends hit by injected write errors fail with io_error, appends after heal "
          "succeed, and after reopen exactly the acknowledged events are stored",
          "[persistence][fault]") {
  // 0: the first write of the fault phase fails; 3: a WAL commit fails part-way through
  // its frames; 40 and 200: batches commit until the fault strikes one in the middle.
  auto allowed_writes = GENERATE(as<std::uint64_t>{}, 0, 3, 40, 200);
  CAPTURE(allowed_writes);
  fault_fixture fx;
  write_log log;
  auto j = fx.open_with_faults();
  write_acknowledged_history(*j, log);

  auto from = log.size();
  auto writes_before = sqlite_fault_vfs::writes_seen();
  sqlite_fault_vfs::fail_writes(injected_fault::io_error, allowed_writes);
  write_during_fault(*j, log);
  // Small batches may not use up the allowed writes: go on until the fault strikes.
  for (int k = 0; k < 1000 && count_code(log.attempts_since(from), persistence_errc::io_error) == 0;
       ++k)
    log.wait_for(log.submit(*j, 0, make_write("extra-" + std::to_string(k), 1, 2, "during")));
  auto during = log.attempts_since(from);
  CAPTURE(during.size(), count_code(during, persistence_errc::io_error));
  {
    INFO(unexpected_outcomes(during, {persistence_errc::ok, persistence_errc::io_error}));
    CHECK(count_code(during, persistence_errc::ok) + count_code(during, persistence_errc::io_error)
          == during.size());
  }
  CHECK(count_code(during, persistence_errc::io_error) > 0);
  if (allowed_writes == 0)
    CHECK(count_code(during, persistence_errc::io_error) == during.size());
  CHECK(sqlite_fault_vfs::writes_seen() > writes_before);

  sqlite_fault_vfs::heal();
  // The same journal object keeps working: the writer relearned the stream heads.
  write_after_heal(*j, log, "after heal");

  j.reset();
  CHECK(fx.integrity_check() == "ok");
  auto reopened = fx.reopen_plain();
  fault_fixture::require_exactly_acknowledged(*reopened, log);
}

TEST_CASE("a failed fsync at COMMIT fails the whole batch with io_error and none of its "
          "events is stored after reopen",
          "[persistence][fault]") {
  fault_fixture fx;
  write_log log;
  // Only sync_mode::full fsyncs the WAL at every COMMIT.
  auto j = fx.open_with_faults(sync_mode::full);
  write_acknowledged_history(*j, log);

  auto from = log.size();
  sqlite_fault_vfs::fail_syncs(true);
  write_during_fault(*j, log);
  auto during = log.attempts_since(from);
  {
    INFO(unexpected_outcomes(during, {persistence_errc::io_error}));
    CHECK(count_code(during, persistence_errc::io_error) == during.size());
  }

  // Close right after the failure, with no later commit overwriting the failed WAL frames.
  sqlite_fault_vfs::heal();
  j.reset();
  CHECK(fx.integrity_check() == "ok");
  auto reopened = fx.reopen_plain();
  fault_fixture::require_exactly_acknowledged(*reopened, log);

  // The failed writes can be retried at the same sequence numbers.
  write_after_heal(*reopened, log, "retried after reopen");
  fault_fixture::require_exactly_acknowledged(*reopened, log);
}

TEST_CASE("a full disk fails appends with disk_full, loses no acknowledged event, and the "
          "same journal accepts appends again once space is freed",
          "[persistence][fault]") {
  fault_fixture fx;
  write_log log;
  auto j = fx.open_with_faults(sync_mode::normal);
  write_acknowledged_history(*j, log);

  // Room for a few dozen 4 KB events, then the simulated disk is full.
  auto limit = fx.journal_bytes() + 256 * 1024;
  sqlite_fault_vfs::limit_total_bytes(limit);
  auto from = log.size();
  run_writers(n_threads, [&](int t) {
    auto id = "filler-" + std::to_string(t);
    for (sequence_nr seq = 1; seq <= 2000; ++seq) {
      auto index = log.submit(*j, t, make_write(id, seq, 1, "filling", 4096));
      if (!log.wait_for(index).acknowledged())
        return;  // this thread's first error ends its run
    }
  });
  auto during = log.attempts_since(from);
  CAPTURE(during.size(), count_code(during, persistence_errc::disk_full));
  {
    INFO(unexpected_outcomes(during, {persistence_errc::ok, persistence_errc::disk_full}));
    CHECK(count_code(during, persistence_errc::ok)
            + count_code(during, persistence_errc::disk_full)
          == during.size());
  }
  CHECK(count_code(during, persistence_errc::disk_full) > 0);
  CHECK(count_code(during, persistence_errc::ok) > 0);
  CHECK(fx.journal_bytes() <= limit);

  // Freeing space is enough: no reopen is needed. Each failed filler write is retried at
  // its sequence number with a different payload, so a leftover of it would show.
  sqlite_fault_vfs::heal();
  write_after_heal(*j, log, "after space was freed");

  j.reset();
  CHECK(fx.integrity_check() == "ok");
  auto reopened = fx.reopen_plain();
  fault_fixture::require_exactly_acknowledged(*reopened, log);
}

TEST_CASE("a rejected write fails alone while its neighbours in the same batch are stored",
          "[persistence][fault]") {
  fault_fixture fx;
  write_log log;
  // Every commit reads the clock once, so a counting clock numbers the batches: writes
  // acknowledged with the same written_at_ms were committed in the same transaction.
  std::atomic<time_ms> batch_counter{1'000'000};
  auto j = fx.open_with_faults(sync_mode::full, [&batch_counter] { return batch_counter++; });

  // Each thread pipelines writes to its own id without waiting. Good writes carry one
  // event, a processed message id and an outbox message; after every fourth good write
  // comes a bad one of the next kind.
  enum class bad_kind {
    gap,                ///< expected_seq skips one: sequence_conflict
    reused_seq,         ///< expected_seq of the previous write: sequence_conflict
    duplicate_message,  ///< processed message id of the previous write: duplicate_message
    reused_outbox_id,   ///< outbox id of the previous write, with new events and a new
                        ///< processed id: rejected, and none of them stored
    invalid_json,       ///< rejected before it is queued: invalid_payload
  };
  constexpr int n_kinds = 5;
  constexpr int good_per_thread = 200;
  struct bad_write {
    std::size_t index;
    bad_kind kind;
    std::string processed_id;
    std::size_t previous_good;
    std::size_t next_good = 0;
  };
  auto outbox_id = [](const std::string& id, sequence_nr seq) {
    return "out-" + id + "-" + std::to_string(seq);
  };
  std::mutex bad_mtx;
  std::vector<bad_write> bad;
  run_writers(n_threads, [&](int t) {
    auto id = "batch-" + std::to_string(t);
    sequence_nr next = 1;
    std::vector<bad_write> mine;
    for (int k = 0; k < good_per_thread; ++k) {
      auto w = make_write(id, next, 1, "good");
      w.processed_message_id = "msg-" + std::to_string(next);
      w.outbox.push_back(outbox_message{outbox_id(id, next), "sink/1", R"({"n":1})"});
      auto good = log.submit(*j, t, std::move(w));
      if (!mine.empty() && mine.back().next_good == 0)
        mine.back().next_good = good;
      ++next;
      if (k % 4 != 3)
        continue;
      auto kind = static_cast<bad_kind>((k / 4) % n_kinds);
      auto b = make_write(id, next, 1, "bad");
      b.processed_message_id = "bad-msg-" + std::to_string(k);
      switch (kind) {
        case bad_kind::gap:
          b.expected_seq = next + 1;
          break;
        case bad_kind::reused_seq:
          b.expected_seq = next - 1;
          break;
        case bad_kind::duplicate_message:
          b.processed_message_id = "msg-" + std::to_string(next - 1);
          break;
        case bad_kind::reused_outbox_id:
          b = make_write(id, next, 2, "bad");
          b.processed_message_id = "bad-msg-" + std::to_string(k);
          b.outbox.push_back(outbox_message{outbox_id(id, next - 1), "sink/1", "{}"});
          break;
        case bad_kind::invalid_json:
          b.events.front().payload_json = R"({"truncated": )";
          break;
      }
      auto processed = *b.processed_message_id;
      mine.push_back(bad_write{log.submit(*j, t, std::move(b)), kind, processed, good});
    }
    std::lock_guard<std::mutex> guard{bad_mtx};
    bad.insert(bad.end(), mine.begin(), mine.end());
  });
  log.wait_all();
  auto all = log.attempts();

  std::set<std::size_t> bad_indexes;
  for (const auto& b : bad)
    bad_indexes.insert(b.index);
  std::string wrong;
  std::set<std::string> good_outbox_ids;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (bad_indexes.count(i) != 0)
      continue;
    good_outbox_ids.insert(outbox_id(all[i].id, all[i].first_seq));
    if (!all[i].acknowledged())
      wrong += "good write " + all[i].id + "@" + std::to_string(all[i].first_seq) + ": "
               + all[i].error_text + "\n";
  }
  std::size_t proven_in_batch = 0;
  for (const auto& b : bad) {
    const auto& a = all[b.index];
    bool as_expected = false;
    switch (b.kind) {
      case bad_kind::gap:
      case bad_kind::reused_seq:
        as_expected = a.code == persistence_errc::sequence_conflict;
        break;
      case bad_kind::duplicate_message:
        as_expected = a.code == persistence_errc::duplicate_message;
        break;
      case bad_kind::reused_outbox_id:
        // Any rejection code will do; it must be a rejection, not a failure.
        as_expected = a.done && a.code != persistence_errc::ok
                      && static_cast<int>(a.code) < static_cast<int>(persistence_errc::io_error);
        break;
      case bad_kind::invalid_json:
        as_expected = a.code == persistence_errc::invalid_payload;
        break;
    }
    if (!as_expected)
      wrong += "bad write #" + std::to_string(static_cast<int>(b.kind)) + " " + a.id + "@"
               + std::to_string(a.first_seq) + ": "
               + (a.acknowledged() ? std::string{"acknowledged"} : a.error_text) + "\n";
    // Batches take contiguous runs of the queue, and one thread's writes are queued in
    // order: if both neighbours share a batch, the bad write was in that batch too.
    if (b.kind != bad_kind::invalid_json && b.next_good != 0
        && all[b.previous_good].acknowledged() && all[b.next_good].acknowledged()
        && all[b.previous_good].result.written_at_ms == all[b.next_good].result.written_at_ms)
      ++proven_in_batch;
  }
  {
    INFO(wrong);
    CHECK(wrong.empty());
  }
  CHECK(bad.size() == static_cast<std::size_t>(n_threads) * good_per_thread / 4);
  CAPTURE(proven_in_batch);
  CHECK(proven_in_batch > 0);
  auto stats = j->statistics();
  CAPTURE(stats.transactions, stats.writes, stats.max_batch);
  CHECK(stats.max_batch > 1);
  CHECK(stats.transactions < stats.writes);

  j.reset();
  CHECK(fx.integrity_check() == "ok");
  auto reopened = fx.reopen_plain();
  fault_fixture::require_exactly_acknowledged(*reopened, log);
  for (int t = 0; t < n_threads; ++t) {
    auto highest = reopened->highest_seq("batch-" + std::to_string(t));
    REQUIRE(highest);
    CHECK(*highest == good_per_thread);
  }
  // Nothing else of a rejected write is stored either: no outbox message, no processed id.
  auto outbox = reopened->outbox_pending(0, max_sequence_nr);
  REQUIRE(outbox);
  std::set<std::string> stored_outbox_ids;
  for (const auto& m : *outbox)
    stored_outbox_ids.insert(m.message_id);
  CHECK(stored_outbox_ids == good_outbox_ids);
  CHECK(outbox->size() == good_outbox_ids.size());
  std::string leaked;
  for (const auto& b : bad) {
    if (b.kind == bad_kind::duplicate_message)
      continue;  // its message id belongs to the good write before it
    auto processed = reopened->is_processed(all[b.index].id, b.processed_id);
    REQUIRE(processed);
    if (*processed)
      leaked += all[b.index].id + " processed " + b.processed_id + "\n";
  }
  INFO(leaked);
  CHECK(leaked.empty());
}
