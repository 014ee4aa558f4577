// Tests of the SQLite journal: the journal contract suite instantiated for sqlite_journal,
// plus what only a file-backed journal promises (durability, locking, schema, sync modes).
#include "persistence/sqlite_journal.hpp"

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <system_error>

#include <sys/wait.h>
#include <unistd.h>

namespace {

/// A fresh directory under the system temp directory, removed with everything in it.
class temp_dir {
public:
  temp_dir() {
    static std::atomic<int> counter{0};
    auto base = std::filesystem::temp_directory_path();
    for (;;) {
      path_ = base / ("longhaul-sqlite-journal-test-" + std::to_string(::getpid()) + "-"
                      + std::to_string(counter++));
      if (std::filesystem::create_directory(path_))
        break;
    }
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  std::string file(const std::string& name) const {
    return (path_ / name).string();
  }

private:
  std::filesystem::path path_;
};

/// Contract backend: every journal is a new database file in this test's temp directory.
struct sqlite_backend {
  temp_dir dir;
  int opened = 0;

  std::unique_ptr<longhaul::persistence::journal>
  make_journal(std::size_t keep_snapshots, std::function<longhaul::persistence::time_ms()> clock);
};

} // namespace

#define LONGHAUL_JOURNAL_BACKEND sqlite_backend
#define LONGHAUL_JOURNAL_BACKEND_NAME "sqlite"
#include "tests/persistence/journal_contract.hpp"

using namespace longhaul::persistence;

std::unique_ptr<journal>
sqlite_backend::make_journal(std::size_t keep_snapshots, std::function<time_ms()> clock) {
  sqlite_journal_config cfg;
  cfg.path = dir.file("journal-" + std::to_string(++opened) + ".db");
  cfg.keep_snapshots = keep_snapshots;
  cfg.clock = std::move(clock);
  auto j = sqlite_journal::open(std::move(cfg));
  if (!j)
    FAIL("opening a fresh SQLite journal failed: " << describe(j.error()));
  return std::move(*j);
}

namespace {

using errc = persistence_errc;

/// Fixture of the SQLite-only tests: a temp directory with one journal path in it.
class sqlite_fixture {
public:
  temp_dir dir;
  std::string path = dir.file("journal.db");

  sqlite_journal_config config(bool read_only = false) const {
    sqlite_journal_config cfg;
    cfg.path = path;
    cfg.read_only = read_only;
    return cfg;
  }

  std::unique_ptr<sqlite_journal> open(sqlite_journal_config cfg) {
    auto j = sqlite_journal::open(std::move(cfg));
    if (!j)
      FAIL("open failed: " << describe(j.error()));
    return std::move(*j);
  }

  std::unique_ptr<sqlite_journal> open_writer() {
    return open(config());
  }

  caf::error open_fails(sqlite_journal_config cfg) {
    auto j = sqlite_journal::open(std::move(cfg));
    if (j)
      FAIL("open of '" << path << "' succeeded but should have failed");
    return std::move(j.error());
  }

  static atomic_write write_for(std::string id, sequence_nr expected_seq, std::size_t events) {
    atomic_write w;
    w.persistence_id = std::move(id);
    w.expected_seq = expected_seq;
    for (std::size_t i = 0; i < events; ++i)
      w.events.push_back(new_event{"counter.incremented", 1,
                                   R"({"seq":)" + std::to_string(expected_seq + i) + "}",
                                   {"counters"}});
    return w;
  }

  static write_result store(journal& j, atomic_write w) {
    auto r = j.write_and_wait(std::move(w));
    if (!r)
      FAIL("write failed: " << describe(r.error()));
    return *r;
  }

  static std::vector<sequence_nr> seqs(journal& j, std::string_view id) {
    auto r = j.replay(id, 1, max_sequence_nr, std::numeric_limits<std::uint64_t>::max());
    if (!r)
      FAIL("replay failed: " << describe(r.error()));
    std::vector<sequence_nr> out;
    for (const auto& ev : r->events)
      out.push_back(ev.seq);
    return out;
  }

  /// Runs `sql` on the database at `path` (created if missing) through the SQLite C API.
  void exec_sql(const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            nullptr)
            == SQLITE_OK);
    char* msg = nullptr;
    auto rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    std::string text = msg ? msg : "";
    sqlite3_free(msg);
    sqlite3_close(db);
    INFO(text);
    REQUIRE(rc == SQLITE_OK);
  }

  /// Sets PRAGMA user_version of the database at `path`.
  void set_user_version(int version) {
    exec_sql("PRAGMA user_version = " + std::to_string(version));
  }

  /// The first column of the first row `sql` returns on the database at `path`, as text
  /// ("<no row>" if none, "<null>" for NULL).
  std::string query_text(const std::string& sql) const {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    auto rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    INFO(sqlite3_errmsg(db));
    REQUIRE(rc == SQLITE_OK);
    std::string out = "<no row>";
    if (sqlite3_step(st) == SQLITE_ROW) {
      auto p = sqlite3_column_text(st, 0);
      out = p ? reinterpret_cast<const char*>(p) : "<null>";
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  /// PRAGMA user_version of the database at `path`.
  int user_version() const { return std::stoi(query_text("PRAGMA user_version")); }
};

} // namespace

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: data survives close and reopen",
                 "[journal][sqlite]") {
  std::uint64_t last_position = 0;
  time_ms saved_at = 0;
  {
    auto j = open_writer();
    store(*j, write_for("durable-a", 1, 3));
    auto w = write_for("durable-b", 1, 2);
    w.timers_to_set.push_back(timer_set{"reminder", 123456, R"({"cmd":"remind"})"});
    w.outbox.push_back(outbox_message{"out-1", "mailer/1", R"({"to":"x"})"});
    w.processed_message_id = "cmd-1";
    last_position = store(*j, std::move(w)).last_position;
    REQUIRE(!j->save_snapshot(snapshot_record{"durable-a", 3, R"({"count":3})", 0}));
    auto snap = j->load_snapshot("durable-a", {});
    REQUIRE(snap);
    REQUIRE(snap->has_value());
    saved_at = (*snap)->saved_at_ms;
    j->close();
  }
  auto j = open_writer();
  CHECK(seqs(*j, "durable-a") == std::vector<sequence_nr>{1, 2, 3});
  CHECK(seqs(*j, "durable-b") == std::vector<sequence_nr>{1, 2});
  auto events = j->replay("durable-a", 1, max_sequence_nr, 10);
  REQUIRE(events);
  REQUIRE(events->events.size() == 3);
  CHECK(events->events[2].payload_json == R"({"seq":3})");
  CHECK(events->events[2].tags == std::vector<std::string>{"counters"});
  auto timers = j->timers_of("durable-b");
  REQUIRE(timers);
  REQUIRE(timers->size() == 1);
  CHECK((*timers)[0].name == "reminder");
  CHECK((*timers)[0].due_ms == 123456);
  CHECK((*timers)[0].payload_json == R"({"cmd":"remind"})");
  auto outbox = j->outbox_pending(0, 10);
  REQUIRE(outbox);
  REQUIRE(outbox->size() == 1);
  CHECK((*outbox)[0].message_id == "out-1");
  CHECK((*outbox)[0].source_persistence_id == "durable-b");
  auto processed = j->is_processed("durable-b", "cmd-1");
  REQUIRE(processed);
  CHECK(*processed);
  auto snap = j->load_snapshot("durable-a", {});
  REQUIRE(snap);
  REQUIRE(snap->has_value());
  CHECK((*snap)->seq == 3);
  CHECK((*snap)->state_json == R"({"count":3})");
  CHECK((*snap)->saved_at_ms == saved_at);
  // Sequence numbers and global positions continue where they stopped.
  auto next = store(*j, write_for("durable-a", 4, 1));
  CHECK(next.highest_seq == 4);
  CHECK(next.last_position > last_position);
  auto dup = j->write_and_wait(write_for("durable-a", 4, 1));
  REQUIRE_FALSE(dup);
  CHECK(persistence_code(dup.error()) == errc::sequence_conflict);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a submitted ticket comes back to done "
                                 "with its write still inside, to be freed by the submitter",
                 "[journal][sqlite]") {
  struct keeping_ticket final : write_ticket {
    std::promise<std::size_t> events_inside;  // what done found in the ticket's write
    void done(caf::expected<write_result> r) override {
      events_inside.set_value(r ? w.events.size() : 0);
    }
  };
  auto j = open_writer();
  auto t = std::make_shared<keeping_ticket>();
  t->w = write_for("kept", 1, 3);
  auto inside = t->events_inside.get_future();
  j->submit(t);
  CHECK(inside.get() == 3);
  CHECK(t->w.persistence_id == "kept");
  CHECK(seqs(*j, "kept") == std::vector<sequence_nr>{1, 2, 3});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a commit checkpoints once the WAL holds "
                                 "checkpoint_pages, so the WAL starts over instead of growing",
                 "[journal][sqlite]") {
  // 300 commits of a 2 KB event each: about 300 pages of WAL without checkpoints.
  auto wal_bytes_after_commits = [&](std::size_t checkpoint_pages) {
    auto cfg = config();
    cfg.checkpoint_pages = checkpoint_pages;
    auto j = open(cfg);
    auto id = "wal-" + std::to_string(checkpoint_pages);
    for (sequence_nr seq = 1; seq <= 300; ++seq) {
      auto w = write_for(id, seq, 1);
      w.events[0].payload_json = R"({"pad":")" + std::string(2000, 'x') + R"("})";
      store(*j, std::move(w));
    }
    auto bytes = std::filesystem::file_size(path + "-wal");
    auto stats = j->statistics();
    j->close();
    return std::pair{bytes, stats};
  };
  auto [never, never_stats] = wal_bytes_after_commits(0);
  auto [every_20_pages, every_20_stats] = wal_bytes_after_commits(20);
  INFO("WAL bytes: " << never << " without checkpoints, " << every_20_pages << " with");
  CHECK(never > 300 * 2000);
  CHECK(every_20_pages < 60 * 4096);
  // The statistics count and time them: part of the commits' time, part of the writer's.
  CHECK(never_stats.checkpoints == 0);
  CHECK(never_stats.checkpoint_ns == 0);
  CHECK(every_20_stats.checkpoints >= 300 / 20);
  CHECK(every_20_stats.checkpoints <= 300);
  CHECK(every_20_stats.checkpoint_ns > 0);
  CHECK(every_20_stats.commit_ns > every_20_stats.checkpoint_ns);
  CHECK(every_20_stats.writer_busy_ns > every_20_stats.commit_ns);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: the highest sequence number survives "
                                 "reopen even after every event was deleted",
                 "[journal][sqlite]") {
  {
    auto j = open_writer();
    store(*j, write_for("trimmed", 1, 5));
    REQUIRE(!j->delete_up_to("trimmed", 5));
  }
  auto j = open_writer();
  auto highest = j->highest_seq("trimmed");
  REQUIRE(highest);
  CHECK(*highest == 5);
  CHECK(seqs(*j, "trimmed").empty());
  auto restart = j->write_and_wait(write_for("trimmed", 1, 1));
  REQUIRE_FALSE(restart);
  CHECK(persistence_code(restart.error()) == errc::sequence_conflict);
  CHECK(store(*j, write_for("trimmed", 6, 1)).highest_seq == 6);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a second writer on the same file is refused "
                                 "with locked_by_other_process naming the holder",
                 "[journal][sqlite]") {
  auto first = open_writer();
  store(*first, write_for("locked", 1, 1));
  auto err = open_fails(config());
  auto text = describe(err);
  CAPTURE(text);
  CHECK(persistence_code(err) == errc::locked_by_other_process);
  CHECK(text.find("journal locked by process") != std::string::npos);
  CHECK(text.find(std::to_string(::getpid())) != std::string::npos);
  // The first writer is unaffected, and the lock goes with it.
  CHECK(store(*first, write_for("locked", 2, 1)).highest_seq == 2);
  first.reset();
  auto second = open_writer();
  CHECK(seqs(*second, "locked") == std::vector<sequence_nr>{1, 2});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a read-only journal reads while the writer "
                                 "holds the file and refuses writes and maintenance with "
                                 "read_only",
                 "[journal][sqlite]") {
  auto writer = open_writer();
  store(*writer, write_for("shared", 1, 2));
  auto reader = open(config(true));
  CHECK(seqs(*reader, "shared") == std::vector<sequence_nr>{1, 2});
  auto refused = reader->write_and_wait(write_for("shared", 3, 1));
  REQUIRE_FALSE(refused);
  CHECK(persistence_code(refused.error()) == errc::read_only);
  CHECK(is_rejection(refused.error()));
  CHECK(persistence_code(reader->delete_up_to("shared", 1)) == errc::read_only);
  CHECK(persistence_code(reader->save_snapshot(snapshot_record{"shared", 1, "{}", 0}))
        == errc::read_only);
  CHECK(persistence_code(reader->delete_snapshots("shared", {})) == errc::read_only);
  CHECK(persistence_code(reader->outbox_delivered({1})) == errc::read_only);
  CHECK(seqs(*reader, "shared") == std::vector<sequence_nr>{1, 2});
  // The reader sees what the writer commits later.
  store(*writer, write_for("shared", 3, 1));
  CHECK(seqs(*reader, "shared") == std::vector<sequence_nr>{1, 2, 3});
  CHECK(seqs(*writer, "shared") == std::vector<sequence_nr>{1, 2, 3});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: read-only open of a missing file fails "
                                 "and creates nothing",
                 "[journal][sqlite]") {
  auto err = open_fails(config(true));
  CHECK(persistence_code(err) == errc::cannot_open);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a database with a newer schema version is "
                                 "refused with schema_too_new",
                 "[journal][sqlite]") {
  {
    auto j = open_writer();
    store(*j, write_for("future", 1, 1));
  }
  set_user_version(sqlite_journal::schema_version + 1);
  auto err = open_fails(config());
  auto text = describe(err);
  CAPTURE(text);
  CHECK(persistence_code(err) == errc::schema_too_new);
  CHECK(text.find(std::to_string(sqlite_journal::schema_version + 1)) != std::string::npos);
  auto ro = open_fails(config(true));
  CHECK(persistence_code(ro) == errc::schema_too_new);
  // Refusing did not touch the file: restoring the version makes it readable again.
  set_user_version(sqlite_journal::schema_version);
  auto j = open_writer();
  CHECK(seqs(*j, "future") == std::vector<sequence_nr>{1});
}

// Schema version 1 as shipped (sqlite_journal.cpp `schema_v1`), with one stream holding an
// event and an accepted processed message, as a version 1 build left it.
const char* const v1_journal = R"sql(
CREATE TABLE streams (
  stream_id       INTEGER PRIMARY KEY,
  persistence_id  TEXT NOT NULL UNIQUE,
  deleted_highest INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
  position       INTEGER PRIMARY KEY AUTOINCREMENT,
  stream_id      INTEGER NOT NULL,
  seq            INTEGER NOT NULL,
  type           TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  payload        TEXT NOT NULL,
  tags           TEXT,
  written_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_by_stream ON events (stream_id, seq);
CREATE TABLE event_tags (
  tag      TEXT NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (tag, position)
) WITHOUT ROWID;
CREATE TABLE snapshots (
  stream_id INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  state     TEXT NOT NULL,
  saved_at  INTEGER NOT NULL,
  PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
CREATE TABLE timers (
  persistence_id TEXT NOT NULL,
  name           TEXT NOT NULL,
  due_at         INTEGER NOT NULL,
  payload        TEXT NOT NULL,
  PRIMARY KEY (persistence_id, name)
) WITHOUT ROWID;
CREATE INDEX timers_by_due ON timers (due_at, persistence_id, name);
CREATE TABLE outbox (
  outbox_seq  INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id  TEXT NOT NULL UNIQUE,
  stream_id   INTEGER NOT NULL,
  destination TEXT NOT NULL,
  payload     TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE TABLE processed_messages (
  stream_id    INTEGER NOT NULL,
  message_id   TEXT NOT NULL,
  processed_at INTEGER NOT NULL,
  PRIMARY KEY (stream_id, message_id)
) WITHOUT ROWID;
CREATE TABLE dead_letters (
  dead_letter_seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id            TEXT NOT NULL,
  source_persistence_id TEXT NOT NULL,
  destination           TEXT NOT NULL,
  payload               TEXT NOT NULL,
  reason                TEXT NOT NULL,
  recorded_at           INTEGER NOT NULL
);
INSERT INTO streams (stream_id, persistence_id) VALUES (1, 'stock/s1');
INSERT INTO events (stream_id, seq, type, schema_version, payload, written_at)
  VALUES (1, 1, 'stock.reserved', 1, '{"qty":3}', 1718100000000);
INSERT INTO processed_messages VALUES (1, 'reserve-1', 1718100000000);
PRAGMA user_version = 1;
)sql";

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a version 1 file is migrated to the current "
                                 "version on a read-write open and keeps its processed ids as "
                                 "accepted, now keyed by message id first",
                 "[journal][sqlite]") {
  exec_sql(v1_journal);
  {
    // Read-only opens never migrate; they read a version 1 file as it is.
    auto reader = open(config(true));
    auto outcome = reader->processed_outcome("stock/s1", "reserve-1");
    REQUIRE(outcome);
    REQUIRE(outcome->has_value());
    CHECK((*outcome)->rejection == std::nullopt);
    CHECK((*outcome)->processed_at_ms == 1718100000000);
  }
  CHECK(user_version() == 1);
  auto j = open_writer();
  CHECK(user_version() == sqlite_journal::schema_version);
  // Version 3 keys processed messages by (message_id, stream_id), with the rows of before.
  CHECK(query_text("SELECT group_concat(name, ',') FROM (SELECT name FROM"
                   " pragma_table_info('processed_messages') WHERE pk > 0 ORDER BY pk)")
        == "message_id,stream_id");
  CHECK(query_text("SELECT count(*) FROM processed_messages") == "1");
  CHECK(seqs(*j, "stock/s1") == std::vector<sequence_nr>{1});
  auto kept = j->processed_outcome("stock/s1", "reserve-1");
  REQUIRE(kept);
  REQUIRE(kept->has_value());
  CHECK((*kept)->rejection == std::nullopt);
  auto again = write_for("stock/s1", 2, 1);
  again.processed_message_id = "reserve-1";
  auto dup = j->write_and_wait(std::move(again));
  REQUIRE_FALSE(dup);
  CHECK(persistence_code(dup.error()) == errc::duplicate_message);
  // The migrated file stores outcomes: a rejection reads back with its text.
  atomic_write rejected;
  rejected.persistence_id = "stock/s1";
  rejected.expected_seq = 2;
  rejected.processed_message_id = "reserve-2";
  rejected.processed_rejection = "rejected: only 10 in stock";
  CHECK(store(*j, std::move(rejected)).highest_seq == 1);
  auto second = j->processed_outcome("stock/s1", "reserve-2");
  REQUIRE(second);
  REQUIRE(second->has_value());
  CHECK((*second)->rejection == std::optional<std::string>{"rejected: only 10 in stock"});
  j.reset();
  // Migrating again is a no-op.
  auto reopened = open_writer();
  CHECK(user_version() == sqlite_journal::schema_version);
  CHECK(seqs(*reopened, "stock/s1") == std::vector<sequence_nr>{1});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a SQLite database that is not a journal is "
                                 "refused with cannot_open",
                 "[journal][sqlite]") {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
                       nullptr, nullptr, nullptr)
          == SQLITE_OK);
  sqlite3_close(db);
  auto err = open_fails(config());
  CAPTURE(describe(err));
  CHECK(persistence_code(err) == errc::cannot_open);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a file that is not a SQLite database is "
                                 "refused and left untouched",
                 "[journal][sqlite]") {
  const std::string garbage(8192, 'g');
  {
    std::ofstream out{path, std::ios::binary};
    out << garbage;
  }
  auto err = open_fails(config());
  CAPTURE(describe(err));
  auto code = persistence_code(err);
  CHECK((code == errc::cannot_open || code == errc::corrupt));
  std::ifstream in{path, std::ios::binary};
  std::string content{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  CHECK(content == garbage);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: sync modes full, normal and off all open, "
                                 "write and read back",
                 "[journal][sqlite]") {
  for (auto mode : {sync_mode::full, sync_mode::normal, sync_mode::off}) {
    CAPTURE(static_cast<int>(mode));
    auto cfg = config();
    cfg.path = dir.file("sync-" + std::to_string(static_cast<int>(mode)) + ".db");
    cfg.sync = mode;
    {
      auto j = open(cfg);
      store(*j, write_for("synced", 1, 2));
      store(*j, write_for("synced", 3, 1));
    }
    auto j = open(cfg);
    CHECK(seqs(*j, "synced") == std::vector<sequence_nr>{1, 2, 3});
  }
}

TEST_CASE("sqlite journal: parse_sync_mode accepts full, normal and off and rejects fast",
          "[journal][sqlite]") {
  CHECK(parse_sync_mode("full") == sync_mode::full);
  CHECK(parse_sync_mode("normal") == sync_mode::normal);
  CHECK(parse_sync_mode("off") == sync_mode::off);
  auto fast = parse_sync_mode("fast");
  REQUIRE_FALSE(fast);
  CHECK(persistence_code(fast.error()) == errc::invalid_argument);
  CHECK(describe(fast.error()).find("fast") != std::string::npos);
  CHECK_FALSE(parse_sync_mode(""));
  CHECK_FALSE(parse_sync_mode("FULL "));
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: close acknowledges every queued write and "
                                 "later writes fail with closed",
                 "[journal][sqlite]") {
  auto j = open_writer();
  std::atomic<int> stored{0};
  std::atomic<int> failed{0};
  for (sequence_nr i = 1; i <= 100; ++i)
    j->write(write_for("closing", i, 1), [&](caf::expected<write_result> r) {
      ++(r ? stored : failed);
    });
  j->close();
  CHECK(stored.load() == 100);
  CHECK(failed.load() == 0);
  auto late = j->write_and_wait(write_for("closing", 101, 1));
  REQUIRE_FALSE(late);
  CHECK(persistence_code(late.error()) == errc::closed);
  j->close();  // idempotent
  j.reset();
  auto reopened = open_writer();
  auto highest = reopened->highest_seq("closing");
  REQUIRE(highest);
  CHECK(*highest == 100);
}

namespace {

/// One untagged event and nothing else: the write shape stored without a SAVEPOINT.
atomic_write plain_write(std::string id, sequence_nr expected_seq) {
  atomic_write w;
  w.persistence_id = std::move(id);
  w.expected_seq = expected_seq;
  w.events.push_back(new_event{"thing.happened", 1, R"({"n":1})", {}});
  return w;
}

/// Queues `writes` without waiting (so that they usually share one batch), flushes, and
/// returns each write's outcome, in order.
std::vector<caf::expected<write_result>> write_together(sqlite_journal& j,
                                                        std::vector<atomic_write> writes) {
  std::vector<caf::expected<write_result>> results(writes.size(), caf::error{});
  std::atomic<std::size_t> done{0};
  for (std::size_t i = 0; i < writes.size(); ++i)
    j.write(std::move(writes[i]), [&results, &done, i](caf::expected<write_result> r) {
      results[i] = std::move(r);
      ++done;
    });
  j.flush();
  REQUIRE(done.load() == results.size());
  return results;
}

} // namespace

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: first writes of new streams commit next to a "
                                 "rejected write in the same batch",
                 "[journal][sqlite]") {
  auto j = open_writer();
  std::vector<atomic_write> writes;
  writes.push_back(plain_write("new-1", 1));
  writes.push_back(plain_write("new-2", 2));  // gap: rejected
  writes.push_back(plain_write("new-3", 1));
  writes.push_back(plain_write("new-1", 2));
  auto results = write_together(*j, std::move(writes));
  CHECK(results[0]);
  REQUIRE_FALSE(results[1]);
  CHECK(persistence_code(results[1].error()) == errc::sequence_conflict);
  CHECK(results[2]);
  CHECK(results[3]);
  CHECK(seqs(*j, "new-1") == std::vector<sequence_nr>{1, 2});
  CHECK(seqs(*j, "new-2").empty());
  CHECK(seqs(*j, "new-3") == std::vector<sequence_nr>{1});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: writes for new streams in one batch, also "
                                 "when a duplicate delivery makes the batch run again",
                 "[journal][sqlite]") {
  auto j = open_writer();
  auto fresh = [](std::string id) {
    auto w = plain_write(std::move(id), 1);
    w.new_stream = true;
    return w;
  };
  auto seen = plain_write("seen", 1);
  seen.processed_message_id = "m-1";
  REQUIRE(j->write_and_wait(std::move(seen)));
  std::vector<atomic_write> writes;
  writes.push_back(fresh("fresh-1"));
  writes.push_back(fresh("fresh-1"));  // the first one made the stream: refused
  auto dup = plain_write("seen", 2);
  dup.processed_message_id = "m-1";  // refuses the optimistic batch: it runs again
  writes.push_back(std::move(dup));
  writes.push_back(fresh("fresh-2"));
  writes.push_back(fresh("seen"));  // has a stream
  auto results = write_together(*j, std::move(writes));
  CHECK(results[0]);
  REQUIRE_FALSE(results[1]);
  CHECK(persistence_code(results[1].error()) == errc::sequence_conflict);
  REQUIRE_FALSE(results[2]);
  CHECK(persistence_code(results[2].error()) == errc::duplicate_message);
  CHECK(results[3]);
  REQUIRE_FALSE(results[4]);
  CHECK(persistence_code(results[4].error()) == errc::sequence_conflict);
  CHECK(seqs(*j, "fresh-1") == std::vector<sequence_nr>{1});
  CHECK(seqs(*j, "fresh-2") == std::vector<sequence_nr>{1});
  CHECK(seqs(*j, "seen") == std::vector<sequence_nr>{1});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a new stream's event that conflicts with a "
                                 "foreign row fails its batch and leaves no stream row behind",
                 "[journal][sqlite]") {
  {
    auto j = open_writer();
    store(*j, plain_write("first", 1));  // stream_id 1
  }
  // A foreign writer (I8 bypassed) stores an event for the next stream_id, 2.
  exec_sql("INSERT INTO events (stream_id, seq, type, schema_version, payload, written_at)"
           " VALUES (2, 1, 'foreign.row', 1, '{}', 0)");
  auto j = open_writer();
  auto r = j->write_and_wait(plain_write("second", 1));
  REQUIRE_FALSE(r);
  CHECK_FALSE(is_rejection(r.error()));
  // The batch's events go in at its end, after the write's stream row: the conflict there
  // fails the whole batch (I2), it is not the write's rejection.
  CHECK_THAT(describe(r.error()), Catch::Matchers::Contains("appending events"));
  // Had the stream row of "second" (stream_id 2) stayed, its highest would be the foreign
  // row's seq 1.
  auto highest = j->highest_seq("second");
  REQUIRE(highest);
  CHECK(*highest == 0);
  CHECK(seqs(*j, "first") == std::vector<sequence_nr>{1});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a duplicate delivery with events, tags and "
                                 "timers is rejected alone and stores none of its parts",
                 "[journal][sqlite]") {
  auto j = open_writer();
  auto delivery = [](sequence_nr expected_seq, std::string timer) {
    auto w = plain_write("dedup", expected_seq);
    w.events.front().tags = {"order"};
    w.events.push_back(new_event{"thing.tagged", 1, R"({"n":2})", {"order", "audit"}});
    w.timers_to_set.push_back({std::move(timer), 5000, R"({"name":"ring"})"});
    w.processed_message_id = "msg-1";
    return w;
  };
  store(*j, delivery(1, "first"));
  // No SAVEPOINT is used for the duplicate: its processed-message insert is its first
  // statement.
  std::vector<atomic_write> writes;
  writes.push_back(plain_write("neighbour-a", 1));
  writes.push_back(delivery(3, "second"));
  writes.push_back(plain_write("neighbour-b", 1));
  auto results = write_together(*j, std::move(writes));
  CHECK(results[0]);
  REQUIRE_FALSE(results[1]);
  CHECK(persistence_code(results[1].error()) == errc::duplicate_message);
  CHECK(results[2]);
  CHECK(seqs(*j, "dedup") == std::vector<sequence_nr>{1, 2});
  auto timers = j->timers_of("dedup");
  REQUIRE(timers);
  REQUIRE(timers->size() == 1);
  CHECK(timers->front().name == "first");
  auto tagged = j->read_all(0, 100, std::string{"audit"});
  REQUIRE(tagged);
  CHECK(tagged->size() == 1);
  CHECK(seqs(*j, "neighbour-a") == std::vector<sequence_nr>{1});
  CHECK(seqs(*j, "neighbour-b") == std::vector<sequence_nr>{1});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: the events, tags and timer changes of writes "
                                 "stored together keep their write order",
                 "[journal][sqlite]") {
  auto j = open_writer();
  // Queued without waiting, so that they usually share a batch (whose events and tags are
  // stored at its end); the outcome must be that of one write at a time.
  auto timed = [](std::string id, sequence_nr seq, std::size_t events) {
    atomic_write w;
    w.persistence_id = std::move(id);
    w.expected_seq = seq;
    for (std::size_t i = 0; i < events; ++i)
      w.events.push_back(new_event{"thing.happened", 1,
                                   R"({"n":)" + std::to_string(seq + i) + "}", {"t", "u"}});
    return w;
  };
  std::vector<atomic_write> writes;
  auto a1 = timed("a", 1, 3);
  a1.timers_to_set = {{"t1", 100, "{}"}, {"t2", 200, "{}"}};
  writes.push_back(std::move(a1));
  auto b1 = timed("b", 1, 40);  // more rows than one statement takes
  b1.timers_to_set = {{"t1", 300, "{}"}};
  writes.push_back(std::move(b1));
  auto a2 = timed("a", 4, 1);
  a2.timers_to_cancel = {{"t1"}};
  a2.timers_to_set = {{"t2", 250, R"({"v":2})"}, {"t3", 350, "{}"}};
  writes.push_back(std::move(a2));
  auto b2 = timed("b", 41, 0);
  b2.cancel_all_timers = true;
  b2.timers_to_set = {{"t4", 400, "{}"}};
  writes.push_back(std::move(b2));
  auto a3 = timed("a", 5, 2);
  a3.timers_to_cancel = {{"t3"}, {"t9"}};
  a3.timers_to_set = {{"t1", 150, "{}"}, {"t1", 160, "{}"}};  // the later one wins
  writes.push_back(std::move(a3));
  auto results = write_together(*j, std::move(writes));
  for (const auto& r : results)
    REQUIRE(r);
  CHECK(results[0]->highest_seq == 3);
  CHECK(results[1]->highest_seq == 40);
  CHECK(results[2]->highest_seq == 4);
  CHECK(results[3]->highest_seq == 40);
  CHECK(results[4]->highest_seq == 6);
  // Each write's last_position is its last event's position, and positions follow the
  // write order.
  auto all = j->read_all(0, 1000, std::nullopt);
  REQUIRE(all);
  REQUIRE(all->size() == 46);
  std::vector<std::pair<std::string, sequence_nr>> order;
  for (const auto& ev : *all)
    order.emplace_back(ev.persistence_id, ev.seq);
  CHECK(order[0] == std::pair<std::string, sequence_nr>{"a", 1});
  CHECK(order[3] == std::pair<std::string, sequence_nr>{"b", 1});
  CHECK(order[42] == std::pair<std::string, sequence_nr>{"b", 40});
  CHECK(order[43] == std::pair<std::string, sequence_nr>{"a", 4});
  CHECK(order[45] == std::pair<std::string, sequence_nr>{"a", 6});
  CHECK(results[0]->last_position == (*all)[2].position);
  CHECK(results[1]->last_position == (*all)[42].position);
  CHECK(results[2]->last_position == (*all)[43].position);
  CHECK(results[4]->last_position == (*all)[45].position);
  for (std::size_t i = 1; i < all->size(); ++i)
    CHECK((*all)[i].position == (*all)[i - 1].position + 1);
  auto tagged = j->read_all(0, 1000, std::string{"u"});
  REQUIRE(tagged);
  CHECK(tagged->size() == 46);
  auto names = [&](std::string_view id) {
    std::vector<std::pair<std::string, time_ms>> out;
    auto t = j->timers_of(id);
    REQUIRE(t);
    for (const auto& x : *t)
      out.emplace_back(x.name, x.due_ms);
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(names("a") == std::vector<std::pair<std::string, time_ms>>{{"t1", 160}, {"t2", 250}});
  CHECK(names("b") == std::vector<std::pair<std::string, time_ms>>{{"t4", 400}});
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: timer changes of writes stored together "
                                 "leave what the writes one at a time would",
                 "[journal][sqlite]") {
  // The writer reduces a batch's timer changes per id to their net effect (cancel_alls,
  // then named cancels, then sets): each case below ends as the writes applied in order.
  auto j = open_writer();
  auto write = [](std::string id, sequence_nr seq) {
    atomic_write w;
    w.persistence_id = std::move(id);
    w.expected_seq = seq;
    w.events.push_back(new_event{"thing.happened", 1, "{}", {}});
    return w;
  };
  // Timers stored before the batch, for its cancels to find.
  for (std::string id : {"kept", "cancelled", "all-gone", "all-then-set", "flow"}) {
    auto w = write(id, 1);
    w.timers_to_set = {{"t1", 100, R"({"v":"old"})"}, {"t2", 200, "{}"}};
    REQUIRE(j->write_and_wait(std::move(w)));
  }
  std::vector<atomic_write> writes;
  // A set in one write and its cancel in a later one: gone; the other name stays.
  auto s1 = write("set-then-cancel", 1);
  s1.timers_to_set = {{"t1", 10, "{}"}, {"t2", 20, "{}"}};
  writes.push_back(std::move(s1));
  auto c1 = write("cancelled", 2);
  c1.timers_to_cancel = {{"t1"}};
  writes.push_back(std::move(c1));
  auto s2 = write("set-then-cancel", 2);
  s2.timers_to_cancel = {{"t1"}};
  writes.push_back(std::move(s2));
  // cancel_all removes stored timers and this batch's earlier sets, not its later ones.
  auto a1 = write("all-then-set", 2);
  a1.timers_to_set = {{"t3", 300, "{}"}};
  writes.push_back(std::move(a1));
  auto a2 = write("all-then-set", 3);
  a2.cancel_all_timers = true;
  a2.timers_to_set = {{"t4", 400, "{}"}};
  writes.push_back(std::move(a2));
  auto g1 = write("all-gone", 2);
  g1.cancel_all_timers = true;
  g1.timers_to_set = {{"t5", 500, "{}"}};
  writes.push_back(std::move(g1));
  // A cancel after a cancel_all still removes what was set after it.
  auto g2 = write("all-gone", 3);
  g2.timers_to_cancel = {{"t5"}, {"t1"}};
  writes.push_back(std::move(g2));
  // A flow leaving one wait for the next: cancel and set of one name in each write; the
  // last set wins, with its due time and payload.
  for (sequence_nr seq = 2; seq <= 4; ++seq) {
    auto f = write("flow", seq);
    f.timers_to_cancel = {{"t1"}};
    f.timers_to_set = {{"t1", static_cast<time_ms>(1000 * seq),
                        R"({"wait":)" + std::to_string(seq) + "}"}};
    writes.push_back(std::move(f));
  }
  // More changes of one kind than a statement takes.
  auto many = write("many", 1);
  for (int i = 0; i < 70; ++i)
    many.timers_to_set.push_back({"m" + std::to_string(i), 10'000 + i, "{}"});
  writes.push_back(std::move(many));
  auto fewer = write("many", 2);
  for (int i = 0; i < 70; i += 2)
    fewer.timers_to_cancel.push_back({"m" + std::to_string(i)});
  writes.push_back(std::move(fewer));
  auto results = write_together(*j, std::move(writes));
  for (const auto& r : results)
    REQUIRE(r);
  auto timers = [&](std::string_view id) {
    std::vector<std::string> out;
    auto t = j->timers_of(id);
    REQUIRE(t);
    for (const auto& x : *t)
      out.push_back(x.name + "@" + std::to_string(x.due_ms) + x.payload_json);
    std::sort(out.begin(), out.end());
    return out;
  };
  using names = std::vector<std::string>;
  CHECK(timers("kept") == names{"t1@100{\"v\":\"old\"}", "t2@200{}"});
  CHECK(timers("cancelled") == names{"t2@200{}"});
  CHECK(timers("set-then-cancel") == names{"t2@20{}"});
  CHECK(timers("all-then-set") == names{"t4@400{}"});
  CHECK(timers("all-gone").empty());
  CHECK(timers("flow") == names{"t1@4000{\"wait\":4}", "t2@200{}"});
  auto left = timers("many");
  REQUIRE(left.size() == 35);
  CHECK(left.front() == "m11@10011{}");
  // The due index agrees with the table: every timer is found in due order, once.
  auto due = j->timers_due(std::numeric_limits<time_ms>::max(), 1000);
  REQUIRE(due);
  CHECK(due->size() == 2 + 1 + 1 + 1 + 2 + 35);
  for (std::size_t i = 1; i < due->size(); ++i)
    CHECK((*due)[i - 1].due_ms <= (*due)[i].due_ms);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a first write creates its stream row at once, "
                                 "and one for an id already stored falls back to the lookup",
                 "[journal][sqlite]") {
  {
    auto j = open_writer();
    // A stream row without events: a write of timers only.
    atomic_write timers_only;
    timers_only.persistence_id = "timed";
    timers_only.expected_seq = 1;
    timers_only.timers_to_set = {{"t", 100, "{}"}};
    store(*j, std::move(timers_only));
    store(*j, write_for("busy", 1, 3));
  }
  // A fresh writer (empty stream cache) sees first writes of ids the file already holds.
  auto j = open_writer();
  std::vector<atomic_write> writes;
  writes.push_back(write_for("timed", 1, 2));    // row exists, highest 0: stored
  writes.push_back(write_for("busy", 1, 1));     // row exists, highest 3: sequence conflict
  writes.push_back(write_for("fresh", 1, 1));    // new: created by the first INSERT
  auto twice = write_for("twice", 1, 1);         // new, but refused: no row may stay
  twice.outbox = {outbox_message{"m", "sink/1", "{}"}, outbox_message{"m", "sink/2", "{}"}};
  writes.push_back(std::move(twice));
  writes.push_back(write_for("after", 1, 1));
  auto results = write_together(*j, std::move(writes));
  REQUIRE(results[0]);
  CHECK(results[0]->highest_seq == 2);
  REQUIRE_FALSE(results[1]);
  CHECK(persistence_code(results[1].error()) == errc::sequence_conflict);
  CHECK(is_rejection(results[1].error()));
  CHECK(results[2]);
  REQUIRE_FALSE(results[3]);
  CHECK(persistence_code(results[3].error()) == errc::invalid_argument);
  CHECK(results[4]);
  CHECK(seqs(*j, "timed") == std::vector<sequence_nr>{1, 2});
  CHECK(seqs(*j, "busy") == std::vector<sequence_nr>{1, 2, 3});
  CHECK(seqs(*j, "fresh") == std::vector<sequence_nr>{1});
  CHECK(seqs(*j, "after") == std::vector<sequence_nr>{1});
  auto timers = j->timers_of("timed");
  REQUIRE(timers);
  CHECK(timers->size() == 1);
  j.reset();
  CHECK(query_text("SELECT count(*) FROM streams WHERE persistence_id = 'timed'") == "1");
  CHECK(query_text("SELECT count(*) FROM streams WHERE persistence_id = 'twice'") == "0");
  CHECK(query_text("SELECT count(*) FROM streams") == "4");
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: a batch whose messages are refused at its end "
                                 "is run again one write at a time",
                 "[journal][sqlite]") {
  auto j = open_writer();
  auto first = write_for("known", 1, 1);
  first.processed_message_id = "msg-known";
  first.outbox = {outbox_message{"out-pending", "sink/1", "{}"}};
  store(*j, std::move(first));
  // Processed-message and outbox rows of a batch go in together at its end; the duplicate
  // and the reused id below refuse them, and the batch runs again write by write.
  std::vector<atomic_write> writes;
  auto n1 = write_for("new-1", 1, 2);
  n1.processed_message_id = "msg-a";
  n1.outbox = {outbox_message{"out-a1", "sink/1", R"({"k":1})"},
               outbox_message{"out-a2", "sink/2", R"({"k":2})"}};
  writes.push_back(std::move(n1));
  auto dup = write_for("known", 2, 1);
  dup.processed_message_id = "msg-known";  // already processed: duplicate_message
  writes.push_back(std::move(dup));
  auto reuse = write_for("new-2", 1, 1);
  reuse.outbox = {outbox_message{"out-pending", "sink/3", "{}"}};  // pending: refused
  writes.push_back(std::move(reuse));
  auto n3 = write_for("new-3", 1, 1);
  n3.processed_message_id = "msg-a";  // the same id for another id: accepted
  n3.outbox = {outbox_message{"out-c", "sink/1", "{}"}};
  writes.push_back(std::move(n3));
  auto results = write_together(*j, std::move(writes));
  REQUIRE(results[0]);
  REQUIRE_FALSE(results[1]);
  CHECK(persistence_code(results[1].error()) == errc::duplicate_message);
  REQUIRE_FALSE(results[2]);
  CHECK(persistence_code(results[2].error()) == errc::invalid_argument);
  REQUIRE(results[3]);
  CHECK(seqs(*j, "new-1") == std::vector<sequence_nr>{1, 2});
  CHECK(seqs(*j, "known") == std::vector<sequence_nr>{1});
  CHECK(seqs(*j, "new-2").empty());
  CHECK(seqs(*j, "new-3") == std::vector<sequence_nr>{1});
  auto processed = [&](std::string_view id, std::string_view msg) {
    auto r = j->is_processed(id, msg);
    REQUIRE(r);
    return *r;
  };
  CHECK(processed("new-1", "msg-a"));
  CHECK(processed("new-3", "msg-a"));
  auto pending = j->outbox_pending(0, 100);
  REQUIRE(pending);
  std::vector<std::string> ids;
  for (const auto& row : *pending)
    ids.push_back(row.message_id);
  CHECK(ids == std::vector<std::string>{"out-pending", "out-a1", "out-a2", "out-c"});
  // The rejected write left no stream row behind.
  j.reset();
  CHECK(query_text("SELECT count(*) FROM streams WHERE persistence_id = 'new-2'") == "0");
}

namespace {

/// The rows of `r` as text, one line each: every field, for comparing two reads.
std::vector<std::string> outbox_lines(const caf::expected<std::vector<outbox_record>>& r) {
  if (!r)
    FAIL("outbox_pending failed: " << describe(r.error()));
  std::vector<std::string> out;
  for (const auto& row : *r)
    out.push_back(std::to_string(row.outbox_seq) + " " + row.message_id + " "
                  + row.source_persistence_id + " " + row.destination + " " + row.payload_json
                  + " " + std::to_string(row.created_at_ms));
  return out;
}

atomic_write write_with_outbox(std::string id, sequence_nr expected_seq,
                               std::vector<std::string> message_ids) {
  atomic_write w;
  w.persistence_id = std::move(id);
  w.expected_seq = expected_seq;
  w.events.push_back(new_event{"sent", 1, "{}", {}});
  for (auto& m : message_ids)
    w.outbox.push_back(outbox_message{m, "sink/" + m, R"({"m":")" + m + R"("})"});
  return w;
}

} // namespace

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: outbox_pending answers from the outbox tail "
                                 "in memory exactly what a read of the file answers",
                 "[journal][sqlite]") {
  auto cfg = config();
  cfg.outbox_tail_rows = 5;
  auto j = open(cfg);
  auto file = open(config(true));  // read-only: every outbox_pending reads the file
  auto from_memory = [&] { return j->statistics().outbox_reads_in_memory; };
  auto from_file = [&] { return j->statistics().outbox_reads_from_file; };

  store(*j, write_with_outbox("a", 1, {"m1", "m2"}));
  store(*j, write_with_outbox("b", 1, {"m3"}));
  // A batch with a refused write: none of its rows reaches the tail (I2), not even those
  // of its first multi-row INSERT (32 rows), which went in before m1 was refused.
  std::vector<std::string> refused_ids;
  for (int i = 0; i < 32; ++i)
    refused_ids.push_back("c" + std::to_string(i));
  refused_ids.push_back("m1");  // pending: refused
  std::vector<atomic_write> batch;
  batch.push_back(write_with_outbox("a", 2, {"m4"}));
  batch.push_back(write_with_outbox("c", 1, refused_ids));
  batch.push_back(write_with_outbox("b", 2, {"m5"}));
  auto results = write_together(*j, std::move(batch));
  REQUIRE(results[0]);
  REQUIRE_FALSE(results[1]);
  REQUIRE(results[2]);

  auto expected = outbox_lines(file->outbox_pending(0, 100));
  REQUIRE(expected.size() == 5);
  auto memory0 = from_memory();
  auto file0 = from_file();
  // Page through as the dispatcher does: each read after the last row it was given.
  auto first = j->outbox_pending(0, 2);
  auto page1 = outbox_lines(first);
  CHECK(page1 == std::vector<std::string>{expected[0], expected[1]});
  auto page2 = outbox_lines(j->outbox_pending(first->back().outbox_seq, 100));
  CHECK(page2 == std::vector<std::string>{expected[2], expected[3], expected[4]});
  CHECK(from_memory() == memory0 + 2);
  CHECK(from_file() == file0);
  // Rows handed out left the tail; a read from before them (a retry) reads the file.
  CHECK(outbox_lines(j->outbox_pending(0, 100)) == expected);
  CHECK(from_file() == file0 + 1);

  // A committed removal takes rows out of the tail as well, both ways of removing.
  auto last = std::stoull(expected[4]);
  store(*j, write_with_outbox("a", 3, {"m6", "m7", "m8"}));
  auto newer = outbox_lines(file->outbox_pending(last, 100));
  REQUIRE(newer.size() == 3);
  auto seq_of = [](const std::string& line) { return std::stoull(line); };
  REQUIRE_FALSE(j->outbox_delivered({seq_of(newer[0])}));
  std::promise<caf::error> removed;
  j->outbox_delivered_async({seq_of(newer[2])},
                            [&removed](caf::error err) { removed.set_value(std::move(err)); });
  CHECK_FALSE(removed.get_future().get());
  auto memory1 = from_memory();
  CHECK(outbox_lines(j->outbox_pending(last, 100)) == std::vector<std::string>{newer[1]});
  CHECK(outbox_lines(file->outbox_pending(last, 100)) == std::vector<std::string>{newer[1]});
  CHECK(from_memory() == memory1 + 1);

  // More rows than the tail holds: the oldest leave it, and a read from before them reads
  // the file, with the same answer.
  auto before = seq_of(newer[1]);
  store(*j, write_with_outbox("b", 3, {"m9", "m10", "m11", "m12", "m13", "m14"}));
  auto all_new = outbox_lines(file->outbox_pending(before, 100));
  REQUIRE(all_new.size() == 6);
  auto file1 = from_file();
  CHECK(outbox_lines(j->outbox_pending(before, 100)) == all_new);
  CHECK(from_file() == file1 + 1);
  auto tail_start = seq_of(all_new[0]);  // the newest 5 rows stayed in the tail
  auto memory2 = from_memory();
  CHECK(outbox_lines(j->outbox_pending(tail_start, 100))
        == std::vector<std::string>(all_new.begin() + 1, all_new.end()));
  CHECK(from_memory() == memory2 + 1);

  // After a reopen the rows from before are read from the file, new ones from memory.
  j.reset();
  j = open(cfg);
  store(*j, write_with_outbox("d", 1, {"m15"}));
  auto after_reopen = outbox_lines(file->outbox_pending(0, 100));
  CHECK(outbox_lines(j->outbox_pending(0, 100)) == after_reopen);
  CHECK(j->statistics().outbox_reads_from_file == 1);
  auto newest = outbox_lines(j->outbox_pending(seq_of(after_reopen[after_reopen.size() - 2]), 100));
  CHECK(newest == std::vector<std::string>{after_reopen.back()});
  CHECK(j->statistics().outbox_reads_in_memory == 1);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: with outbox_tail_rows 0 every outbox_pending "
                                 "reads the file",
                 "[journal][sqlite]") {
  auto cfg = config();
  cfg.outbox_tail_rows = 0;
  auto j = open(cfg);
  store(*j, write_with_outbox("a", 1, {"m1", "m2"}));
  auto rows = outbox_lines(j->outbox_pending(0, 100));
  CHECK(rows.size() == 2);
  CHECK(outbox_lines(j->outbox_pending(std::stoull(rows[0]), 100)).size() == 1);
  CHECK(j->statistics().outbox_reads_in_memory == 0);
  CHECK(j->statistics().outbox_reads_from_file == 2);
}

TEST_CASE_METHOD(sqlite_fixture, "sqlite journal: statistics count stored events and writes "
                                 "refused inside a batch",
                 "[journal][sqlite]") {
  auto j = open_writer();
  store(*j, write_for("a", 1, 3));
  std::vector<atomic_write> batch;
  batch.push_back(write_for("a", 4, 2));
  batch.push_back(write_for("a", 9, 1));  // gap: refused, its event is not stored
  batch.push_back(write_for("b", 1, 1));
  auto results = write_together(*j, std::move(batch));
  REQUIRE(results[0]);
  REQUIRE_FALSE(results[1]);
  REQUIRE(results[2]);
  auto s = j->statistics();
  CHECK(s.events == 6);
  CHECK(s.refused_writes == 1);
  CHECK(s.failed_writes == 0);
  CHECK(s.writes == 4);
}

// -- SQLite's memory statistics ---------------------------------------------------------------
//
// They can only be switched before SQLite's first use in a process, so each hidden case below
// runs alone in a process of its own, started by the visible case after them.

namespace {

/// Opens a journal as the process's first use of SQLite and checks what SQLite counts.
void check_memory_status_after_open(bool keep) {
  temp_dir dir;
  sqlite_journal_config cfg;
  cfg.path = dir.file("journal.db");
  cfg.sqlite_memory_status = keep;
  auto j = sqlite_journal::open(std::move(cfg));
  REQUIRE(j);
  atomic_write w;
  w.persistence_id = "counted";
  w.expected_seq = 1;
  w.events.push_back(new_event{"thing.happened", 1, "{}", {}});
  REQUIRE((*j)->write_and_wait(std::move(w)));
  // Off: SQLite's allocations are not counted (and may not be switched any more).
  if (keep)
    CHECK(sqlite3_memory_used() > 0);
  else
    CHECK(sqlite3_memory_used() == 0);
  CHECK_FALSE(disable_sqlite_memory_status());  // SQLite is initialized now
}

/// Runs the hidden test case `name` of this executable in a new process; its exit status.
int run_alone(const char* name) {
  auto pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    const char* args[] = {exe.c_str(), name, "-w", "NoTests", nullptr};
    ::execv(exe.c_str(), const_cast<char* const*>(args));
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

} // namespace

TEST_CASE("memory statistics when a journal opens first in its process (defaults)", "[.memstatus]") {
  check_memory_status_after_open(false);
}

TEST_CASE("memory statistics when a journal opens first in its process (kept)", "[.memstatus]") {
  check_memory_status_after_open(true);
}

TEST_CASE("sqlite journal: opening turns SQLite's memory statistics off when it is SQLite's "
          "first use in the process, unless sqlite_memory_status keeps them",
          "[journal][sqlite]") {
  CHECK(run_alone("memory statistics when a journal opens first in its process (defaults)") == 0);
  CHECK(run_alone("memory statistics when a journal opens first in its process (kept)") == 0);
}
