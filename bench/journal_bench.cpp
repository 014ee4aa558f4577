// The journal benchmark: raw SQLite vs the SQLite journal on the journal's own schema —
// appends with 1, 100 and 10,000 closed-loop writers, full recovery, appends at 1M events.
// Run by `scripts/bench.sh journal`; prints a table and, last, one JSON line.
#include "bench/bench_report.hpp"
#include "bench/raw_sqlite.hpp"
#include "persistence/persistence_error.hpp"
#include "persistence/sqlite_journal.hpp"

// The raw baseline talks to SQLite directly: the only file outside persistence/ that may.
#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace longhaul::persistence;
namespace lb = longhaul::bench;
using lb::raw_db;
using lb::raw_stmt;
namespace fs = std::filesystem;

// --- options -------------------------------------------------------------------------

constexpr const char* usage_text =
  "usage: journal_bench [--runs N] [--quick] [--sync full|normal|off] [--dir PATH]\n"
  "                     [--seconds S] [--issue callback|thread]\n"
  "  --runs N        repeat every measurement N times, report medians (default 3; 1 with\n"
  "                  --quick)\n"
  "  --quick         small sizes and short runs, for smoke tests\n"
  "  --sync MODE     synchronous mode of raw SQLite and the journal (default full)\n"
  "  --dir PATH      parent of the scratch directory (default: the system temp dir)\n"
  "  --seconds S     duration of each append measurement (default 3; 0.2 with --quick)\n"
  "  --issue WHO     who issues a writer's next append after its acknowledgement:\n"
  "                  callback (default: the write callback, on the journal's writer\n"
  "                  thread) or thread (a client thread, as actor threads would)\n";

/// Who issues a writer's next write after its acknowledgement.
enum class issue_mode {
  callback,  ///< the write callback itself, on the journal's writer thread (the default)
  thread,    ///< a client thread the callback hands the writer to, as actors would be
};

/// A bad command line: main prints it with the usage and exits with 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  std::size_t runs = 3;
  bool quick = false;
  sync_mode sync = sync_mode::full;
  std::string sync_name = "full";
  std::string dir;
  double append_seconds = 3.0;
  std::size_t raw_txn_rows = 1000;           // rows per raw INSERT transaction
  std::size_t replay_ids = 10'000;           // (c): ids x events per id, also the (d) load
  std::size_t replay_events_per_id = 100;
  std::vector<std::size_t> writer_counts{1, 100, 10'000};
  std::size_t writers_at_load = 10'000;      // (d): writers of the journal run at 1M
  std::size_t raw_ids = 10'000;              // raw appends round-robin over this many ids
  issue_mode issue = issue_mode::callback;
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
      auto mode = parse_sync_mode(text);
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
      o.append_seconds = *s;
      seconds_given = true;
    } else if (arg == "--issue") {
      auto text = value();
      if (text == "callback")
        o.issue = issue_mode::callback;
      else if (text == "thread")
        o.issue = issue_mode::thread;
      else
        throw usage_error{"--issue must be callback or thread, not '" + std::string{text}
                          + "'"};
    } else {
      throw usage_error{"unknown argument '" + std::string{arg} + "'"};
    }
  }
  if (o.quick) {
    if (!runs_given)
      o.runs = 1;
    if (!seconds_given)
      o.append_seconds = 0.2;
    o.replay_ids = 1'000;
    o.replay_events_per_id = 10;
  }
  return o;
}

// --- workload --------------------------------------------------------------------------

constexpr const char* event_type = "order.placed";

/// An order of about 200 bytes; `n` varies every number in it.
std::string make_payload(std::uint64_t n) {
  char buf[512];
  auto len = std::snprintf(
    buf, sizeof(buf),
    R"({"order_id":"ord-%08llu","customer_id":"cust-%06llu","amount_cents":%llu,)"
    R"("currency":"EUR","lines":[{"sku":"sku-%05llu","qty":%llu,)"
    R"("price_cents":%llu},{"sku":"sku-%05llu","qty":1,"price_cents":%llu}]})",
    static_cast<unsigned long long>(n), static_cast<unsigned long long>(n % 997'331),
    static_cast<unsigned long long>(1'000 + n % 90'000),
    static_cast<unsigned long long>(n % 50'000), static_cast<unsigned long long>(1 + n % 9),
    static_cast<unsigned long long>(100 + n % 9'000),
    static_cast<unsigned long long>((n * 7) % 50'000),
    static_cast<unsigned long long>(100 + (n * 13) % 9'000));
  return std::string(buf, static_cast<std::size_t>(len));
}

/// Payloads made once, so that neither side of a comparison pays for formatting.
class payload_pool {
public:
  explicit payload_pool(std::size_t n) {
    items_.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
      items_.push_back(make_payload(i * 7'919 + 1));
  }
  const std::string& at(std::uint64_t i) const { return items_[i % items_.size()]; }
  double average_bytes() const {
    double total = 0;
    for (const auto& p : items_)
      total += static_cast<double>(p.size());
    return total / static_cast<double>(items_.size());
  }

private:
  std::vector<std::string> items_;
};

std::vector<std::string> make_ids(std::string_view prefix, std::size_t n) {
  std::vector<std::string> ids;
  ids.reserve(n);
  char buf[32];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%05zu", i);
    ids.push_back(std::string{prefix} + buf);
  }
  return ids;
}

time_ms now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// --- the journal -----------------------------------------------------------------------

std::unique_ptr<sqlite_journal> open_journal(const fs::path& db, sync_mode sync) {
  sqlite_journal_config cfg;
  cfg.path = db.string();
  cfg.sync = sync;
  auto j = sqlite_journal::open(std::move(cfg));
  if (!j)
    throw std::runtime_error{"cannot open journal '" + db.string()
                             + "': " + describe(j.error())};
  return std::move(*j);
}

/// One measurement: events per second, process CPU per event (all threads, so the
/// figure also shows what the machine's other load did to the wall time), and for
/// journal appends the atomic writes per transaction (NaN for raw SQLite).
struct sample {
  double eps = 0;
  double cpu_us = 0;
  double writes_per_txn = std::numeric_limits<double>::quiet_NaN();
};

/// Measures `events` done during `body`; `body` returns the events and the seconds they
/// took (its own timing excludes setup it does not want measured).
template <class F>
sample measure(F body) {
  auto cpu_before = lb::process_cpu_s();
  auto [events, seconds] = body();
  auto cpu = lb::process_cpu_s() - cpu_before;
  if (events == 0 || seconds <= 0)
    throw std::runtime_error{"a measurement completed no events"};
  sample s;
  s.eps = static_cast<double>(events) / seconds;
  s.cpu_us = cpu * 1e6 / static_cast<double>(events);
  return s;
}

/// Closed-loop writers: each appends one event to its own id and issues its next append
/// only after the acknowledgement of the previous one, until the deadline.
class closed_loop_writers {
public:
  struct outcome {
    std::uint64_t events = 0;
    double seconds = 0;
  };

  closed_loop_writers(journal& j, const payload_pool& payloads, std::vector<std::string> ids,
                      issue_mode mode)
    : journal_{j}, payloads_{payloads}, mode_{mode} {
    writers_.reserve(ids.size());
    for (auto& id : ids)
      writers_.push_back(writer{std::move(id), 1});
  }

  /// Runs every writer for `seconds`, waits for the last acknowledgement and returns the
  /// acknowledged events and the time from start to the last acknowledgement. Throws when
  /// a write failed.
  outcome run(double seconds) {
    acked_ = 0;
    active_ = writers_.size();
    deadline_ = std::chrono::steady_clock::now()
                + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(seconds));
    clock_.restart();
    std::thread client;
    if (mode_ == issue_mode::thread)
      client = std::thread{[this] { run_client(); }};
    for (std::size_t i = 0; i < writers_.size(); ++i)
      issue(i);
    {
      std::unique_lock guard{mtx_};
      done_.wait(guard, [this] { return active_ == 0; });
    }
    if (client.joinable())
      client.join();
    if (!first_error_.empty())
      throw std::runtime_error{"journal write failed: " + first_error_};
    return {acked_.load(), finished_after_s_};
  }

private:
  struct writer {
    std::string id;
    sequence_nr next_seq;
  };

  void issue(std::size_t i) {
    auto& w = writers_[i];
    atomic_write aw;
    aw.persistence_id = w.id;
    aw.expected_seq = w.next_seq;
    aw.events.push_back(new_event{event_type, 1, payloads_.at(w.next_seq * 31 + i), {}});
    journal_.write(std::move(aw),
                   [this, i](caf::expected<write_result> r) { on_done(i, std::move(r)); });
  }

  // Runs on the journal's writer thread: must not block (a short lock is fine).
  void on_done(std::size_t i, caf::expected<write_result> r) {
    if (!r) {
      {
        std::lock_guard guard{mtx_};
        if (first_error_.empty())
          first_error_ = "'" + writers_[i].id + "': " + describe(r.error());
      }
      failed_ = true;
      finish();
      return;
    }
    ++writers_[i].next_seq;
    acked_.fetch_add(1, std::memory_order_relaxed);
    if (failed_ || std::chrono::steady_clock::now() >= deadline_) {
      finish();
    } else if (mode_ == issue_mode::callback) {
      issue(i);
    } else {
      bool was_empty = false;
      {
        std::lock_guard guard{mtx_};
        was_empty = ready_.empty();
        ready_.push_back(i);
      }
      if (was_empty)
        ready_cv_.notify_one();
    }
  }

  // The client thread of issue_mode::thread: issues the next write of every writer
  // whose acknowledgement arrived, until no writer is active.
  void run_client() {
    std::vector<std::size_t> batch;
    for (;;) {
      {
        std::unique_lock guard{mtx_};
        ready_cv_.wait(guard, [this] { return !ready_.empty() || active_ == 0; });
        if (ready_.empty())
          return;
        batch.swap(ready_);
      }
      for (auto i : batch)
        issue(i);
      batch.clear();
    }
  }

  void finish() {
    std::lock_guard guard{mtx_};
    if (--active_ == 0) {
      finished_after_s_ = clock_.elapsed_s();
      done_.notify_all();
      ready_cv_.notify_all();
    }
  }

  journal& journal_;
  const payload_pool& payloads_;
  issue_mode mode_;
  std::vector<writer> writers_;
  std::chrono::steady_clock::time_point deadline_;
  lb::stopwatch clock_;
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<bool> failed_{false};
  std::mutex mtx_;
  std::condition_variable done_;
  std::condition_variable ready_cv_;
  std::vector<std::size_t> ready_;  // guarded by mtx_
  std::size_t active_ = 0;          // guarded by mtx_
  double finished_after_s_ = 0;     // guarded by mtx_
  std::string first_error_;         // guarded by mtx_
};

/// (b): `ids.size()` closed-loop writers on the journal at `db` (created when missing).
sample journal_append(const fs::path& db, const options& o, const payload_pool& payloads,
                      std::vector<std::string> ids) {
  auto j = open_journal(db, o.sync);
  auto before = j->statistics();
  closed_loop_writers writers{*j, payloads, std::move(ids), o.issue};
  auto s = measure([&] {
    auto r = writers.run(o.append_seconds);
    return std::pair{r.events, r.seconds};
  });
  auto after = j->statistics();
  j->close();
  auto txns = after.transactions - before.transactions;
  if (txns > 0)
    s.writes_per_txn
      = static_cast<double>(after.writes - before.writes) / static_cast<double>(txns);
  return s;
}

/// Stores `per_id` events for each of `ids` through the journal (one atomic write per id,
/// synchronous=OFF: loading is not measured), with a bounded number of writes in flight.
void bulk_load(const fs::path& db, const payload_pool& payloads,
               const std::vector<std::string>& ids, std::size_t per_id) {
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
    atomic_write aw;
    aw.persistence_id = ids[i];
    aw.expected_seq = 1;
    aw.events.reserve(per_id);
    for (std::size_t k = 0; k < per_id; ++k)
      aw.events.push_back(new_event{event_type, 1, payloads.at(i * per_id + k), {}});
    j->write(std::move(aw), [&, i](caf::expected<write_result> r) {
      std::lock_guard guard{mtx};
      if (!r && first_error.empty())
        first_error = "'" + ids[i] + "': " + describe(r.error());
      --pending;
      cv.notify_all();
    });
  }
  j->flush();
  j->close();
  if (!first_error.empty())
    throw std::runtime_error{"bulk load failed: " + first_error};
  // The load ran with synchronous=OFF; write its pages out now so that the first fsync of
  // a measured run does not pay for them.
  auto fd = ::open(db.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    auto err = errno;
    if (fd >= 0)
      ::close(fd);
    throw std::runtime_error{"cannot fsync '" + db.string() + "': " + std::strerror(err)};
  }
  ::close(fd);
}

/// (c): replays every id from 1 through the journal (opening it is not measured).
sample journal_replay(const fs::path& db, const options& o, const std::vector<std::string>& ids,
                      std::size_t per_id) {
  auto j = open_journal(db, o.sync);
  std::uint64_t bytes = 0;
  auto s = measure([&] {
    std::uint64_t events = 0;
    lb::stopwatch clock;
    for (const auto& id : ids) {
      auto r = j->replay(id, 1, max_sequence_nr, std::numeric_limits<std::uint64_t>::max());
      if (!r)
        throw std::runtime_error{"replay of '" + id + "' failed: " + describe(r.error())};
      if (r->events.size() != per_id || r->highest_seq != per_id)
        throw std::runtime_error{"replay of '" + id + "' returned " +
                                 std::to_string(r->events.size()) + " events, expected "
                                 + std::to_string(per_id)};
      for (const auto& ev : r->events)
        bytes += ev.payload_json.size();
      events += r->events.size();
    }
    return std::pair{events, clock.elapsed_s()};
  });
  j->close();
  if (bytes == 0)
    throw std::runtime_error{"replay returned empty payloads"};
  return s;
}

// --- raw SQLite --------------------------------------------------------------------------


/// Creates the journal's schema in a new database file by opening and closing a journal.
void create_journal_file(const fs::path& db, const options& o) {
  open_journal(db, o.sync)->close();
}

/// (a): one prepared INSERT into the journal's events table, transactions of
/// `o.raw_txn_rows` rows, round-robin over `ids` (streams rows inserted first, untimed),
/// for `o.append_seconds`.
sample raw_append(const fs::path& db_path, const options& o, const payload_pool& payloads,
                  const std::vector<std::string>& ids) {
  raw_db db{db_path, o.sync};
  // Schema v1 of persistence/sqlite_journal.cpp: streams map ids to integer stream ids,
  // events are keyed by position (rowid) with a unique index on (stream_id, seq).
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
        insert.bind_text(3, event_type);
        insert.bind_int(4, 1);
        insert.bind_text(5, payloads.at(seq * 31 + id_index));
        insert.bind_int(6, written_at);
        insert.run();
      }
      commit.run();
      seconds = clock.elapsed_s();
    } while (seconds < o.append_seconds);
    return std::pair{rows, seconds};
  });
}

/// (c): the raw counterpart of `journal_replay`: one prepared SELECT run per id that finds
/// the id's stream and returns the same rows in the same order; every column the journal
/// returns is read (not copied).
sample raw_replay(const fs::path& db_path, const options& o, const std::vector<std::string>& ids,
                  std::size_t per_id) {
  raw_db db{db_path, o.sync};
  raw_stmt select{db, "SELECT seq, type, schema_version, payload, tags, written_at, position"
                      " FROM events WHERE stream_id ="
                      " (SELECT stream_id FROM streams WHERE persistence_id = ?)"
                      " AND seq >= ? ORDER BY seq"};
  std::uint64_t bytes = 0;
  auto s = measure([&] {
    std::uint64_t events = 0;
    lb::stopwatch clock;
    for (const auto& id : ids) {
      select.bind_text(1, id);
      select.bind_int(2, 1);
      std::size_t n = 0;
      int rc;
      while ((rc = sqlite3_step(select.get())) == SQLITE_ROW) {
        ++n;
        auto* s = select.get();
        // Touch every value as a client would: integers, and text through its pointer.
        bytes += static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
        for (int col : {1, 3, 4}) {
          auto* text = sqlite3_column_text(s, col);
          bytes += static_cast<std::uint64_t>(sqlite3_column_bytes(s, col));
          if (text != nullptr)
            bytes += text[0];
        }
        bytes += static_cast<std::uint64_t>(sqlite3_column_int64(s, 2));
        bytes += static_cast<std::uint64_t>(sqlite3_column_int64(s, 5));
        bytes += static_cast<std::uint64_t>(sqlite3_column_int64(s, 6));
      }
      sqlite3_reset(select.get());
      if (rc != SQLITE_DONE)
        db.fail("select events of '" + id + "'");
      if (n != per_id)
        throw std::runtime_error{"raw select of '" + id + "' returned " + std::to_string(n)
                                 + " rows, expected " + std::to_string(per_id)};
      events += n;
    }
    return std::pair{events, clock.elapsed_s()};
  });
  if (bytes == 0)
    throw std::runtime_error{"raw select returned empty rows"};
  return s;
}

// --- the report ------------------------------------------------------------------------

/// The samples of one measurement across runs.
struct series {
  std::string label;
  std::vector<sample> samples;

  double median_eps() const { return median_of(&sample::eps); }
  double median_of(double sample::*field) const {
    std::vector<double> values;
    for (const auto& s : samples)
      if (!std::isnan(s.*field))
        values.push_back(s.*field);
    return values.empty() ? std::numeric_limits<double>::quiet_NaN() : lb::median(values);
  }
};

std::string fixed(double value, int decimals) {
  if (std::isnan(value))
    return "";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

void add_row(lb::result_table& table, const series& s, const series* baseline) {
  std::vector<double> eps;
  for (const auto& x : s.samples)
    eps.push_back(x.eps);
  auto [lo, hi] = std::minmax_element(eps.begin(), eps.end());
  table.add_row({s.label, lb::format_rate(s.median_eps()), lb::format_rate(*lo),
                 lb::format_rate(*hi),
                 baseline ? fixed(s.median_eps() / baseline->median_eps(), 3) : "",
                 fixed(s.median_of(&sample::cpu_us), 2),
                 fixed(s.median_of(&sample::writes_per_txn), 1)});
}

std::string writers_label(std::size_t n) {
  return "journal, " + lb::format_count(n) + (n == 1 ? " writer" : " writers");
}

int run(const options& o) {
  payload_pool payloads{4096};
  lb::scratch_dir scratch{o.dir};
  auto loaded_events = o.replay_ids * o.replay_events_per_id;

  std::cout << "journal bench: synchronous=" << o.sync_name << ", " << o.runs
            << " run(s) per measurement (medians), appends " << o.append_seconds
            << " s each, next write issued from the "
            << (o.issue == issue_mode::callback ? "write callback" : "client thread")
            << ", payload ~" << static_cast<int>(payloads.average_bytes())
            << " bytes, scratch " << scratch.path().string() << (o.quick ? " (quick)" : "")
            << "\n"
            << std::flush;

  // (a) and (b): a fresh database per run and configuration; configurations interleave
  // within a run so that drift over time affects all of them alike.
  auto raw_ids = make_ids("raw-", o.raw_ids);
  series raw_append_s{"raw INSERT, " + lb::format_count(o.raw_txn_rows) + "-row txns", {}};
  std::vector<series> append_s;
  for (auto n : o.writer_counts)
    append_s.push_back({writers_label(n), {}});
  for (std::size_t r = 0; r < o.runs; ++r) {
    {
      auto dir = scratch.fresh("raw-append");
      create_journal_file(dir / "journal.db", o);
      raw_append_s.samples.push_back(raw_append(dir / "journal.db", o, payloads, raw_ids));
      lb::scratch_dir::remove(dir);
    }
    for (std::size_t c = 0; c < o.writer_counts.size(); ++c) {
      auto dir = scratch.fresh("journal-append");
      append_s[c].samples.push_back(
        journal_append(dir / "journal.db", o, payloads, make_ids("w-", o.writer_counts[c])));
      lb::scratch_dir::remove(dir);
    }
    std::cout << "  appends: run " << r + 1 << "/" << o.runs << " done\n" << std::flush;
  }

  // (c) and (d) share one loaded database: recovery first (reads only), then appends.
  auto loaded_dir = scratch.fresh("loaded");
  auto loaded_db = loaded_dir / "journal.db";
  auto loaded_ids = make_ids("id-", o.replay_ids);
  {
    lb::stopwatch clock;
    bulk_load(loaded_db, payloads, loaded_ids, o.replay_events_per_id);
    std::cout << "  loaded " << lb::format_count(loaded_events) << " events ("
              << lb::format_count(o.replay_ids) << " ids x "
              << lb::format_count(o.replay_events_per_id) << ") in " << fixed(clock.elapsed_s(), 1)
              << " s\n"
              << std::flush;
  }
  series raw_replay_s{"raw SELECT per id, " + lb::format_count(loaded_events) + " events", {}};
  series replay_s{"journal replay per id", {}};
  for (std::size_t r = 0; r < o.runs; ++r) {
    raw_replay_s.samples.push_back(
      raw_replay(loaded_db, o, loaded_ids, o.replay_events_per_id));
    replay_s.samples.push_back(
      journal_replay(loaded_db, o, loaded_ids, o.replay_events_per_id));
  }
  std::cout << "  recovery: done\n" << std::flush;

  auto at = " at " + lb::format_count(loaded_events) + "+";
  series raw_at_load_s{"raw INSERT" + at, {}};
  series append_at_load_s{writers_label(o.writers_at_load) + at, {}};
  for (std::size_t r = 0; r < o.runs; ++r) {
    // Fresh ids per run so that runs do not continue each other's streams.
    auto tag = std::to_string(r) + "-";
    raw_at_load_s.samples.push_back(
      raw_append(loaded_db, o, payloads, make_ids("raw" + tag, o.raw_ids)));
    append_at_load_s.samples.push_back(
      journal_append(loaded_db, o, payloads, make_ids("w" + tag, o.writers_at_load)));
  }
  lb::scratch_dir::remove(loaded_dir);
  std::cout << "  appends at " << lb::format_count(loaded_events) << ": done\n\n";

  lb::result_table table{
    {"measurement", "median", "min", "max", "vs raw", "cpu us/event", "writes/txn"}};
  add_row(table, raw_append_s, nullptr);
  for (const auto& s : append_s)
    add_row(table, s, &raw_append_s);
  add_row(table, raw_replay_s, nullptr);
  add_row(table, replay_s, &raw_replay_s);
  add_row(table, raw_at_load_s, nullptr);
  add_row(table, append_at_load_s, &raw_at_load_s);
  table.print(std::cout);
  std::cout << "cpu us/event: process CPU (all threads) per event; when it is far below\n"
               "1e6/median the run waited for the disk or for other processes.\n"
            << "peak RSS " << lb::peak_rss_kib() / 1024 << " MiB\n\n";

  auto eps_of = [&](std::size_t writers) {
    for (std::size_t c = 0; c < o.writer_counts.size(); ++c)
      if (o.writer_counts[c] == writers)
        return append_s[c].median_eps();
    return std::numeric_limits<double>::quiet_NaN();
  };
  lb::json_summary json{"journal"};
  json.add("raw_append_eps", raw_append_s.median_eps(), 0);
  json.add("append_eps_1", eps_of(1), 0);
  json.add("append_eps_100", eps_of(100), 0);
  json.add("append_eps_10000", eps_of(10'000), 0);
  json.add("append_ratio_10000", eps_of(10'000) / raw_append_s.median_eps(), 3);
  json.add("append_ratio_10000_at_1m",
           append_at_load_s.median_eps() / raw_at_load_s.median_eps(), 3);
  json.add("raw_replay_eps", raw_replay_s.median_eps(), 0);
  json.add("replay_eps", replay_s.median_eps(), 0);
  json.add("replay_ratio", replay_s.median_eps() / raw_replay_s.median_eps(), 3);
  std::cout << json.str() << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // What a service's first journal open does (sqlite_journal_config::sqlite_memory_status),
  // done first here so that both sides of each comparison, which use SQLite before the
  // journal is opened (baselines, commit probe), run with it.
  (void) longhaul::persistence::disable_sqlite_memory_status();
  options o;
  try {
    o = parse_options(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "journal_bench: " << e.what() << "\n" << usage_text;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "journal_bench: " << e.what() << "\n";
    return 1;
  }
}
