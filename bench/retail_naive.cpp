// The naive retail happy path (see retail_naive.hpp): what a competent team writes
// without a workflow tool. Each context owns a table with a status column; a context
// function changes its table in its own transaction and calls the next context directly.
// Per order: 11 fsync'ed commits (place, payment requested, credit used, payment paid,
// e-mail, order paid, goods picked, order picked, shipped, e-mail, order completed).
#include "bench/retail_naive.hpp"

#include "bench/bench_report.hpp"

#include <boost/json.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace longhaul::bench::retail_naive {

namespace {

namespace fs = std::filesystem;

const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS customers (
  customer_id TEXT PRIMARY KEY,
  credit      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS credit_uses (   -- what an order took, so a refund can restore it
  customer_id TEXT NOT NULL,
  order_id    TEXT NOT NULL,
  amount      INTEGER NOT NULL,
  PRIMARY KEY (customer_id, order_id)
);
CREATE TABLE IF NOT EXISTS orders (
  order_id    TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  items       TEXT NOT NULL,               -- JSON array of {article, amount}
  total       INTEGER NOT NULL,
  status      TEXT NOT NULL,               -- placed, paid, goods_fetched, completed
  pick_id     TEXT,
  shipment_id TEXT,
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
  order_id    TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL,
  amount      INTEGER NOT NULL,
  credit      INTEGER NOT NULL DEFAULT 0,
  card        INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  status      TEXT NOT NULL,               -- awaiting_credit, paid
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inventory_picks (
  order_id    TEXT PRIMARY KEY,
  pick_id     TEXT NOT NULL,
  status      TEXT NOT NULL,               -- picked
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shipments (
  order_id    TEXT PRIMARY KEY,
  shipment_id TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  status      TEXT NOT NULL,               -- shipped
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
  notification_id INTEGER PRIMARY KEY,
  customer_id     TEXT NOT NULL,
  kind            TEXT NOT NULL,           -- payment_received, order_shipped
  order_id        TEXT NOT NULL,
  created_at      INTEGER NOT NULL
);
)sql";

const char* sync_value(persistence::sync_mode sync) {
  return sync == persistence::sync_mode::full     ? "FULL"
         : sync == persistence::sync_mode::normal ? "NORMAL"
                                                  : "OFF";
}

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// One SQLite connection, configured like the journal's writer (WAL, synchronous, cache).
class connection {
public:
  connection(const fs::path& path, persistence::sync_mode sync, std::size_t cache_mb,
             const std::string& vfs) {
    auto rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              vfs.empty() ? nullptr : vfs.c_str());
    if (rc != SQLITE_OK)
      fail("open '" + path.string() + "'");
    sqlite3_extended_result_codes(db_, 1);
    // Several request threads may share the file: wait for the write lock, do not fail.
    sqlite3_busy_timeout(db_, 10'000);
    exec("PRAGMA journal_mode=WAL");
    exec(std::string{"PRAGMA synchronous="} + sync_value(sync));
    exec("PRAGMA cache_size=-" + std::to_string(cache_mb * 1024));
    exec("PRAGMA temp_store=MEMORY");
  }
  ~connection() { sqlite3_close_v2(db_); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string text = msg ? msg : "unknown error";
      sqlite3_free(msg);
      throw std::runtime_error{"naive SQLite: " + sql.substr(0, 60) + ": " + text};
    }
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error{"naive SQLite: " + what + ": "
                             + (db_ ? sqlite3_errmsg(db_) : "out of memory")};
  }

  sqlite3* get() const noexcept { return db_; }

private:
  sqlite3* db_ = nullptr;
};

/// A prepared statement kept for the connection's lifetime (reused for every order).
class statement {
public:
  statement(connection& c, const char* sql) : c_{c} {
    if (sqlite3_prepare_v3(c.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr)
        != SQLITE_OK)
      c.fail(std::string{"prepare "} + sql);
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  /// Binds the arguments in order (text or integer), from parameter 1.
  template <class... Args>
  statement& bind(const Args&... args) {
    int col = 0;
    (bind_one(++col, args), ...);
    return *this;
  }

  /// Steps a statement that returns no rows; resets it.
  void run() {
    auto rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    if (rc != SQLITE_DONE)
      c_.fail(std::string{"step "} + sqlite3_sql(stmt_));
  }

  /// Steps a statement that returns one integer; resets it. Fails without a row.
  std::int64_t one_int() {
    auto rc = sqlite3_step(stmt_);
    if (rc != SQLITE_ROW) {
      sqlite3_reset(stmt_);
      c_.fail(std::string{"no row from "} + sqlite3_sql(stmt_));
    }
    auto v = sqlite3_column_int64(stmt_, 0);
    sqlite3_reset(stmt_);
    return v;
  }

private:
  void bind_one(int col, std::string_view text) {
    sqlite3_bind_text(stmt_, col, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind_one(int col, const std::string& text) { bind_one(col, std::string_view{text}); }
  void bind_one(int col, const char* text) { bind_one(col, std::string_view{text}); }
  void bind_one(int col, std::int64_t v) { sqlite3_bind_int64(stmt_, col, v); }

  connection& c_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// What the fake card gateway answers: the same rule as the payment entity's `charge`
/// (retail_domain.cpp), a pure function of (seed, order, attempt).
enum class gateway_answer { charged, timed_out, card_expired };

gateway_answer gateway_charge(const std::string& order, std::int64_t attempt) {
  const auto& sim = retail::settings();
  if (retail::unit(order + "#" + std::to_string(attempt), 1) < sim.gateway_timeout_share)
    return gateway_answer::timed_out;
  if (retail::unit(order, 2) < sim.card_expired_share)
    return gateway_answer::card_expired;
  return gateway_answer::charged;
}

/// One request thread's view of the shop: a connection, its prepared statements and one
/// function per context operation, each its own transaction.
class shop {
public:
  shop(const fs::path& db, persistence::sync_mode sync, std::size_t cache_mb,
       const std::string& vfs)
    : c_{db, sync, cache_mb, vfs} {}

  /// The happy path of one order, context calling context.
  void process(const retail::place_order& o) {
    place(o);
    retrieve_payment(o.order_id, o.customer, o.total);
    set_order_status(o.order_id, "paid");
    auto pick = fetch_goods(o.order_id, o.items);
    goods_fetched(o.order_id, pick);
    auto shipment = ship_goods(o.order_id, pick, o.customer);
    record_email(o.customer, "order_shipped", o.order_id);
    complete(o.order_id, shipment);
  }

  std::uint64_t transactions() const noexcept { return transactions_; }

private:
  /// Runs `body` in BEGIN IMMEDIATE ... COMMIT; rolls back and rethrows on failure.
  template <class F>
  void transaction(F&& body) {
    begin_.run();
    try {
      body();
      commit_.run();
    } catch (...) {
      if (!sqlite3_get_autocommit(c_.get()))
        sqlite3_exec(c_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    ++transactions_;
  }

  // -- checkout ------------------------------------------------------------------------
  void place(const retail::place_order& o) {
    auto items = boost::json::serialize(boost::json::value_from(o.items));
    transaction([&] {
      insert_order_.bind(o.order_id, o.customer, items, o.total, now_ms()).run();
    });
  }

  // -- payment: credit first, the rest by card ------------------------------------------
  void retrieve_payment(const std::string& order, const std::string& customer,
                        std::int64_t amount) {
    transaction([&] { insert_payment_.bind(order, customer, amount, now_ms()).run(); });
    auto credit = use_credit(customer, order, amount);
    std::int64_t card = 0;
    std::int64_t attempts = 0;
    if (credit < amount) {
      attempts = 1;
      if (gateway_charge(order, attempts) != gateway_answer::charged)
        throw std::runtime_error{"naive: order " + order
                                 + " left the happy path at the card gateway"};
      card = amount - credit;
    }
    transaction([&] { payment_paid_.bind(credit, card, attempts, now_ms(), order).run(); });
    record_email(customer, "payment_received", order);
  }

  // -- customer ------------------------------------------------------------------------
  std::int64_t use_credit(const std::string& customer, const std::string& order,
                          std::int64_t amount) {
    std::int64_t taken = 0;
    transaction([&] {
      auto credit = select_credit_.bind(customer).one_int();
      taken = std::max<std::int64_t>(0, std::min(credit, amount));
      if (taken > 0) {
        take_credit_.bind(taken, customer).run();
        insert_credit_use_.bind(customer, order, taken).run();
      }
    });
    return taken;
  }

  // -- orders --------------------------------------------------------------------------
  void set_order_status(const std::string& order, const char* status) {
    transaction([&] { order_status_.bind(status, now_ms(), order).run(); });
  }
  void goods_fetched(const std::string& order, const std::string& pick) {
    transaction([&] { order_picked_.bind(pick, now_ms(), order).run(); });
  }
  void complete(const std::string& order, const std::string& shipment) {
    transaction([&] { order_completed_.bind(shipment, now_ms(), order).run(); });
  }

  // -- inventory -----------------------------------------------------------------------
  std::string fetch_goods(const std::string& order, const std::vector<retail::item>& items) {
    for (const auto& i : items)
      if (retail::settings().never_picked.count(i.article) > 0)
        throw std::runtime_error{"naive: order " + order + " has an article never picked"};
    auto pick = "pick-" + order;
    transaction([&] { insert_pick_.bind(order, pick, now_ms()).run(); });
    return pick;
  }

  // -- shipping ------------------------------------------------------------------------
  std::string ship_goods(const std::string& order, const std::string&,
                         const std::string& customer) {
    if (retail::unit(order, 3) < retail::settings().shipment_lost_share)
      throw std::runtime_error{"naive: the shipment of order " + order + " gets lost"};
    auto shipment = "ship-" + order;
    transaction([&] { insert_shipment_.bind(order, shipment, customer, now_ms()).run(); });
    return shipment;
  }

  // -- notification --------------------------------------------------------------------
  void record_email(const std::string& customer, const char* kind, const std::string& order) {
    transaction([&] { insert_email_.bind(customer, kind, order, now_ms()).run(); });
  }

  connection c_;
  statement begin_{c_, "BEGIN IMMEDIATE"};
  statement commit_{c_, "COMMIT"};
  statement insert_order_{c_, "INSERT INTO orders (order_id, customer_id, items, total, status, "
                              "updated_at) VALUES (?, ?, ?, ?, 'placed', ?)"};
  statement order_status_{c_, "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ?"};
  statement order_picked_{c_, "UPDATE orders SET status = 'goods_fetched', pick_id = ?, "
                              "updated_at = ? WHERE order_id = ?"};
  statement order_completed_{c_, "UPDATE orders SET status = 'completed', shipment_id = ?, "
                                 "updated_at = ? WHERE order_id = ?"};
  statement insert_payment_{c_, "INSERT INTO payments (order_id, customer_id, amount, status, "
                                "updated_at) VALUES (?, ?, ?, 'awaiting_credit', ?)"};
  statement payment_paid_{c_, "UPDATE payments SET credit = ?, card = ?, attempts = ?, "
                              "status = 'paid', updated_at = ? WHERE order_id = ?"};
  statement select_credit_{c_, "SELECT credit FROM customers WHERE customer_id = ?"};
  statement take_credit_{c_, "UPDATE customers SET credit = credit - ? WHERE customer_id = ?"};
  statement insert_credit_use_{c_, "INSERT INTO credit_uses (customer_id, order_id, amount) "
                                   "VALUES (?, ?, ?)"};
  statement insert_pick_{c_, "INSERT INTO inventory_picks (order_id, pick_id, status, "
                             "updated_at) VALUES (?, ?, 'picked', ?)"};
  statement insert_shipment_{c_, "INSERT INTO shipments (order_id, shipment_id, customer_id, "
                                 "status, updated_at) VALUES (?, ?, ?, 'shipped', ?)"};
  statement insert_email_{c_, "INSERT INTO notifications (customer_id, kind, order_id, "
                              "created_at) VALUES (?, ?, ?, ?)"};
  std::uint64_t transactions_ = 0;
};

// -- the slow-sync VFS ------------------------------------------------------------------
// A shim over the default VFS: every file method passes through, xSync sleeps afterwards.

std::atomic<std::int64_t> sync_delay_us{0};
sqlite3_vfs* base_vfs = nullptr;
sqlite3_vfs slow_vfs{};
sqlite3_io_methods slow_methods{};

/// Our file: the base VFS's file follows it in the same allocation (szOsFile).
struct slow_file {
  sqlite3_file base;
  sqlite3_file* real;
};

sqlite3_file* real_of(sqlite3_file* f) { return reinterpret_cast<slow_file*>(f)->real; }

int slow_close(sqlite3_file* f) { return real_of(f)->pMethods->xClose(real_of(f)); }
int slow_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xRead(real_of(f), buf, n, off);
}
int slow_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xWrite(real_of(f), buf, n, off);
}
int slow_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
int slow_sync(sqlite3_file* f, int flags) {
  auto rc = real_of(f)->pMethods->xSync(real_of(f), flags);
  if (auto us = sync_delay_us.load(std::memory_order_relaxed); us > 0)
    std::this_thread::sleep_for(std::chrono::microseconds{us});
  return rc;
}
int slow_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
int slow_lock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xLock(real_of(f), level); }
int slow_unlock(sqlite3_file* f, int level) {
  return real_of(f)->pMethods->xUnlock(real_of(f), level);
}
int slow_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int slow_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int slow_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int slow_device_characteristics(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
int slow_shm_map(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, out);
}
int slow_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
void slow_shm_barrier(sqlite3_file* f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
int slow_shm_unmap(sqlite3_file* f, int del) {
  return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}
int slow_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  return real_of(f)->pMethods->xFetch(real_of(f), off, n, out);
}
int slow_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

int slow_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* sf = reinterpret_cast<slow_file*>(f);
  sf->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(slow_file));
  sf->base.pMethods = nullptr;
  auto rc = base_vfs->xOpen(base_vfs, name, sf->real, flags, out_flags);
  // SQLite calls xClose only when pMethods is set, so set it only when the base opened.
  if (sf->real->pMethods != nullptr)
    sf->base.pMethods = &slow_methods;
  return rc;
}

void remove_db(const fs::path& db) {
  std::error_code ec;
  for (auto suffix : {"", "-wal", "-shm"})
    fs::remove(fs::path{db.string() + suffix}, ec);
}

}  // namespace

run_result run(const fs::path& db, persistence::sync_mode sync, std::size_t cache_mb,
               const std::vector<customer_credit>& customers,
               const std::vector<retail::place_order>& orders, std::size_t threads,
               const std::string& vfs) {
  {
    // Set up (untimed): schema and customers in one transaction.
    connection c{db, sync, cache_mb, vfs};
    c.exec(schema_sql);
    statement insert{c, "INSERT INTO customers (customer_id, credit) VALUES (?, ?)"};
    c.exec("BEGIN IMMEDIATE");
    for (const auto& cc : customers)
      insert.bind(cc.customer, cc.credit).run();
    c.exec("COMMIT");
  }
  threads = std::clamp<std::size_t>(threads, 1, std::max<std::size_t>(orders.size(), 1));
  run_result result;
  result.latencies_ms.assign(orders.size(), 0.0);
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> transactions{0};
  std::mutex mtx;
  std::exception_ptr first_error;
  auto cpu0 = process_cpu_s();
  stopwatch clock;
  auto worker = [&] {
    try {
      shop s{db, sync, cache_mb, vfs};
      for (auto i = next++; i < orders.size(); i = next++) {
        stopwatch order_clock;
        s.process(orders[i]);
        result.latencies_ms[i] = order_clock.elapsed_s() * 1e3;
      }
      transactions += s.transactions();
    } catch (...) {
      std::lock_guard guard{mtx};
      if (!first_error)
        first_error = std::current_exception();
      next = orders.size();  // the other threads stop after their current order
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t)
    pool.emplace_back(worker);
  worker();
  for (auto& t : pool)
    t.join();
  result.seconds = clock.elapsed_s();
  result.cpu_s = process_cpu_s() - cpu0;
  if (first_error)
    std::rethrow_exception(first_error);
  result.transactions = transactions.load();
  {
    // Untimed: every order completed, paid in full (credit + card) and e-mailed twice.
    connection c{db, sync, cache_mb, vfs};
    statement completed{c, "SELECT count(*) FROM orders o JOIN payments p USING (order_id) "
                           "WHERE o.status = 'completed' AND p.status = 'paid' "
                           "AND p.credit + p.card = o.total"};
    statement emails{c, "SELECT count(*) FROM notifications"};
    auto n = static_cast<std::int64_t>(orders.size());
    if (completed.one_int() != n || emails.one_int() != 2 * n)
      throw std::runtime_error{"naive: not every order completed and paid in full"};
  }
  return result;
}

std::string install_slow_sync_vfs(double delay_ms) {
  static const char* const name = "longhaul-bench-slow-sync";
  static std::once_flag once;
  std::call_once(once, [] {
    base_vfs = sqlite3_vfs_find(nullptr);
    if (base_vfs == nullptr)
      throw std::runtime_error{"naive SQLite: no default VFS"};
    slow_vfs = *base_vfs;  // every VFS-level call goes to the base VFS as it is
    slow_vfs.szOsFile = static_cast<int>(sizeof(slow_file)) + base_vfs->szOsFile;
    slow_vfs.zName = name;
    slow_vfs.pNext = nullptr;
    slow_vfs.xOpen = slow_open;
    slow_methods = {3,
                    slow_close,
                    slow_read,
                    slow_write,
                    slow_truncate,
                    slow_sync,
                    slow_file_size,
                    slow_lock,
                    slow_unlock,
                    slow_check_reserved,
                    slow_file_control,
                    slow_sector_size,
                    slow_device_characteristics,
                    slow_shm_map,
                    slow_shm_lock,
                    slow_shm_barrier,
                    slow_shm_unmap,
                    slow_fetch,
                    slow_unfetch};
    if (sqlite3_vfs_register(&slow_vfs, 0) != SQLITE_OK)
      throw std::runtime_error{"naive SQLite: cannot register the slow-sync VFS"};
  });
  sync_delay_us = static_cast<std::int64_t>(delay_ms * 1000.0);
  return name;
}

double commit_ms(const fs::path& dir, persistence::sync_mode sync, std::size_t commits,
                 const std::string& vfs) {
  auto db = dir / "commit-probe.db";
  remove_db(db);
  std::vector<double> samples;
  {
    connection c{db, sync, 2, vfs};
    c.exec("CREATE TABLE probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL)");
    statement begin{c, "BEGIN IMMEDIATE"};
    statement insert{c, "INSERT INTO probe (note) VALUES (?)"};
    statement commit{c, "COMMIT"};
    // Warm up without fsync until the WAL has wrapped once (auto-checkpoint at 1000
    // pages), as in a running service: appending to a growing WAL costs a metadata
    // journal commit per fsync, overwriting a reused one does not.
    c.exec("PRAGMA synchronous=OFF");
    for (int i = 0; i < 1100; ++i) {
      begin.run();
      insert.bind("warm-up").run();
      commit.run();
    }
    c.exec(std::string{"PRAGMA synchronous="} + sync_value(sync));
    for (std::size_t i = 0; i < commits; ++i) {
      stopwatch clock;
      begin.run();
      insert.bind("an order status changed").run();
      commit.run();
      samples.push_back(clock.elapsed_s() * 1e3);
    }
  }
  remove_db(db);
  return median(std::move(samples));
}

}  // namespace longhaul::bench::retail_naive
