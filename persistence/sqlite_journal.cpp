// The SQLite journal: schema and migrations, the single-writer lock, the group-commit
// writer thread, and pooled read connections. The only place (with sqlite_fault_vfs.cpp)
// that includes sqlite3.h; SQLite result codes become persistence errors in `translate`.
// Invariants (I1..) and failure modes are numbered in persistence/JOURNAL.md.
#include "persistence/sqlite_journal.hpp"
#include "persistence/sqlite_wal_buffer.hpp"

#include <sqlite3.h>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <future>
#include <mutex>
#include <span>
#include <sys/file.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <variant>

namespace longhaul::persistence {

caf::expected<sync_mode> parse_sync_mode(std::string_view text) {
  if (text == "full")
    return sync_mode::full;
  if (text == "normal")
    return sync_mode::normal;
  if (text == "off")
    return sync_mode::off;
  return make_persistence_error(persistence_errc::invalid_argument,
                                "unknown sync mode '" + std::string{text}
                                  + "' (expected full, normal or off)");
}

namespace {

constexpr std::int64_t max_int64 = std::numeric_limits<std::int64_t>::max();

std::int64_t clamp64(std::uint64_t x) {
  return x > static_cast<std::uint64_t>(max_int64) ? max_int64 : static_cast<std::int64_t>(x);
}

time_ms system_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// Turns a SQLite result code into a persistence error (the one translation point).
caf::error translate(int rc, sqlite3* db, std::string_view what) {
  auto code = persistence_errc::internal;
  switch (rc & 0xff) {
    case SQLITE_FULL: code = persistence_errc::disk_full; break;
    case SQLITE_IOERR: code = persistence_errc::io_error; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = persistence_errc::busy; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = persistence_errc::corrupt; break;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH: code = persistence_errc::cannot_open; break;
    case SQLITE_READONLY: code = persistence_errc::read_only; break;
    default: break;
  }
  std::string text{what};
  text += ": ";
  text += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  text += " (sqlite code " + std::to_string(rc) + ")";
  return make_persistence_error(code, std::move(text));
}

// -- thin RAII wrappers ---------------------------------------------------------

/// A prepared statement that is reset (and its bindings cleared) after each use.
class statement {
public:
  statement() = default;
  statement(sqlite3* db, sqlite3_stmt* s) : db_(db), stmt_(s) {}
  statement(statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
  statement& operator=(statement&& other) noexcept {
    std::swap(db_, other.db_);
    std::swap(stmt_, other.stmt_);
    return *this;
  }
  ~statement() { sqlite3_finalize(stmt_); }

  statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // Strings are bound SQLITE_STATIC: callers keep them alive until the step completes.
  statement& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  statement& bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  /// SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string{};
  }

private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

/// Resets a statement when leaving a scope, so early returns never leave it busy.
struct reset_guard {
  statement& s;
  ~reset_guard() { s.reset(); }
};

/// One SQLite connection with a cache of prepared statements keyed by their SQL.
class connection {
public:
  connection() = default;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() {
    cache_.clear();
    if (db_ != nullptr)
      sqlite3_close_v2(db_);
  }

  caf::error open(const std::string& path, bool read_only, const std::string& vfs) {
    int flags = SQLITE_OPEN_NOMUTEX
                | (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    auto rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs.empty() ? nullptr : vfs.c_str());
    if (rc != SQLITE_OK)
      return translate(rc, db_, "cannot open journal '" + path + "'");
    sqlite3_extended_result_codes(db_, 1);
    return {};
  }

  sqlite3* handle() const { return db_; }

  caf::error exec(const std::string& sql) {
    char* msg = nullptr;
    auto rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
    sqlite3_free(msg);
    if (rc != SQLITE_OK)
      return translate(rc, db_, "executing '" + sql.substr(0, 60) + "'");
    return {};
  }

  /// The cached prepared statement for `sql` (prepared on first use).
  caf::expected<statement*> prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end())
      return &it->second;
    sqlite3_stmt* raw = nullptr;
    auto rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    if (rc != SQLITE_OK)
      return translate(rc, db_, std::string{"preparing '"} + sql + "'");
    return &cache_.emplace(sql, statement{db_, raw}).first->second;
  }

  /// Runs a statement that returns no rows (or ignores them).
  caf::error run(statement& s, std::string_view what) {
    reset_guard guard{s};
    auto rc = s.step();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return translate(rc, db_, what);
    return {};
  }

private:
  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, statement> cache_;
};

// -- schema --------------------------------------------------------------------

// Schema version 1. Annotated in JOURNAL.md §Schema. Key shape: events are keyed by an
// append-only integer position (rowid) and found per stream through a compact integer
// index (stream_id, seq), so appends touch the right edge of the table and a small index
// instead of a TEXT primary key spread over the whole file (I9). AUTOINCREMENT: positions
// and outbox numbers are never reused, even after the newest rows are deleted (I11).
const char* const schema_v1 = R"sql(
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
)sql";

// Schema version 2: a processed message keeps its outcome, so a redelivery is answered
// as the first time (I7): NULL = accepted (also every row written by version 1), else the
// rejection's text. Dead letters are found by message id, so that an identical one is
// stored once (I15).
const char* const schema_v2 = R"sql(
ALTER TABLE processed_messages ADD COLUMN rejection TEXT;
CREATE INDEX dead_letters_by_message ON dead_letters (message_id);
)sql";

// Schema version 3: processed messages are keyed by (message_id, stream_id) instead of
// (stream_id, message_id). The runtime's message ids begin with their creation time, so a
// commit's new processed-message keys land at the index's right edge; keyed by stream
// first they were spread over the leaves of every instance in flight, and this one index
// was 40% of the pages a commit wrote (JOURNAL.md §8). Lookups give both columns, so
// either order serves them. Rebuilding copies the table once.
const char* const schema_v3 = R"sql(
CREATE TABLE processed_messages_v3 (
  stream_id    INTEGER NOT NULL,
  message_id   TEXT NOT NULL,
  processed_at INTEGER NOT NULL,
  rejection    TEXT,
  PRIMARY KEY (message_id, stream_id)
) WITHOUT ROWID;
INSERT INTO processed_messages_v3 (stream_id, message_id, processed_at, rejection)
  SELECT stream_id, message_id, processed_at, rejection FROM processed_messages;
DROP TABLE processed_messages;
ALTER TABLE processed_messages_v3 RENAME TO processed_messages;
)sql";

/// Forward migrations: entry i brings user_version i to i + 1 (JOURNAL.md §Migrations).
const char* const migrations[] = {schema_v1, schema_v2, schema_v3};
static_assert(std::size(migrations) == sqlite_journal::schema_version);

caf::expected<int> user_version(connection& c) {
  auto st = c.prepare("PRAGMA user_version");
  if (!st)
    return st.error();
  reset_guard guard{**st};
  auto rc = (*st)->step();
  if (rc != SQLITE_ROW)
    return translate(rc, c.handle(), "reading schema version");
  return static_cast<int>((*st)->int64(0));
}

caf::error check_schema_not_newer(int version, const std::string& path) {
  if (version > sqlite_journal::schema_version)
    return make_persistence_error(
      persistence_errc::schema_too_new,
      "journal '" + path + "' has schema version " + std::to_string(version)
        + ", this build of longhaul knows versions up to "
        + std::to_string(sqlite_journal::schema_version) + "; use a newer longhaul");
  return {};
}

/// Refuses a SQLite file that is not a journal before anything (WAL mode included) changes it.
caf::error check_is_journal(connection& c, const std::string& path) {
  auto version = user_version(c);
  if (!version)
    return version.error();
  if (auto err = check_schema_not_newer(*version, path))
    return err;
  if (*version != 0)
    return {};
  auto count = c.prepare("SELECT count(*) FROM sqlite_master");
  if (!count)
    return count.error();
  reset_guard guard{**count};
  if ((*count)->step() == SQLITE_ROW && (*count)->int64(0) > 0)
    return make_persistence_error(persistence_errc::cannot_open,
                                  "'" + path + "' is a SQLite database but not a "
                                  "longhaul journal (user_version 0, has tables)");
  return {};
}

/// Brings the schema to the current version; all pending steps in one transaction (I10).
caf::error migrate(connection& c, const std::string& path) {
  if (auto err = c.exec("BEGIN IMMEDIATE"))
    return err;
  auto fail = [&](caf::error err) {
    (void) c.exec("ROLLBACK");
    return err;
  };
  auto version = user_version(c);
  if (!version)
    return fail(version.error());
  if (auto err = check_schema_not_newer(*version, path))
    return fail(err);
  for (auto v = *version; v < sqlite_journal::schema_version; ++v) {
    if (auto err = c.exec(migrations[v]))
      return fail(err);
    if (auto err = c.exec("PRAGMA user_version = " + std::to_string(v + 1)))
      return fail(err);
  }
  return c.exec("COMMIT");
}

caf::error configure(connection& c, const sqlite_journal_config& cfg, bool writer) {
  auto rc = sqlite3_busy_timeout(c.handle(), static_cast<int>(cfg.busy_timeout.count()));
  if (rc != SQLITE_OK)
    return translate(rc, c.handle(), "setting busy timeout");
  auto cache_kb = (writer ? cfg.writer_cache_mb : cfg.cache_mb) * 1024;
  std::string pragmas = "PRAGMA cache_size = -" + std::to_string(cache_kb) + ";";
  if (writer) {
    const char* sync = cfg.sync == sync_mode::full     ? "FULL"
                       : cfg.sync == sync_mode::normal ? "NORMAL"
                                                       : "OFF";
    // Readers must never block the writer: refuse to run if WAL cannot be enabled (e.g. a
    // VFS without shared memory), instead of silently using a rollback journal.
    auto mode = c.prepare("PRAGMA journal_mode = WAL");
    if (!mode)
      return mode.error();
    reset_guard guard{**mode};
    if ((*mode)->step() != SQLITE_ROW || (*mode)->text(0) != "wal")
      return make_persistence_error(persistence_errc::cannot_open,
                                    "'" + cfg.path + "': cannot enable WAL journal mode");
    pragmas += "PRAGMA synchronous = ";
    pragmas += sync;
    // Checkpoints: the journal's WAL hook (impl::after_wal_commit), in place of
    // PRAGMA wal_autocheckpoint, which installs a hook doing the same without timing it.
    pragmas += "; PRAGMA temp_store = MEMORY;";
  }
  return c.exec(pragmas);
}

// -- single-writer lock (I8) -------------------------------------------------------

/// `item` `n` times, separated by ", ": the parameter lists of multi-row statements.
std::string repeated_list(std::string_view item, std::size_t n, std::string_view sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0)
      out += sep;
    out += item;
  }
  return out;
}

/// Deletes the outbox rows `seqs` inside the writer's open transaction: one range delete
/// per run of consecutive numbers ("BETWEEN ? AND ?", a rowid range). The dispatcher
/// removes rows mostly in the order it delivered them, so a removal of n rows is a few
/// runs; an "IN (...)" list instead built a temporary index of its values per statement.
caf::error delete_outbox_rows(connection& writer, const std::vector<std::uint64_t>& seqs) {
  if (seqs.empty())
    return {};
  auto del = writer.prepare("DELETE FROM outbox WHERE outbox_seq BETWEEN ? AND ?");
  if (!del)
    return del.error();
  std::vector<std::uint64_t> sorted;
  const std::vector<std::uint64_t>* runs = &seqs;
  if (!std::is_sorted(seqs.begin(), seqs.end())) {
    sorted = seqs;
    std::sort(sorted.begin(), sorted.end());
    runs = &sorted;
  }
  const auto& v = *runs;
  for (std::size_t first = 0; first < v.size();) {
    auto last = first;
    while (last + 1 < v.size() && (v[last + 1] == v[last] || v[last + 1] == v[last] + 1))
      ++last;
    (*del)->bind(1, clamp64(v[first])).bind(2, clamp64(v[last]));
    if (auto err = writer.run(**del, "removing delivered outbox messages"))
      return err;
    first = last + 1;
  }
  return {};
}

/// An flock(2) on "<path>.writer-lock" holding the owner's pid. The kernel drops it when
/// the process dies, so a SIGKILLed writer never leaves a stale lock behind.
class writer_lock {
public:
  writer_lock() = default;
  writer_lock(const writer_lock&) = delete;
  writer_lock& operator=(const writer_lock&) = delete;
  ~writer_lock() {
    if (fd_ >= 0)
      ::close(fd_);  // releases the flock
  }

  caf::error acquire(const std::string& db_path) {
    auto lock_path = db_path + ".writer-lock";
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return make_persistence_error(persistence_errc::cannot_open,
                                    "cannot open lock file '" + lock_path
                                      + "': " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      auto err = errno;
      char buf[32] = {};
      auto n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
      std::string owner = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "unknown";
      while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' '))
        owner.pop_back();
      ::close(fd_);
      fd_ = -1;
      if (err == EWOULDBLOCK)
        return make_persistence_error(persistence_errc::locked_by_other_process,
                                      "journal locked by process " + owner + " ('" + db_path
                                        + "'); open it read-only to inspect it");
      return make_persistence_error(persistence_errc::cannot_open,
                                    "cannot lock '" + lock_path + "': " + std::strerror(err));
    }
    auto pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
      // The lock itself is held; the pid is only for the message of a second opener.
    }
    return {};
  }

private:
  int fd_ = -1;
};

// -- encoding helpers ------------------------------------------------------------------

const char* const insert_stream_sql = "INSERT INTO streams (persistence_id) VALUES (?)";

/// Rows per multi-row INSERT of events, event tags and outbox messages.
constexpr std::size_t max_rows_per_insert = 32;

/// "<head>(row), (row), ..." (or another separator) for 1 to max_rows_per_insert rows. The
/// strings live as long as the program: prepared statements are cached by the address of
/// their SQL.
class multi_row_sql {
public:
  multi_row_sql(std::string_view head, std::string_view row, std::string_view sep = ", ") {
    for (std::size_t n = 1; n <= max_rows_per_insert; ++n)
      sql_[n - 1] = std::string{head} + repeated_list(row, n, sep);
  }
  const char* operator()(std::size_t rows) const { return sql_[rows - 1].c_str(); }

private:
  std::array<std::string, max_rows_per_insert> sql_;
};

/// OR FAIL: a conflict stops the statement without undoing its earlier rows, so SQLite
/// keeps no statement journal (a copy of every page the statement changes). Events go in
/// at the end of the batch, where any error fails and rolls back the whole batch (I2).
const multi_row_sql insert_events_sql{
  "INSERT OR FAIL INTO events (stream_id, seq, type, schema_version, payload, tags, written_at)"
  " VALUES ",
  "(?, ?, ?, ?, ?, ?, ?)"};

const multi_row_sql insert_tags_sql{"INSERT OR IGNORE INTO event_tags (tag, position) VALUES ",
                                    "(?, ?)"};

const multi_row_sql insert_outbox_sql{
  "INSERT INTO outbox (message_id, stream_id, destination, payload, created_at) VALUES ",
  "(?, ?, ?, ?, ?)"};

const multi_row_sql insert_processed_sql{
  "INSERT INTO processed_messages (stream_id, message_id, processed_at, rejection) VALUES ",
  "(?, ?, ?, ?)"};

const multi_row_sql insert_timers_sql{
  "INSERT OR REPLACE INTO timers (persistence_id, name, due_at, payload) VALUES ",
  "(?, ?, ?, ?)"};

/// Named timer cancels: an OR of primary-key terms, which SQLite runs as one primary-key
/// search per term (a row-value IN over VALUES would scan the table).
const multi_row_sql delete_timers_sql{"DELETE FROM timers WHERE ",
                                      "(persistence_id = ? AND name = ?)", " OR "};

/// Every timer of some ids (cancel_all_timers): one primary-key prefix search per term.
const multi_row_sql delete_all_timers_sql{"DELETE FROM timers WHERE ", "persistence_id = ?",
                                          " OR "};

std::string encode_tags(const std::vector<std::string>& tags) {
  std::string out = "[";
  for (const auto& t : tags) {
    if (out.size() > 1)
      out += ',';
    append_json_string(out, t);
  }
  out += ']';
  return out;
}

std::vector<std::string> decode_tags(const std::string& json) {
  std::vector<std::string> out;
  boost::json::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec || !v.is_array())
    return out;  // tags are written by us as an array; anything else means none
  for (const auto& t : v.as_array())
    if (t.is_string())
      out.emplace_back(t.as_string().c_str(), t.as_string().size());
  return out;
}

/// Fills `ev` from a row whose columns from `first` on are seq, type, schema_version,
/// payload, tags, written_at, position (the events table's order).
void read_event_columns(statement& s, int first, event_record& ev) {
  ev.seq = static_cast<sequence_nr>(s.int64(first));
  ev.type = s.text(first + 1);
  ev.schema_version = static_cast<std::uint32_t>(s.int64(first + 2));
  ev.payload_json = s.text(first + 3);
  if (!s.is_null(first + 4))
    ev.tags = decode_tags(s.text(first + 4));
  ev.written_at_ms = s.int64(first + 5);
  ev.position = static_cast<std::uint64_t>(s.int64(first + 6));
}

}  // namespace

// -- implementation state --------------------------------------------------------------

struct sqlite_journal::impl {
  /// Where a stream stands, as the writer knows it: committed state only (I3).
  struct stream_state {
    std::int64_t stream_id = 0;  ///< 0: no row in `streams` yet
    sequence_nr highest = 0;
  };

  struct pending_write {
    atomic_write w;
    write_callback done;
  };
  /// A submitted ticket: its write stays inside it and goes back to the caller with the
  /// outcome, to be freed where it was allocated (journal::submit).
  struct ticketed_write {
    std::shared_ptr<write_ticket> ticket;
  };
  /// Delivered outbox rows to remove: committed in the next write batch's transaction
  /// (group commit), reported to `done` after it.
  struct outbox_removal {
    std::vector<std::uint64_t> seqs;
    std::function<void(caf::error)> done;
  };
  /// Work other than appends that must run on the write connection, in queue order.
  using maintenance = std::function<void(impl&)>;
  using job = std::variant<pending_write, ticketed_write, outbox_removal, maintenance>;

  /// The append a job carries, or nullptr for other work.
  static const atomic_write* append_of(const job& j) {
    return append_of(const_cast<job&>(j));
  }
  static atomic_write* append_of(job& j) {
    if (auto* pw = std::get_if<pending_write>(&j))
      return &pw->w;
    if (auto* tw = std::get_if<ticketed_write>(&j))
      return &tw->ticket->w;
    return nullptr;
  }

  sqlite_journal_config cfg;
  /// Schema version of the file: current after a read-write open (it migrates), possibly
  /// older for a read-only one, whose reads then skip columns added since (I10).
  int file_version = 0;
  writer_lock lock;
  connection writer;  // owned by the writer thread after open()

  std::mutex queue_mtx;
  std::condition_variable queue_cv;
  /// Jobs in queue order. The writer swaps the whole vector out (and its own, emptied one
  /// in), so queueing allocates nothing once both have grown and no job is moved twice.
  std::vector<job> queue;
  bool stopping = false;
  bool closed = false;
  std::thread writer_thread;

  /// Writer-thread cache of streams (I3): `committed` is what the file holds; `pending`
  /// is valid while `gen` equals the current batch's generation. One lookup per write.
  struct stream_entry {
    stream_state committed;
    stream_state pending;
    std::uint64_t gen = 0;
  };
  std::unordered_map<std::string, stream_entry> streams;  // writer thread only
  std::vector<stream_entry*> touched;   ///< entries this batch changed (node pointers)
  std::uint64_t gen = 1;                ///< bumped per batch: stale `pending` is ignored
  stream_entry* last_entry = nullptr;   ///< entry of the last lookup_stream
  std::vector<caf::expected<write_result>> results;  ///< per batch; kept for its capacity
  /// An event of this batch waiting for insert_batch_events, and the write it belongs to.
  struct batch_event {
    const new_event* event;
    std::int64_t stream_id;
    sequence_nr seq;
    std::size_t write;  ///< index into `results` (the writes stored before it)
  };
  std::vector<batch_event> batch_events;  ///< per batch, in write order; kept for its capacity
  std::vector<std::pair<const std::string*, std::int64_t>> batch_tags;  ///< (tag, position)
  /// A timer change of this batch waiting for insert_batch_timers.
  enum class timer_op { cancel_all, cancel, set };
  struct batch_timer {
    timer_op op;
    const std::string* persistence_id;
    const std::string* name = nullptr;  ///< cancel only
    const timer_set* set = nullptr;     ///< set only
  };
  std::vector<batch_timer> batch_timers;  ///< per batch, in write order
  /// What a batch's timer changes leave of one id's timers (insert_batch_timers): whether
  /// all of them went first, then the named changes that remain (set == nullptr: cancel).
  struct net_timer_change {
    const std::string* persistence_id;
    bool all = false;
    std::vector<std::pair<const std::string*, const timer_set*>> named;
  };
  std::vector<net_timer_change> net_timers;  ///< per batch
  std::unordered_map<std::string_view, std::size_t> net_timer_index;  ///< into net_timers
  /// Processed-message and outbox rows of this batch waiting for insert_batch_messages
  /// (optimistic batches only, see commit_batch).
  struct batch_processed {
    std::int64_t stream_id;
    const std::string* message_id;
    const std::string* rejection;  ///< null: accepted
  };
  struct batch_outbox {
    const outbox_message* message;
    std::int64_t stream_id;
    std::size_t write;  ///< index into `results`
    std::size_t index;  ///< into the write's outbox
  };
  std::vector<batch_processed> batch_processed_rows;
  std::vector<batch_outbox> batch_outbox_rows;
  /// An outbox row this batch attempt inserted, with the outbox_seq it got.
  struct inserted_outbox {
    std::size_t write;  ///< index into `results`
    std::size_t index;  ///< into the write's outbox
    std::uint64_t seq;
  };
  std::vector<inserted_outbox> batch_inserted_outbox;  ///< in outbox_seq order

  /// The outbox tail (JOURNAL.md §5): the newest committed outbox rows, handed to
  /// outbox_pending without reading them back. While `valid`, `rows` holds every
  /// committed and not removed outbox row with outbox_seq > `floor`, in order; a read
  /// with after_seq < floor reads the file. The writer appends after COMMIT and before
  /// acknowledging (so I5 holds), and removes rows when their removal commits; the
  /// oldest rows leave first when a bound is reached (floor rises). Guarded by `mtx`.
  struct outbox_tail {
    std::mutex mtx;
    std::deque<outbox_record> rows;
    std::uint64_t floor = 0;
    std::size_t bytes = 0;
    bool valid = false;
  };
  outbox_tail tail;
  /// Writer thread: the tail has a floor. False at open and after any failed transaction
  /// (whose outcome the tail cannot know); the next batch reads the floor inside its
  /// transaction (the highest outbox_seq ever given out) and the tail restarts empty.
  bool tail_known = false;
  std::uint64_t tail_next_floor = 0;  ///< read by the batch running, applied at its commit
  std::atomic<std::uint64_t> n_outbox_memory_reads{0};
  std::atomic<std::uint64_t> n_outbox_file_reads{0};
  /// The mode of the batch attempt running (set by run_batch): when true, processed-message
  /// and outbox rows are queued for the batch's end instead of inserted write by write.
  bool optimistic = false;

  std::mutex readers_mtx;
  std::vector<std::unique_ptr<connection>> idle_readers;

  std::atomic<std::uint64_t> n_transactions{0};
  std::atomic<std::uint64_t> n_writes{0};
  std::atomic<std::uint64_t> n_max_batch{0};
  std::atomic<std::uint64_t> n_events{0};
  std::atomic<std::uint64_t> n_refused{0};
  std::atomic<std::uint64_t> n_failed{0};
  std::atomic<std::uint64_t> n_busy_ns{0};        ///< writer thread: running jobs
  std::atomic<std::uint64_t> n_commit_ns{0};      ///< in COMMIT (WAL write, fsync, checkpoint)
                                                  ///< of batches and maintenance
  std::atomic<std::uint64_t> n_checkpoints{0};
  std::atomic<std::uint64_t> n_checkpoint_ns{0};

  static std::uint64_t ns_since(std::chrono::steady_clock::time_point t0) {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now() - t0)
                                        .count());
  }

  /// The writer's WAL hook, called by SQLite after each commit with the WAL's size in
  /// pages: what PRAGMA wal_autocheckpoint = checkpoint_pages does (a PASSIVE checkpoint
  /// once the WAL has that many pages), timed for statistics().
  static int after_wal_commit(void* arg, sqlite3* db, const char* name, int pages) {
    auto* self = static_cast<impl*>(arg);
    auto limit = std::min<std::size_t>(self->cfg.checkpoint_pages, 1u << 30);
    if (limit == 0 || static_cast<std::size_t>(pages) < limit)
      return SQLITE_OK;
    auto t0 = std::chrono::steady_clock::now();
    // As SQLite's own hook: a failed checkpoint leaves the WAL to the next one.
    (void) sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    self->n_checkpoints.fetch_add(1, std::memory_order_relaxed);
    self->n_checkpoint_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
    return SQLITE_OK;
  }

  time_ms now() const { return cfg.clock ? cfg.clock() : system_now_ms(); }

  // -- writer thread ------------------------------------------------------------------

  void run_writer() {
    std::vector<job> taken;
    for (;;) {
      {
        std::unique_lock guard{queue_mtx};
        queue_cv.wait(guard, [&] { return stopping || !queue.empty(); });
        if (queue.empty())
          return;  // stopping and drained
        if (cfg.max_batch_delay.count() > 0 && queue.size() < cfg.max_batch_writes && !stopping)
          queue_cv.wait_for(guard, cfg.max_batch_delay,
                            [&] { return stopping || queue.size() >= cfg.max_batch_writes; });
        taken.swap(queue);
      }
      auto t0 = std::chrono::steady_clock::now();
      run_jobs(taken);
      n_busy_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
      taken.clear();
      // After a burst, give the memory back rather than keep the largest queue ever seen.
      if (taken.capacity() > 16 * cfg.max_batch_writes)
        taken = std::vector<job>{};
    }
  }

  /// Runs `jobs` in order: each run of appends and outbox removals in batches of up to
  /// `max_batch_writes`, each maintenance job alone.
  void run_jobs(std::vector<job>& jobs) {
    std::size_t i = 0;
    while (i < jobs.size()) {
      if (auto* task = std::get_if<maintenance>(&jobs[i])) {
        (*task)(*this);
        ++i;
        continue;
      }
      auto end = i + 1;
      while (end < jobs.size() && end - i < cfg.max_batch_writes
             && !std::holds_alternative<maintenance>(jobs[end]))
        ++end;
      commit_batch(std::span<job>{jobs}.subspan(i, end - i));
      i = end;
    }
  }

  /// The highest stored sequence number of `id` as seen inside the open transaction.
  caf::expected<stream_state> lookup_stream(const std::string& id) {
    if (auto it = streams.find(id); it != streams.end()) {
      last_entry = &it->second;
      return it->second.gen == gen ? it->second.pending : it->second.committed;
    }
    auto st = load_stream(writer, id);
    if (!st)
      return st.error();
    stream_state s{st->first, st->second};
    last_entry = &streams.emplace(id, stream_entry{s, s, 0}).first->second;
    return s;
  }

  /// The stream of `w`, as lookup_stream. A first write (expected_seq 1) of an id the
  /// cache does not know creates the stream row at once (`created`): for a new id that
  /// saves the lookup, and for an existing one the INSERT is refused by the UNIQUE
  /// persistence_id, changes nothing, and the lookup follows.
  caf::expected<stream_state> stream_for_write(const atomic_write& w, bool& created) {
    created = false;
    if (w.expected_seq != 1 || streams.find(w.persistence_id) != streams.end())
      return lookup_stream(w.persistence_id);
    auto ins = writer.prepare(insert_stream_sql);
    if (!ins)
      return ins.error();
    reset_guard guard{**ins};
    (*ins)->bind(1, w.persistence_id);
    auto rc = (*ins)->step();
    if (is_constraint(rc))
      return lookup_stream(w.persistence_id);
    if (rc != SQLITE_DONE)
      return translate(rc, writer.handle(), "creating stream");
    created = true;
    // The file held no row before this write: that is what the cache knows as committed.
    last_entry = &streams.emplace(w.persistence_id, stream_entry{}).first->second;
    return stream_state{sqlite3_last_insert_rowid(writer.handle()), 0};
  }

  /// `replay` inside a read transaction the caller holds.
  static caf::expected<replay_result> replay_on(connection& c, std::string_view id,
                                                sequence_nr from, sequence_nr to,
                                                std::uint64_t max) {
    auto stream = impl::load_stream(c, id);
    if (!stream)
      return stream.error();
    return replay_stream_on(c, id, *stream, from, to, max);
  }

  /// `replay_on` of a stream already looked up: (stream_id, highest) from load_stream.
  static caf::expected<replay_result>
  replay_stream_on(connection& c, std::string_view id,
                   std::pair<std::int64_t, sequence_nr> stream, sequence_nr from,
                   sequence_nr to, std::uint64_t max) {
    replay_result out;
    out.highest_seq = stream.second;
    if (stream.first == 0 || max == 0 || from > to)
      return out;
    auto st = c.prepare("SELECT seq, type, schema_version, payload, tags, written_at, position"
                        " FROM events WHERE stream_id = ? AND seq >= ? AND seq <= ?"
                        " ORDER BY seq LIMIT ?");
    if (!st)
      return st.error();
    auto& s = **st;
    reset_guard guard{s};
    if (stream.second >= from)
      out.events.reserve(static_cast<std::size_t>(
        std::min<std::uint64_t>({stream.second - from + 1, max, to - from + 1, 100000})));
    s.bind(1, stream.first).bind(2, clamp64(from)).bind(3, clamp64(to)).bind(4, clamp64(max));
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      auto& ev = out.events.emplace_back();
      ev.persistence_id = std::string{id};
      read_event_columns(s, 0, ev);
    }
    if (rc != SQLITE_DONE)
      return translate(rc, c.handle(), "replaying '" + std::string{id} + "'");
    return out;
  }

  /// `load_snapshot` inside a read transaction the caller holds.
  static caf::expected<std::optional<snapshot_record>>
  snapshot_on(connection& c, std::string_view id, const snapshot_selection& sel) {
    using result = std::optional<snapshot_record>;
    auto st = c.prepare("SELECT n.seq, n.state, n.saved_at FROM snapshots n"
                        " JOIN streams s ON s.stream_id = n.stream_id"
                        " WHERE s.persistence_id = ? AND n.seq >= ? AND n.seq <= ?"
                        " AND n.saved_at <= ? ORDER BY n.seq DESC LIMIT 1");
    if (!st)
      return st.error();
    auto& s = **st;
    reset_guard guard{s};
    s.bind(1, id).bind(2, clamp64(sel.min_seq)).bind(3, clamp64(sel.max_seq))
      .bind(4, sel.max_saved_at_ms);
    auto rc = s.step();
    if (rc == SQLITE_DONE)
      return result{};
    if (rc != SQLITE_ROW)
      return translate(rc, c.handle(), "loading snapshot of '" + std::string{id} + "'");
    return result{snapshot_record{std::string{id}, static_cast<sequence_nr>(s.int64(0)),
                                  s.text(1), s.int64(2)}};
  }

  /// (stream_id, highest) of `id` read from `c`; (0, 0) for an unknown id.
  static caf::expected<std::pair<std::int64_t, sequence_nr>> load_stream(connection& c,
                                                                         std::string_view id) {
    auto st = c.prepare("SELECT stream_id, deleted_highest FROM streams WHERE persistence_id = ?");
    if (!st)
      return st.error();
    auto& s = **st;
    std::int64_t stream_id = 0;
    sequence_nr highest = 0;
    {
      reset_guard guard{s};
      s.bind(1, id);
      auto rc = s.step();
      if (rc == SQLITE_DONE)
        return std::pair<std::int64_t, sequence_nr>{0, 0};
      if (rc != SQLITE_ROW)
        return translate(rc, c.handle(), "looking up '" + std::string{id} + "'");
      stream_id = s.int64(0);
      highest = static_cast<sequence_nr>(s.int64(1));
    }
    auto mx = c.prepare("SELECT max(seq) FROM events WHERE stream_id = ?");
    if (!mx)
      return mx.error();
    reset_guard guard{**mx};
    (*mx)->bind(1, stream_id);
    auto rc = (*mx)->step();
    if (rc != SQLITE_ROW)
      return translate(rc, c.handle(), "reading highest of '" + std::string{id} + "'");
    if (!(*mx)->is_null(0))
      highest = std::max(highest, static_cast<sequence_nr>((*mx)->int64(0)));
    return std::pair<std::int64_t, sequence_nr>{stream_id, highest};
  }

  /// Outcome of one write inside a batch: a result, a rejection (this write only), or a
  /// failure that aborts the whole batch.
  struct write_outcome {
    caf::expected<write_result> result;
    bool batch_failed = false;
  };

  static bool is_constraint(int rc) { return (rc & 0xff) == SQLITE_CONSTRAINT; }

  /// Stores one atomic write inside the open batch transaction. Whatever can reject the
  /// write is checked or run before its other changes, so that a rejection stores nothing
  /// of it (I2), without a SAVEPOINT.
  write_outcome store_write(const atomic_write& w, time_ms ts) {
    auto fail = [](caf::error e) { return write_outcome{std::move(e), true}; };
    auto db = writer.handle();
    sqlite3_int64 clean_at = sqlite3_total_changes64(db);
    bool created = false;
    auto stream = stream_for_write(w, created);
    if (!stream)
      return fail(stream.error());
    // I1: sequence numbers are contiguous; the writer is the only one who assigns them.
    if (w.expected_seq != stream->highest + 1)
      return {make_persistence_error(
        persistence_errc::sequence_conflict,
        "'" + w.persistence_id + "' expected sequence number " + std::to_string(w.expected_seq)
          + " but the highest stored is " + std::to_string(stream->highest)),
              false};
    // A write for an id presumed new needs a stream that has no row yet (stream_id 0:
    // store_parts creates it), or whose row this write just created.
    if (w.new_stream && !created && stream->stream_id != 0)
      return {make_persistence_error(persistence_errc::sequence_conflict,
                                     "'" + w.persistence_id
                                       + "' was written as a new stream, but it has one"
                                         " (highest stored sequence number "
                                       + std::to_string(stream->highest) + ")"),
              false};
    // I2 without savepoints: with one writer (I8) only two kinds of statement can be
    // rejected, the processed-message insert (a duplicate delivery) and an outbox insert
    // (a reused message id). In an optimistic batch both are queued for the batch's end
    // (commit_batch). In the one-write-at-a-time run, the processed-message insert is the
    // write's first change, or comes right after a new stream's row, where it cannot
    // conflict (no row refers to a stream_id just assigned), so SQLite's statement
    // atomicity undoes a rejected one; the outbox rows go in next, and if one is refused,
    // store_parts deletes what the write stored before it. Events, tags and timer changes
    // are queued for the batch's end: nothing can reject them. Should a statement be
    // rejected after a change all the same (a foreign writer breaking I8), the write
    // cannot be undone alone and the batch fails below.
    caf::error rejection;
    auto outcome = store_parts(w, ts, *stream, created, rejection, clean_at);
    if (rejection && !outcome.batch_failed && sqlite3_total_changes64(db) != clean_at) {
      // A rejection after a stored change: this write cannot be undone alone, so the
      // batch fails and rolls back (I2).
      return fail(make_persistence_error(
        persistence_errc::internal, "write to '" + w.persistence_id
                                      + "' was rejected after part of it was stored: "
                                      + describe(rejection)));
    }
    if (rejection && !outcome.batch_failed)
      return {rejection, false};
    return outcome;
  }

  /// The rejection of an outbox message id used twice in one write (I13).
  static caf::error repeated_outbox_id(const atomic_write& w) {
    for (std::size_t i = 0; i < w.outbox.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (w.outbox[i].message_id == w.outbox[j].message_id)
          return reused_outbox_id(w.outbox[i].message_id);
    return {};
  }

  static caf::error reused_outbox_id(const std::string& id) {
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "outbox message id '" + id + "' is already used");
  }

  /// After an outbox insert was refused (I13): the first of `ids` that a pending row
  /// holds, to name it in the rejection. Off the hot path.
  caf::expected<std::string> pending_outbox_id(std::span<const outbox_message> ids) {
    auto probe = writer.prepare("SELECT 1 FROM outbox WHERE message_id = ?");
    if (!probe)
      return probe.error();
    for (const auto& m : ids) {
      auto& st = **probe;
      reset_guard guard{st};
      st.bind(1, m.message_id);
      auto rc = st.step();
      if (rc == SQLITE_ROW)
        return m.message_id;
      if (rc != SQLITE_DONE)
        return translate(rc, writer.handle(), "checking outbox message ids");
    }
    return std::string{"?"};
  }

  /// Deletes what a write stored before it was refused for an outbox id (I2): its outbox
  /// rows `first_outbox_seq` onwards (0: none), its processed-message row (if stored), and
  /// the row of a stream it created. Nothing else of the write is stored by then.
  caf::error undo_refused_write(const atomic_write& w, std::int64_t stream_id,
                                bool created_stream, bool processed_stored,
                                std::int64_t first_outbox_seq) {
    auto run = [&](const char* sql, auto bind, std::string_view what) -> caf::error {
      auto st = writer.prepare(sql);
      if (!st)
        return st.error();
      reset_guard guard{**st};
      bind(**st);
      auto rc = (*st)->step();
      if (rc != SQLITE_DONE)
        return translate(rc, writer.handle(), what);
      return {};
    };
    if (first_outbox_seq > 0)
      if (auto err = run("DELETE FROM outbox WHERE outbox_seq >= ?",
                         [&](statement& s) { s.bind(1, first_outbox_seq); },
                         "undoing outbox rows"))
        return err;
    if (processed_stored)
      if (auto err = run("DELETE FROM processed_messages WHERE message_id = ? AND stream_id = ?",
                         [&](statement& s) { s.bind(1, *w.processed_message_id).bind(2, stream_id); },
                         "undoing a processed message"))
        return err;
    if (created_stream)
      if (auto err = run("DELETE FROM streams WHERE stream_id = ?",
                         [&](statement& s) { s.bind(1, stream_id); }, "undoing a new stream"))
        return err;
    return {};
  }

  /// Stores the parts of `w` in the order store_write explains. A rejection sets
  /// `rejection`; if it came after stored changes that were then undone, `clean_at` is
  /// moved to the change count after the undo.
  write_outcome store_parts(const atomic_write& w, time_ms ts, stream_state stream,
                            bool created_stream, caf::error& rejection,
                            sqlite3_int64& clean_at) {
    auto fail = [](caf::error e) { return write_outcome{std::move(e), true}; };
    auto db = writer.handle();
    // Runs `s`; a constraint violation is this write's rejection (its text built only
    // then, off the hot path), anything else fails the batch. True: the caller must stop.
    auto step = [&](statement& s, std::string_view what, persistence_errc on_constraint,
                    auto constraint_text, caf::error& batch_err) {
      reset_guard guard{s};
      auto rc = s.step();
      if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return false;
      if (is_constraint(rc))
        rejection = make_persistence_error(on_constraint, std::string{constraint_text()});
      else
        batch_err = translate(rc, db, what);
      return true;
    };
    caf::error batch_err;
    auto stopped = [&] { return batch_err ? fail(batch_err) : write_outcome{write_result{}, false}; };
    if (auto err = repeated_outbox_id(w)) {
      rejection = std::move(err);
      if (created_stream) {  // stream_for_write stored its row already
        if (auto undo = undo_refused_write(w, stream.stream_id, true, false, 0))
          return fail(undo);
        clean_at = sqlite3_total_changes64(db);
      }
      return stopped();
    }
    if (stream.stream_id == 0) {
      auto ins = writer.prepare(insert_stream_sql);
      if (!ins)
        return fail(ins.error());
      (*ins)->bind(1, w.persistence_id);
      if (step(**ins, "creating stream", persistence_errc::internal,
               [&] { return "stream '" + w.persistence_id + "' exists"; }, batch_err))
        return stopped();
      stream.stream_id = sqlite3_last_insert_rowid(db);
      created_stream = true;
    }
    if (optimistic) {
      // Checked together at the batch's end (insert_batch_messages); a refusal there runs
      // the batch again one write at a time, through the code below.
      if (w.processed_message_id)
        batch_processed_rows.push_back(
          {stream.stream_id, &*w.processed_message_id,
           w.processed_rejection ? &*w.processed_rejection : nullptr});
      for (std::size_t r = 0; r < w.outbox.size(); ++r)
        batch_outbox_rows.push_back({&w.outbox[r], stream.stream_id, results.size(), r});
    }
    if (w.processed_message_id && !optimistic) {
      auto ins = writer.prepare(insert_processed_sql(1));
      if (!ins)
        return fail(ins.error());
      bind_processed_row(**ins, 0,
                         {stream.stream_id, &*w.processed_message_id,
                          w.processed_rejection ? &*w.processed_rejection : nullptr},
                         ts);
      if (step(**ins, "recording processed message", persistence_errc::duplicate_message,
               [&] {
                 return "message '" + *w.processed_message_id + "' was already processed by '"
                        + w.persistence_id + "'";
               },
               batch_err))
        return stopped();
    }
    // Outbox messages in multi-row INSERTs. A refused one (its id is pending, I13) is
    // the write's rejection: what the write stored so far is deleted again (I2).
    if (!optimistic && !w.outbox.empty()) {
      std::int64_t first_outbox_seq = 0;
      std::size_t chunk_first = 0;  // the chunk of the statement that ran last
      std::size_t chunk_rows = 0;
      bool refused = false;
      auto err = insert_rows(
        w.outbox.size(), insert_outbox_sql, "queueing outbox messages",
        [&](statement& st, std::size_t first, std::size_t n) {
          chunk_first = first;
          chunk_rows = n;
          for (std::size_t r = 0; r < n; ++r)
            bind_outbox_row(st, r, {&w.outbox[first + r], stream.stream_id, 0, 0}, ts);
        },
        [&](std::size_t first, std::size_t n, std::int64_t last) {
          auto first_seq = last - static_cast<std::int64_t>(n - 1);
          if (first == 0)
            first_outbox_seq = first_seq;
          for (std::size_t r = 0; r < n; ++r)  // a refused write's rows are skipped later
            batch_inserted_outbox.push_back(
              {results.size(), first + r, static_cast<std::uint64_t>(first_seq) + r});
        },
        &refused);
      if (err && !refused)
        return fail(err);
      if (refused) {
        auto id = pending_outbox_id(std::span{w.outbox}.subspan(chunk_first, chunk_rows));
        if (!id)
          return fail(id.error());
        rejection = reused_outbox_id(*id);
        if (auto undo = undo_refused_write(w, stream.stream_id, created_stream,
                                           w.processed_message_id.has_value(), first_outbox_seq))
          return fail(undo);
        clean_at = sqlite3_total_changes64(db);
        return stopped();
      }
    }
    write_result result;
    result.written_at_ms = ts;
    auto seq = w.expected_seq;
    // The events (and their tags) are inserted at the end of the batch, all writes' rows
    // together in multi-row INSERTs (insert_batch_events). Nothing can reject them once the
    // sequence is checked (I1), so a write that got this far is stored whole with its batch
    // or the batch fails (I2).
    for (std::size_t r = 0; r < w.events.size(); ++r)
      batch_events.push_back({&w.events[r], stream.stream_id, seq + r, results.size()});
    seq += w.events.size();
    // Timer changes are queued as well, in the order a write states them (all, then
    // named cancels, then sets); insert_batch_timers stores what they leave behind.
    if (w.cancel_all_timers)
      batch_timers.push_back({timer_op::cancel_all, &w.persistence_id});
    for (const auto& t : w.timers_to_cancel)
      batch_timers.push_back({timer_op::cancel, &w.persistence_id, &t.name});
    for (const auto& t : w.timers_to_set)
      batch_timers.push_back({timer_op::set, &w.persistence_id, nullptr, &t});
    stream.highest = seq - 1;
    if (last_entry->gen != gen) {
      last_entry->gen = gen;
      touched.push_back(last_entry);
    }
    last_entry->pending = stream;
    result.highest_seq = stream.highest;
    return {result, false};
  }

  /// Inserts the batch's events in write order, up to max_rows_per_insert per statement,
  /// then their tags the same way, and sets each write's last_position. Positions within a
  /// statement are consecutive (AUTOINCREMENT, one writer: I8, I11), so each row's
  /// position follows from the statement's last rowid. Any error fails the batch.
  caf::error insert_batch_events(time_ms ts) {
    auto& tag_rows = batch_tags;
    tag_rows.clear();
    std::array<std::string, max_rows_per_insert> tags;  // bound; alive until the step
    auto err = insert_rows(
      batch_events.size(), insert_events_sql, "appending events",
      [&](statement& st, std::size_t first, std::size_t n) {
        for (std::size_t r = 0; r < n; ++r) {
          const auto& row = batch_events[first + r];
          const auto& ev = *row.event;
          auto b = static_cast<int>(7 * r);
          st.bind(b + 1, row.stream_id)
            .bind(b + 2, static_cast<std::int64_t>(row.seq))
            .bind(b + 3, ev.type)
            .bind(b + 4, static_cast<std::int64_t>(ev.schema_version))
            .bind(b + 5, ev.payload_json)
            .bind(b + 7, ts);
          if (ev.tags.empty()) {
            st.bind_null(b + 6);
          } else {
            tags[r] = encode_tags(ev.tags);
            st.bind(b + 6, tags[r]);
          }
        }
      },
      [&](std::size_t first, std::size_t n, std::int64_t last) {
        for (std::size_t r = 0; r < n; ++r) {
          const auto& row = batch_events[first + r];
          auto position = last - static_cast<std::int64_t>(n - 1 - r);
          if (auto& res = results[row.write])
            res->last_position = static_cast<std::uint64_t>(position);
          for (const auto& tag : row.event->tags)
            tag_rows.emplace_back(&tag, position);
        }
      });
    if (err)
      return err;
    return insert_rows(
      tag_rows.size(), insert_tags_sql, "tagging events",
      [&](statement& st, std::size_t first, std::size_t n) {
        for (std::size_t r = 0; r < n; ++r) {
          auto b = static_cast<int>(2 * r);
          st.bind(b + 1, *tag_rows[first + r].first).bind(b + 2, tag_rows[first + r].second);
        }
      },
      [](std::size_t, std::size_t, std::int64_t) {});
  }

  /// Stores `rows` rows with the multi-row statements `sql(n)`, up to max_rows_per_insert
  /// per statement: `bind(statement, first, n)` binds rows first..first+n-1, and
  /// `stored(first, n, last_rowid)` runs after each statement. Any error fails the batch;
  /// with `refused`, a constraint violation also sets it.
  template <class Bind, class Stored>
  caf::error insert_rows(std::size_t rows, const multi_row_sql& sql, std::string_view what,
                         Bind bind, Stored stored, bool* refused = nullptr) {
    for (std::size_t first = 0; first < rows; first += max_rows_per_insert) {
      auto n = std::min(max_rows_per_insert, rows - first);
      auto ins = writer.prepare(sql(n));
      if (!ins)
        return ins.error();
      auto& st = **ins;
      reset_guard guard{st};
      bind(st, first, n);
      auto rc = st.step();
      if (refused && is_constraint(rc))
        *refused = true;
      if (rc != SQLITE_DONE)
        return translate(rc, writer.handle(), what);
      stored(first, n, sqlite3_last_insert_rowid(writer.handle()));
    }
    return {};
  }

  /// Binds `row` as row `r` of insert_processed_sql.
  static void bind_processed_row(statement& st, std::size_t r, const batch_processed& row,
                                 time_ms ts) {
    auto b = static_cast<int>(4 * r);
    st.bind(b + 1, row.stream_id).bind(b + 2, *row.message_id).bind(b + 3, ts);
    if (row.rejection)
      st.bind(b + 4, *row.rejection);
    else
      st.bind_null(b + 4);
  }

  /// Binds `row` as row `r` of insert_outbox_sql.
  static void bind_outbox_row(statement& st, std::size_t r, const batch_outbox& row, time_ms ts) {
    const auto& m = *row.message;
    auto b = static_cast<int>(5 * r);
    st.bind(b + 1, m.message_id).bind(b + 2, row.stream_id).bind(b + 3, m.destination)
      .bind(b + 4, m.payload_json).bind(b + 5, ts);
  }

  /// Inserts the processed-message rows, then the outbox rows, that an optimistic batch
  /// queued, in write order, up to max_rows_per_insert per statement. A constraint
  /// violation (a duplicate delivery, a reused outbox id: a write's rejection) sets
  /// `refused`: the caller rolls back and runs the batch again one write at a time.
  caf::error insert_batch_messages(time_ms ts, bool& refused) {
    auto none = [](std::size_t, std::size_t, std::int64_t) {};
    auto inserted = [&](std::size_t first, std::size_t n, std::int64_t last) {
      auto first_seq = static_cast<std::uint64_t>(last - static_cast<std::int64_t>(n - 1));
      for (std::size_t r = 0; r < n; ++r) {
        const auto& row = batch_outbox_rows[first + r];
        batch_inserted_outbox.push_back({row.write, row.index, first_seq + r});
      }
    };
    auto bind_processed = [&](statement& st, std::size_t first, std::size_t n) {
      for (std::size_t r = 0; r < n; ++r)
        bind_processed_row(st, r, batch_processed_rows[first + r], ts);
    };
    auto bind_outbox = [&](statement& st, std::size_t first, std::size_t n) {
      for (std::size_t r = 0; r < n; ++r)
        bind_outbox_row(st, r, batch_outbox_rows[first + r], ts);
    };
    if (auto err = insert_rows(batch_processed_rows.size(), insert_processed_sql,
                               "recording processed messages", bind_processed, none, &refused))
      return err;
    return insert_rows(batch_outbox_rows.size(), insert_outbox_sql, "queueing outbox messages",
                       bind_outbox, inserted, &refused);
  }

  /// Stores the batch's timer changes. Changes of different ids commute, and those of one
  /// id reduce to what they leave behind: first its cancel_all (the last one; what came
  /// before it is gone), then each name's last change, a cancel or a set (INSERT OR
  /// REPLACE). So the batch runs all its cancel_alls, then all named cancels, then all
  /// sets, each kind in statements of up to max_rows_per_insert rows, instead of a
  /// statement per change: a flow leaving one wait for the next cancels and sets its
  /// "timeout" in one write, and writes of many instances interleave in a batch. Nothing
  /// here can be rejected; any error fails the batch.
  caf::error insert_batch_timers() {
    net_timers.clear();
    net_timer_index.clear();
    for (const auto& t : batch_timers) {
      auto [it, fresh] =
        net_timer_index.try_emplace(std::string_view{*t.persistence_id}, net_timers.size());
      if (fresh)
        net_timers.push_back({t.persistence_id, false, {}});
      auto& net = net_timers[it->second];
      if (t.op == timer_op::cancel_all) {
        net.all = true;
        net.named.clear();
        continue;
      }
      const auto& name = t.op == timer_op::cancel ? *t.name : t.set->name;
      auto same = std::find_if(net.named.begin(), net.named.end(),
                               [&](const auto& c) { return *c.first == name; });
      // A cancel after this batch's cancel_all has nothing left to remove but the set
      // of this batch, if any.
      if (t.op == timer_op::cancel && net.all) {
        if (same != net.named.end())
          net.named.erase(same);
        continue;
      }
      std::pair<const std::string*, const timer_set*> change{&name, t.set};
      if (same != net.named.end())
        *same = change;
      else
        net.named.push_back(change);
    }
    std::vector<const std::string*> all;
    std::vector<std::pair<const std::string*, const std::string*>> cancels;  // (id, name)
    std::vector<std::pair<const std::string*, const timer_set*>> sets;       // (id, set)
    for (const auto& net : net_timers) {
      if (net.all)
        all.push_back(net.persistence_id);
      for (const auto& [name, set] : net.named)
        if (set == nullptr)
          cancels.emplace_back(net.persistence_id, name);
        else
          sets.emplace_back(net.persistence_id, set);
    }
    auto none = [](std::size_t, std::size_t, std::int64_t) {};
    if (auto err = insert_rows(
          all.size(), delete_all_timers_sql, "cancelling timers",
          [&](statement& st, std::size_t first, std::size_t n) {
            for (std::size_t r = 0; r < n; ++r)
              st.bind(static_cast<int>(r) + 1, *all[first + r]);
          },
          none))
      return err;
    if (auto err = insert_rows(
          cancels.size(), delete_timers_sql, "cancelling timers",
          [&](statement& st, std::size_t first, std::size_t n) {
            for (std::size_t r = 0; r < n; ++r) {
              auto b = static_cast<int>(2 * r);
              st.bind(b + 1, *cancels[first + r].first).bind(b + 2, *cancels[first + r].second);
            }
          },
          none))
      return err;
    return insert_rows(
      sets.size(), insert_timers_sql, "setting timers",
      [&](statement& st, std::size_t first, std::size_t n) {
        for (std::size_t r = 0; r < n; ++r) {
          const auto& [id, set] = sets[first + r];
          auto b = static_cast<int>(4 * r);
          st.bind(b + 1, *id).bind(b + 2, set->name).bind(b + 3, set->due_ms)
            .bind(b + 4, set->payload_json);
        }
      },
      none);
  }

  /// Rolls back whatever is open after a failure; SQLite may already have done so.
  void rollback() {
    if (sqlite3_get_autocommit(writer.handle()) == 0)
      (void) writer.exec("ROLLBACK");
  }

  /// Group commit (I4): all writes of `jobs` (appends and outbox removals) in one
  /// transaction, each acknowledged only after COMMIT returned. A rejection fails alone;
  /// a failure fails the whole batch.
  void commit_batch(std::span<job> jobs) {
    // Optimistic first: the processed-message and outbox rows of all writes go in
    // together at the end. Only a duplicate delivery or a reused outbox id refuses them;
    // then the batch is rolled back and run again one write at a time, which finds the
    // writes to reject (I2).
    if (!run_batch(jobs, true))
      (void) run_batch(jobs, false);
  }

  /// One attempt at a batch (see commit_batch). Returns false, having rolled back and
  /// acknowledged nothing, only when an optimistic attempt was refused.
  bool run_batch(std::span<job> jobs, bool optimistic_attempt) {
    optimistic = optimistic_attempt;
    batch_processed_rows.clear();
    batch_outbox_rows.clear();
    batch_inserted_outbox.clear();
    auto ts = now();
    results.clear();
    results.reserve(jobs.size());
    caf::error batch_err = writer.exec("BEGIN IMMEDIATE");
    bool starts_tail = !batch_err && tail_enabled() && !tail_known && read_tail_floor();
    if (streams.size() >= cfg.stream_cache_entries)
      streams.clear();  // bounded memory: a cold miss costs one indexed lookup
    ++gen;
    touched.clear();
    batch_events.clear();
    batch_timers.clear();
    if (!batch_err) {
      for (std::size_t i = 0; i < jobs.size(); ++i) {
        if (auto* removal = std::get_if<outbox_removal>(&jobs[i])) {
          // Only an I/O error or corruption makes a DELETE fail: fail the batch.
          if (auto err = delete_outbox_rows(writer, removal->seqs)) {
            batch_err = std::move(err);
            break;
          }
          results.emplace_back(write_result{});
          continue;
        }
        auto out = store_write(*append_of(jobs[i]), ts);
        if (out.batch_failed) {
          batch_err = out.result.error();
          break;
        }
        results.push_back(std::move(out.result));
      }
    }
    bool refused = false;
    if (!batch_err && optimistic)
      batch_err = insert_batch_messages(ts, refused);
    if (refused) {
      rollback();
      touched.clear();  // the cache's committed states still hold; the overlay is dropped
      ++gen;
      return false;  // the next attempt starts with emptied queues
    }
    if (!batch_err && !batch_events.empty())
      batch_err = insert_batch_events(ts);
    if (!batch_err && !batch_timers.empty())
      batch_err = insert_batch_timers();
    if (!batch_err) {
      auto t0 = std::chrono::steady_clock::now();
      batch_err = writer.exec("COMMIT");
      n_commit_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
    }
    if (batch_err) {
      rollback();
      // After an I/O error the writer's view may be stale: relearn from the file.
      streams.clear();
      touched.clear();
      ++gen;
      drop_tail();
      for (std::size_t i = 0; i < jobs.size(); ++i) {
        // A write rejected before the failure stays rejected; all others failed.
        bool is_append = append_of(jobs[i]) != nullptr;
        if (i < results.size() && !results[i]) {
          if (is_append)
            n_refused.fetch_add(1, std::memory_order_relaxed);
          acknowledge(jobs[i], std::move(results[i]));
        } else {
          if (is_append)
            n_failed.fetch_add(1, std::memory_order_relaxed);
          acknowledge(jobs[i], batch_err);
        }
      }
      return true;
    }
    for (auto* e : touched)
      e->committed = e->pending;
    touched.clear();
    ++gen;
    n_transactions.fetch_add(1, std::memory_order_relaxed);
    n_writes.fetch_add(static_cast<std::uint64_t>(std::count_if(
                         jobs.begin(), jobs.end(),
                         [](const job& j) { return append_of(j) != nullptr; })),
                       std::memory_order_relaxed);
    n_events.fetch_add(batch_events.size(), std::memory_order_relaxed);
    n_refused.fetch_add(static_cast<std::uint64_t>(std::count_if(
                          results.begin(), results.end(), [](const auto& r) { return !r; })),
                        std::memory_order_relaxed);
    if (jobs.size() > n_max_batch.load(std::memory_order_relaxed))
      n_max_batch.store(jobs.size(), std::memory_order_relaxed);
    if (tail_enabled())
      extend_tail(jobs, ts, starts_tail);
    for (std::size_t i = 0; i < jobs.size(); ++i)
      acknowledge(jobs[i], std::move(results[i]));
    return true;
  }

  // -- the outbox tail (JOURNAL.md §5) ------------------------------------------------

  bool tail_enabled() const { return cfg.outbox_tail_rows > 0 && !cfg.read_only; }

  /// Inside the batch's transaction: the highest outbox_seq ever given out, which every
  /// row committed before this batch has at most (AUTOINCREMENT, I11). False if it cannot
  /// be read: the tail then waits for a later batch, and reads use the file.
  bool read_tail_floor() {
    auto st = writer.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'");
    if (!st)
      return false;
    auto& s = **st;
    reset_guard guard{s};
    auto rc = s.step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return false;
    tail_next_floor = rc == SQLITE_ROW ? static_cast<std::uint64_t>(s.int64(0)) : 0;
    return true;
  }

  static std::size_t tail_bytes_of(const outbox_record& r) {
    return r.message_id.size() + r.source_persistence_id.size() + r.destination.size()
           + r.payload_json.size() + sizeof(outbox_record);
  }

  /// Takes the tail's oldest row out; the floor rises to it. Caller holds tail.mtx.
  outbox_record pop_tail_front() {
    auto row = std::move(tail.rows.front());
    tail.rows.pop_front();
    tail.floor = row.outbox_seq;
    tail.bytes -= tail_bytes_of(row);
    return row;
  }

  /// After a failed transaction, whose rows the tail cannot know: reads use the file until
  /// a batch reads a new floor.
  void drop_tail() {
    tail_known = false;
    std::lock_guard guard{tail.mtx};
    tail.valid = false;
    tail.rows.clear();
    tail.bytes = 0;
  }

  /// Removes `seqs` from the tail (their removal committed). Caller holds tail.mtx.
  void erase_from_tail(const std::vector<std::uint64_t>& seqs) {
    auto& rows = tail.rows;
    if (rows.empty())
      return;
    std::vector<std::uint64_t> gone;
    for (auto seq : seqs)
      if (seq > tail.floor && seq <= rows.back().outbox_seq)
        gone.push_back(seq);
    if (gone.empty())
      return;
    std::sort(gone.begin(), gone.end());
    auto end = std::remove_if(rows.begin(), rows.end(), [&](const outbox_record& r) {
      if (!std::binary_search(gone.begin(), gone.end(), r.outbox_seq))
        return false;
      tail.bytes -= tail_bytes_of(r);
      return true;
    });
    rows.erase(end, rows.end());
  }

  /// After COMMIT, before the acknowledgements: moves the committed writes' outbox rows
  /// into the tail (their strings are not needed once stored) and takes out the rows whose
  /// removal this batch committed.
  void extend_tail(std::span<job> jobs, time_ms ts, bool starts_tail) {
    std::lock_guard guard{tail.mtx};
    if (starts_tail) {
      tail.rows.clear();
      tail.bytes = 0;
      tail.floor = tail_next_floor;
      tail.valid = true;
      tail_known = true;
    }
    if (!tail.valid)
      return;
    for (const auto& ins : batch_inserted_outbox) {
      if (!results[ins.write])
        continue;  // a refused write: its rows were deleted again (I2)
      auto* w = append_of(jobs[ins.write]);
      auto& m = w->outbox[ins.index];
      auto& r = tail.rows.emplace_back(outbox_record{ins.seq, std::move(m.message_id),
                                                     w->persistence_id, std::move(m.destination),
                                                     std::move(m.payload_json), ts});
      tail.bytes += tail_bytes_of(r);
    }
    for (const auto& j : jobs)
      if (const auto* removal = std::get_if<outbox_removal>(&j))
        erase_from_tail(removal->seqs);
    while (!tail.rows.empty()
           && (tail.rows.size() > cfg.outbox_tail_rows || tail.bytes > cfg.outbox_tail_bytes))
      (void) pop_tail_front();
  }

  /// outbox_pending from the tail, or nullopt when the file must answer (no valid tail,
  /// or rows at or below after_seq's successor may have left it). Rows handed out leave
  /// the tail: a later read from before them finds them in the file.
  std::optional<std::vector<outbox_record>> take_from_tail(std::uint64_t after_seq,
                                                           std::uint64_t max) {
    std::lock_guard guard{tail.mtx};
    if (!tail.valid || after_seq < tail.floor)
      return std::nullopt;
    auto& rows = tail.rows;
    while (!rows.empty() && rows.front().outbox_seq <= after_seq)
      (void) pop_tail_front();
    std::vector<outbox_record> out;
    out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(max, rows.size())));
    while (!rows.empty() && out.size() < max)
      out.push_back(pop_tail_front());
    return out;
  }

  /// Frees the write's memory before its callback: a caller that writes again from the
  /// callback (the usual loop) then gets the same malloc chunks back at once, instead of
  /// the allocator churning through a batch of frees afterwards.
  static void acknowledge(pending_write& pw, caf::expected<write_result> r) {
    pw.w = atomic_write{};
    deliver(pw.done, std::move(r));
  }

  static void acknowledge(job& j, caf::expected<write_result> r) {
    if (auto* pw = std::get_if<pending_write>(&j)) {
      acknowledge(*pw, std::move(r));
      return;
    }
    if (auto* tw = std::get_if<ticketed_write>(&j)) {
      deliver(std::move(tw->ticket), std::move(r));
      return;
    }
    auto& removal = std::get<outbox_removal>(j);
    try {
      removal.done(r ? caf::error{} : std::move(r.error()));
    } catch (...) {
      // As for write callbacks: a throwing callback must not take the writer down.
    }
  }

  /// Calls the ticket's `done` and drops the journal's reference to it (the write goes
  /// back inside the ticket, unfreed).
  static void deliver(std::shared_ptr<write_ticket> t, caf::expected<write_result> r) {
    try {
      t->done(std::move(r));
    } catch (...) {
      // As for write callbacks: a throwing callback must not take the writer down.
    }
  }

  static void deliver(write_callback& done, caf::expected<write_result> r) {
    if (!done)
      return;
    try {
      done(std::move(r));
    } catch (...) {
      // A throwing callback must not take the writer (and every other caller) down.
    }
  }

  /// Hands `j` to the writer. Returns false, leaving `j` untouched, once the journal is
  /// stopping or closed.
  bool try_enqueue(job&& j) {
    {
      std::lock_guard guard{queue_mtx};
      if (closed || stopping)
        return false;
      queue.emplace_back(std::move(j));
    }
    queue_cv.notify_one();
    return true;
  }

  /// Hands an append (a callback's or a ticket's) to the writer. A read-only journal, an
  /// invalid write (validated here, on the caller's thread) or a closed journal answers it
  /// at once, and nothing is queued.
  void queue_append(job j) {
    auto err = writable();
    if (!err)
      err = validate_write(*append_of(j), cfg.limits);
    if (!err) {
      if (try_enqueue(std::move(j)))
        return;
      err = closed_error();
    }
    acknowledge(j, std::move(err));
  }

  caf::error closed_error() const {
    return make_persistence_error(persistence_errc::closed,
                                  "journal '" + cfg.path + "' is closed");
  }

  /// Runs `body` in its own transaction on the writer thread and waits for it.
  caf::error run_maintenance(std::function<caf::error(impl&)> body) {
    std::promise<caf::error> done;
    auto result = done.get_future();
    auto task = [&body, &done](impl& self) {
      caf::error err = self.writer.exec("BEGIN IMMEDIATE");
      if (!err)
        err = body(self);
      if (!err) {
        auto t0 = std::chrono::steady_clock::now();
        err = self.writer.exec("COMMIT");
        self.n_commit_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
      }
      if (err) {
        self.rollback();
        self.streams.clear();
        self.drop_tail();
      }
      done.set_value(std::move(err));
    };
    if (!try_enqueue(maintenance{std::move(task)}))
      return closed_error();
    return result.get();
  }

  caf::error writable() const {
    if (cfg.read_only)
      return make_persistence_error(persistence_errc::read_only,
                                    "journal '" + cfg.path + "' was opened read-only");
    return {};
  }

  // -- readers ------------------------------------------------------------------------

  /// A read connection borrowed from the pool, returned on destruction.
  struct reader_lease {
    impl* owner = nullptr;
    std::unique_ptr<connection> conn;
    reader_lease(impl* o, std::unique_ptr<connection> c) : owner(o), conn(std::move(c)) {}
    reader_lease(reader_lease&&) = default;
    ~reader_lease() {
      if (conn) {
        std::lock_guard guard{owner->readers_mtx};
        if (owner->idle_readers.size() < owner->cfg.max_read_connections)
          owner->idle_readers.push_back(std::move(conn));
      }
    }
    connection& operator*() { return *conn; }
  };

  caf::expected<reader_lease> borrow_reader() {
    {
      std::lock_guard guard{readers_mtx};
      if (!idle_readers.empty()) {
        reader_lease lease{this, std::move(idle_readers.back())};
        idle_readers.pop_back();
        return lease;
      }
    }
    auto conn = std::make_unique<connection>();
    if (auto err = conn->open(cfg.path, true, cfg.vfs))
      return err;
    if (auto err = configure(*conn, cfg, false))
      return err;
    return reader_lease{this, std::move(conn)};
  }

  /// Runs `body` inside one read transaction so that multi-statement reads are
  /// consistent (I5).
  template <class T, class F>
  caf::expected<T> read(F body) {
    auto lease = borrow_reader();
    if (!lease)
      return lease.error();
    auto& c = **lease;
    auto b = c.prepare("BEGIN");
    if (!b)
      return b.error();
    if (auto err = c.run(**b, "BEGIN"))
      return err;
    caf::expected<T> result = body(c);
    if (auto e = c.prepare("COMMIT"))
      (void) c.run(**e, "COMMIT");
    return result;
  }
};

// -- public API ------------------------------------------------------------------------

sqlite_journal::sqlite_journal(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

sqlite_journal::~sqlite_journal() { close(); }

bool disable_sqlite_memory_status() {
  static std::mutex m;
  std::lock_guard<std::mutex> guard{m};
  // SQLITE_MISUSE once SQLite is initialized (or after an earlier call took effect and a
  // connection was opened): nothing changes then.
  return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
}

caf::expected<std::unique_ptr<sqlite_journal>> sqlite_journal::open(sqlite_journal_config cfg) {
  if (cfg.path.empty())
    return make_persistence_error(persistence_errc::invalid_argument, "journal path is empty");
  // Before anything here initializes SQLite (registering a VFS does).
  if (!cfg.sqlite_memory_status)
    (void) disable_sqlite_memory_status();
  if (cfg.max_batch_writes == 0)
    cfg.max_batch_writes = 1;
  auto p = std::make_unique<impl>();
  p->cfg = std::move(cfg);
  auto& c = p->cfg;
  if (c.read_only) {
    connection probe;
    if (auto err = probe.open(c.path, true, c.vfs))
      return err;
    auto version = user_version(probe);
    if (!version)
      return version.error();
    if (auto err = check_schema_not_newer(*version, c.path))
      return err;
    if (*version == 0)
      return make_persistence_error(persistence_errc::cannot_open,
                                    "'" + c.path + "' is not a longhaul journal");
    p->file_version = *version;
  } else {
    // I8: one writing process per journal; checked before SQLite can block on a lock.
    if (auto err = p->lock.acquire(c.path))
      return err;
    std::string writer_vfs = c.vfs;
    if (c.buffer_wal_writes) {
      try {
        writer_vfs = wal_buffer_vfs_over(c.vfs);
      } catch (const std::exception& e) {
        return make_persistence_error(persistence_errc::cannot_open,
                                      "'" + c.path + "': " + e.what());
      }
    }
    if (auto err = p->writer.open(c.path, false, writer_vfs))
      return err;
    if (auto err = check_is_journal(p->writer, c.path))
      return err;
    if (auto err = configure(p->writer, c, true))
      return err;
    sqlite3_wal_hook(p->writer.handle(), &impl::after_wal_commit, p.get());
    if (auto err = migrate(p->writer, c.path))
      return err;
    p->file_version = schema_version;
    p->writer_thread = std::thread{[raw = p.get()] { raw->run_writer(); }};
  }
  return std::unique_ptr<sqlite_journal>{new sqlite_journal(std::move(p))};
}

void sqlite_journal::close() {
  if (!impl_)
    return;
  {
    std::lock_guard guard{impl_->queue_mtx};
    if (impl_->closed)
      return;
    impl_->stopping = true;
  }
  impl_->queue_cv.notify_all();
  if (impl_->writer_thread.joinable())
    impl_->writer_thread.join();
  std::lock_guard guard{impl_->queue_mtx};
  impl_->closed = true;
}

void sqlite_journal::write(atomic_write w, write_callback done) {
  impl_->queue_append(impl::pending_write{std::move(w), std::move(done)});
}

void sqlite_journal::submit(std::shared_ptr<write_ticket> t) {
  if (t)
    impl_->queue_append(impl::ticketed_write{std::move(t)});
}

caf::expected<replay_result> sqlite_journal::replay(std::string_view id, sequence_nr from,
                                                    sequence_nr to, std::uint64_t max) {
  return impl_->read<replay_result>([&](connection& c) -> caf::expected<replay_result> {
    return impl::replay_on(c, id, from, to, max);
  });
}

caf::expected<sequence_nr> sqlite_journal::highest_seq(std::string_view id) {
  return impl_->read<sequence_nr>([&](connection& c) -> caf::expected<sequence_nr> {
    auto stream = impl::load_stream(c, id);
    if (!stream)
      return stream.error();
    return stream->second;
  });
}

caf::error sqlite_journal::delete_up_to(std::string_view id, sequence_nr n) {
  if (auto err = impl_->writable())
    return err;
  if (n == 0)
    return {};
  std::string key{id};
  return impl_->run_maintenance([&](impl& self) -> caf::error {
    auto stream = self.lookup_stream(key);
    if (!stream)
      return stream.error();
    if (stream->stream_id == 0)
      return {};
    auto& c = self.writer;
    // I6: remember the highest sequence number before deleting, so it never decreases.
    auto mark = c.prepare("UPDATE streams SET deleted_highest = max(deleted_highest, ?)"
                          " WHERE stream_id = ?");
    auto tags = c.prepare("DELETE FROM event_tags WHERE position IN"
                          " (SELECT position FROM events WHERE stream_id = ? AND seq <= ?)");
    auto del = c.prepare("DELETE FROM events WHERE stream_id = ? AND seq <= ?");
    for (auto* st : {&mark, &tags, &del})
      if (!*st)
        return st->error();
    (*mark)->bind(1, static_cast<std::int64_t>(stream->highest)).bind(2, stream->stream_id);
    if (auto err = c.run(**mark, "marking deletion"))
      return err;
    (*tags)->bind(1, stream->stream_id).bind(2, clamp64(n));
    if (auto err = c.run(**tags, "deleting tags"))
      return err;
    (*del)->bind(1, stream->stream_id).bind(2, clamp64(n));
    return c.run(**del, "deleting events of '" + key + "'");
  });
}

caf::expected<std::vector<event_record>>
sqlite_journal::read_all(std::uint64_t after_position, std::uint64_t max,
                         const std::optional<std::string>& tag) {
  using result = std::vector<event_record>;
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    result out;
    if (max == 0)
      return out;
    const char* sql
      = tag ? "SELECT s.persistence_id, e.seq, e.type, e.schema_version, e.payload, e.tags,"
              " e.written_at, e.position FROM event_tags t"
              " JOIN events e ON e.position = t.position"
              " JOIN streams s ON s.stream_id = e.stream_id"
              " WHERE t.tag = ?2 AND t.position > ?1 ORDER BY t.position LIMIT ?3"
            : "SELECT s.persistence_id, e.seq, e.type, e.schema_version, e.payload, e.tags,"
              " e.written_at, e.position FROM events e"
              " JOIN streams s ON s.stream_id = e.stream_id"
              " WHERE e.position > ?1 ORDER BY e.position LIMIT ?3";
    auto st = c.prepare(sql);
    if (!st)
      return st.error();
    auto& s = **st;
    reset_guard guard{s};
    s.bind(1, clamp64(after_position)).bind(3, clamp64(max));
    if (tag)
      s.bind(2, *tag);
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      auto& ev = out.emplace_back();
      ev.persistence_id = s.text(0);
      read_event_columns(s, 1, ev);
    }
    if (rc != SQLITE_DONE)
      return translate(rc, c.handle(), "reading all events");
    return out;
  });
}

caf::error sqlite_journal::save_snapshot(snapshot_record snap) {
  if (auto err = impl_->writable())
    return err;
  if (snap.persistence_id.empty() || snap.persistence_id.size() > impl_->cfg.limits.max_id_bytes)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "snapshot persistence id is empty or too long");
  if (snap.seq == 0)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "snapshot of '" + snap.persistence_id + "' at sequence 0");
  if (snap.state_json.size() > impl_->cfg.limits.max_payload_bytes)
    return make_persistence_error(persistence_errc::payload_too_large,
                                  "snapshot of '" + snap.persistence_id + "' is too large");
  if (!is_valid_json(snap.state_json))
    return make_persistence_error(persistence_errc::invalid_payload,
                                  "snapshot of '" + snap.persistence_id + "' is not valid JSON");
  return impl_->run_maintenance([&](impl& self) -> caf::error {
    auto stream = self.lookup_stream(snap.persistence_id);
    if (!stream)
      return stream.error();
    if (snap.seq > stream->highest)
      return make_persistence_error(persistence_errc::invalid_argument,
                                    "snapshot of '" + snap.persistence_id + "' at sequence "
                                      + std::to_string(snap.seq) + " but the highest stored is "
                                      + std::to_string(stream->highest));
    auto& c = self.writer;
    auto ins = c.prepare("INSERT OR REPLACE INTO snapshots (stream_id, seq, state, saved_at)"
                         " VALUES (?, ?, ?, ?)");
    if (!ins)
      return ins.error();
    (*ins)->bind(1, stream->stream_id).bind(2, static_cast<std::int64_t>(snap.seq))
      .bind(3, snap.state_json).bind(4, self.now());
    if (auto err = c.run(**ins, "saving snapshot of '" + snap.persistence_id + "'"))
      return err;
    if (self.cfg.keep_snapshots == 0)
      return {};
    auto prune = c.prepare("DELETE FROM snapshots WHERE stream_id = ?1 AND seq NOT IN"
                           " (SELECT seq FROM snapshots WHERE stream_id = ?1"
                           " ORDER BY seq DESC LIMIT ?2)");
    if (!prune)
      return prune.error();
    (*prune)->bind(1, stream->stream_id)
      .bind(2, static_cast<std::int64_t>(self.cfg.keep_snapshots));
    return c.run(**prune, "pruning snapshots");
  });
}

caf::expected<std::optional<snapshot_record>>
sqlite_journal::load_snapshot(std::string_view id, const snapshot_selection& sel) {
  using result = std::optional<snapshot_record>;
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    return impl::snapshot_on(c, id, sel);
  });
}

caf::error sqlite_journal::delete_snapshots(std::string_view id, const snapshot_selection& sel) {
  if (auto err = impl_->writable())
    return err;
  std::string key{id};
  return impl_->run_maintenance([&](impl& self) -> caf::error {
    auto del = self.writer.prepare(
      "DELETE FROM snapshots WHERE stream_id = (SELECT stream_id FROM streams"
      " WHERE persistence_id = ?) AND seq >= ? AND seq <= ? AND saved_at <= ?");
    if (!del)
      return del.error();
    (*del)->bind(1, key).bind(2, clamp64(sel.min_seq)).bind(3, clamp64(sel.max_seq))
      .bind(4, sel.max_saved_at_ms);
    return self.writer.run(**del, "deleting snapshots of '" + key + "'");
  });
}

namespace {

caf::expected<std::vector<timer_record>> read_timers(connection& c, statement& s) {
  std::vector<timer_record> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back(timer_record{s.text(0), s.text(1), s.int64(2), s.text(3)});
  if (rc != SQLITE_DONE)
    return translate(rc, c.handle(), "reading timers");
  return out;
}

}  // namespace

caf::expected<std::vector<timer_record>> sqlite_journal::timers_due(time_ms until,
                                                                    std::uint64_t max) {
  using result = std::vector<timer_record>;
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    auto st = c.prepare("SELECT persistence_id, name, due_at, payload FROM timers"
                        " WHERE due_at <= ? ORDER BY due_at, persistence_id, name LIMIT ?");
    if (!st)
      return st.error();
    reset_guard guard{**st};
    (*st)->bind(1, until).bind(2, clamp64(max));
    return read_timers(c, **st);
  });
}

caf::expected<std::vector<timer_record>> sqlite_journal::timers_due_after(
  const timer_position& after, time_ms until, std::uint64_t max) {
  using result = std::vector<timer_record>;
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    // A row-value comparison: SQLite seeks timers_by_due to `after` and walks on.
    auto st = c.prepare("SELECT persistence_id, name, due_at, payload FROM timers"
                        " WHERE (due_at, persistence_id, name) > (?, ?, ?) AND due_at <= ?"
                        " ORDER BY due_at, persistence_id, name LIMIT ?");
    if (!st)
      return st.error();
    reset_guard guard{**st};
    (*st)->bind(1, after.due_ms)
      .bind(2, after.persistence_id)
      .bind(3, after.name)
      .bind(4, until)
      .bind(5, clamp64(max));
    return read_timers(c, **st);
  });
}

namespace {

/// `timers_of` inside a read transaction the caller holds.
caf::expected<std::vector<timer_record>> timers_of_on(connection& c, std::string_view id) {
  auto st = c.prepare("SELECT persistence_id, name, due_at, payload FROM timers"
                      " WHERE persistence_id = ? ORDER BY name");
  if (!st)
    return st.error();
  reset_guard guard{**st};
  (*st)->bind(1, id);
  return read_timers(c, **st);
}

}  // namespace

caf::expected<std::vector<timer_record>> sqlite_journal::timers_of(std::string_view id) {
  using result = std::vector<timer_record>;
  return impl_->read<result>(
    [&](connection& c) -> caf::expected<result> { return timers_of_on(c, id); });
}

caf::expected<recovery_start> sqlite_journal::load_recovery_start(std::string_view id,
                                                                   std::uint64_t max_events) {
  return impl_->read<recovery_start>([&](connection& c) -> caf::expected<recovery_start> {
    recovery_start out;
    auto stream = impl::load_stream(c, id);
    if (!stream)
      return stream.error();
    // Whatever is stored under an id (events, snapshots, timers) was written together
    // with its stream row, and stream rows are never deleted: without one, a new instance
    // needs no further reads (5.5 of them per order in the retail benchmark).
    if (stream->first == 0)
      return out;
    auto snap = impl::snapshot_on(c, id, {});
    if (!snap)
      return snap.error();
    out.snapshot = std::move(*snap);
    auto from = out.snapshot ? out.snapshot->seq + 1 : 1;
    auto events = impl::replay_stream_on(c, id, *stream, from, max_sequence_nr, max_events);
    if (!events)
      return events.error();
    out.events = std::move(*events);
    auto timers = timers_of_on(c, id);
    if (!timers)
      return timers.error();
    out.timers = std::move(*timers);
    return out;
  });
}

caf::expected<std::vector<outbox_record>> sqlite_journal::outbox_pending(std::uint64_t after_seq,
                                                                         std::uint64_t max) {
  using result = std::vector<outbox_record>;
  if (auto rows = impl_->take_from_tail(after_seq, max)) {
    impl_->n_outbox_memory_reads.fetch_add(1, std::memory_order_relaxed);
    return std::move(*rows);
  }
  impl_->n_outbox_file_reads.fetch_add(1, std::memory_order_relaxed);
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    auto st = c.prepare("SELECT o.outbox_seq, o.message_id, s.persistence_id, o.destination,"
                        " o.payload, o.created_at FROM outbox o"
                        " JOIN streams s ON s.stream_id = o.stream_id"
                        " WHERE o.outbox_seq > ? ORDER BY o.outbox_seq LIMIT ?");
    if (!st)
      return st.error();
    auto& s = **st;
    reset_guard guard{s};
    s.bind(1, clamp64(after_seq)).bind(2, clamp64(max));
    result out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW)
      out.push_back(outbox_record{static_cast<std::uint64_t>(s.int64(0)), s.text(1), s.text(2),
                                  s.text(3), s.text(4), s.int64(5)});
    if (rc != SQLITE_DONE)
      return translate(rc, c.handle(), "reading outbox");
    return out;
  });
}

caf::error sqlite_journal::outbox_delivered(std::vector<std::uint64_t> seqs) {
  if (auto err = impl_->writable())
    return err;
  if (seqs.empty())
    return {};
  auto err = impl_->run_maintenance(
    [&](impl& self) -> caf::error { return delete_outbox_rows(self.writer, seqs); });
  if (!err) {
    std::lock_guard guard{impl_->tail.mtx};
    impl_->erase_from_tail(seqs);
  }
  return err;
}

void sqlite_journal::outbox_delivered_async(std::vector<std::uint64_t> seqs,
                                            std::function<void(caf::error)> done) {
  if (auto err = impl_->writable()) {
    done(std::move(err));
    return;
  }
  if (seqs.empty()) {
    done(caf::error{});
    return;
  }
  impl::job j{impl::outbox_removal{std::move(seqs), std::move(done)}};
  if (!impl_->try_enqueue(std::move(j)))
    std::get<impl::outbox_removal>(j).done(impl_->closed_error());
}

caf::error sqlite_journal::record_dead_letter(dead_letter_record rec) {
  if (auto err = impl_->writable())
    return err;
  if (rec.message_id.empty() || rec.destination.empty())
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "dead letter needs a message id and a destination");
  return impl_->run_maintenance([&](impl& self) -> caf::error {
    // I15: an identical dead letter (a redelivery after a crash) is stored once.
    auto seen = self.writer.prepare("SELECT 1 FROM dead_letters WHERE message_id = ?"
                                    " AND destination = ? AND reason = ? LIMIT 1");
    if (!seen)
      return seen.error();
    {
      reset_guard guard{**seen};
      (*seen)->bind(1, rec.message_id).bind(2, rec.destination).bind(3, rec.reason);
      auto rc = (*seen)->step();
      if (rc == SQLITE_ROW)
        return {};
      if (rc != SQLITE_DONE)
        return translate(rc, self.writer.handle(),
                         "looking up dead letter '" + rec.message_id + "'");
    }
    auto ins = self.writer.prepare(
      "INSERT INTO dead_letters (message_id, source_persistence_id, destination, payload, reason,"
      " recorded_at) VALUES (?, ?, ?, ?, ?, ?)");
    if (!ins)
      return ins.error();
    (*ins)->bind(1, rec.message_id).bind(2, rec.source_persistence_id).bind(3, rec.destination)
      .bind(4, rec.payload_json).bind(5, rec.reason).bind(6, self.now());
    return self.writer.run(**ins, "recording dead letter '" + rec.message_id + "'");
  });
}

caf::expected<std::vector<dead_letter_record>> sqlite_journal::dead_letters(std::uint64_t after_seq,
                                                                            std::uint64_t max) {
  using result = std::vector<dead_letter_record>;
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    auto st = c.prepare("SELECT dead_letter_seq, message_id, source_persistence_id, destination,"
                        " payload, reason, recorded_at FROM dead_letters"
                        " WHERE dead_letter_seq > ? ORDER BY dead_letter_seq LIMIT ?");
    if (!st)
      return st.error();
    auto& s = **st;
    reset_guard guard{s};
    s.bind(1, clamp64(after_seq)).bind(2, clamp64(max));
    result out;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW)
      out.push_back(dead_letter_record{static_cast<std::uint64_t>(s.int64(0)), s.text(1),
                                       s.text(2), s.text(3), s.text(4), s.text(5), s.int64(6)});
    if (rc != SQLITE_DONE)
      return translate(rc, c.handle(), "reading dead letters");
    return out;
  });
}

caf::expected<bool> sqlite_journal::is_processed(std::string_view id,
                                                 std::string_view message_id) {
  return impl_->read<bool>([&](connection& c) -> caf::expected<bool> {
    auto st = c.prepare("SELECT 1 FROM processed_messages p"
                        " JOIN streams s ON s.stream_id = p.stream_id"
                        " WHERE s.persistence_id = ? AND p.message_id = ?");
    if (!st)
      return st.error();
    reset_guard guard{**st};
    (*st)->bind(1, id).bind(2, message_id);
    auto rc = (*st)->step();
    if (rc == SQLITE_ROW)
      return true;
    if (rc == SQLITE_DONE)
      return false;
    return translate(rc, c.handle(), "reading processed messages");
  });
}

caf::expected<std::optional<processed_message>>
sqlite_journal::processed_outcome(std::string_view id, std::string_view message_id) {
  using result = std::optional<processed_message>;
  // A read-only open of a version 1 file has no rejection column: all its rows are accepted.
  const char* sql = impl_->file_version >= 2
                      ? "SELECT p.processed_at, p.rejection FROM processed_messages p"
                        " JOIN streams s ON s.stream_id = p.stream_id"
                        " WHERE s.persistence_id = ? AND p.message_id = ?"
                      : "SELECT p.processed_at, NULL FROM processed_messages p"
                        " JOIN streams s ON s.stream_id = p.stream_id"
                        " WHERE s.persistence_id = ? AND p.message_id = ?";
  return impl_->read<result>([&](connection& c) -> caf::expected<result> {
    auto st = c.prepare(sql);
    if (!st)
      return st.error();
    auto& s = **st;
    reset_guard guard{s};
    s.bind(1, id).bind(2, message_id);
    auto rc = s.step();
    if (rc == SQLITE_DONE)
      return result{};
    if (rc != SQLITE_ROW)
      return translate(rc, c.handle(), "reading processed message '" + std::string{message_id}
                                         + "' of '" + std::string{id} + "'");
    processed_message out{std::string{message_id}, std::nullopt, s.int64(0)};
    if (!s.is_null(1))
      out.rejection = s.text(1);
    return result{std::move(out)};
  });
}

void sqlite_journal::flush() {
  if (impl_->cfg.read_only)
    return;
  std::promise<void> done;
  auto result = done.get_future();
  if (!impl_->try_enqueue(impl::maintenance{[&done](impl&) { done.set_value(); }}))
    return;
  result.wait();
}

sqlite_journal::stats sqlite_journal::statistics() const {
  return {impl_->n_transactions.load(), impl_->n_writes.load(), impl_->n_max_batch.load(),
          impl_->n_outbox_memory_reads.load(), impl_->n_outbox_file_reads.load(),
          impl_->n_events.load(), impl_->n_refused.load(),
          impl_->n_failed.load(),  impl_->n_busy_ns.load(),
          impl_->n_commit_ns.load(), impl_->n_checkpoints.load(),
          impl_->n_checkpoint_ns.load()};
}

}  // namespace longhaul::persistence
