// Configuration of an embedded longhaul runtime: storage, durability, activation limits,
// threads and logging. Parsed from text (e.g. command-line or env) with clear errors.
#pragma once

#include "actors/clock.hpp"
#include "persistence/sqlite_journal.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

namespace longhaul {

/// Where events are stored.
enum class storage_kind {
  sqlite,  ///< a SQLite file at `database_path` (default)
  memory,  ///< in memory: nothing survives the process (tests, demos)
};

/// How the worker threads share the actors that have messages to handle.
enum class worker_scheduling {
  /// One queue that every worker takes from (default). Each operation is O(1), however
  /// many actors are waiting: a supervisor that wakes 10,000 instances at once, or stop()
  /// with 100,000 live instances, stays cheap. Suits the few cores a service embeds us on.
  sharing,
  /// CAF's work stealing: a queue per worker, idle workers steal. In CAF 0.17 a steal
  /// walks the victim's whole queue (double_ended_queue::take_tail), so bursts that wake
  /// many actors cost O(n^2) (measured: stop() with 100,000 live instances 11-21 s vs
  /// 3.6 s with sharing). For many cores and short queues.
  work_stealing,
};

/// Everything a runtime is built from. Defaults suit a service.
struct runtime_config {
  storage_kind storage = storage_kind::sqlite;
  std::string database_path = "longhaul.db";
  persistence::sync_mode sync = persistence::sync_mode::full;
  std::size_t cache_mb = 64;        ///< SQLite page cache of each read connection
  std::size_t writer_cache_mb = 8;  ///< SQLite page cache of the write connection
  /// Idle time after which an instance leaves memory (0 = never), give or take a quarter
  /// of it (the supervisor's idle check). A finished instance (decision::finish(), an
  /// ended flow) leaves as soon as it is idle.
  std::chrono::milliseconds passivate_after{std::chrono::minutes{2}};
  std::uint64_t snapshot_every = 0;   ///< default for types that do not set their own
  std::size_t max_concurrent_recoveries = 50;
  /// How many passivated ids with a stream the supervisor remembers (about 40 bytes
  /// each; 0 = none). A command for a remembered id recovers the instance first; any
  /// other id's first command is decided as new and stored only if the id has no stream,
  /// so a stored instance it does not remember costs one refused write before recovery.
  std::size_t remembered_streams = 100000;
  /// CAF scheduler threads; 0 = number of cores - 1, at least 2 (the journal's writer
  /// thread gets a core on bigger machines). 1 suits command-heavy loads on 2 cores
  /// (+14% commands/s), not activation-heavy ones. Actors must not block a worker (use
  /// request(), not ask(), inside actors), least of all with one worker.
  std::size_t worker_threads = 0;
  worker_scheduling scheduling = worker_scheduling::sharing;  ///< see worker_scheduling
  std::size_t reader_threads = 2;     ///< detached journal readers (recovery, snapshots)
  /// Linux: CAF's threads (workers, detached actors, the clock) run as SCHED_BATCH, so
  /// that waking an actor never preempts the journal's writer thread, the one serial
  /// stage every command waits for (+10% retail orders/s on 2 cores). Off: they keep the
  /// process's policy. A process under a real-time policy is never changed.
  bool yield_to_writer = true;
  /// Keep SQLite's process-wide memory statistics (sqlite3_memory_used() and the heap
  /// limits). Off by default: starting a runtime on SQLite storage turns them off when it
  /// is the process's first use of SQLite, which saves SQLite's allocations a global mutex
  /// (persistence::disable_sqlite_memory_status).
  bool sqlite_memory_status = false;
  std::string log_level = "info";     ///< trace, debug, info, warn, error, off
  std::chrono::milliseconds ask_timeout{30000};        ///< default for ask()
  std::chrono::milliseconds stop_timeout{10000};       ///< bound on draining in stop()
  std::size_t max_id_bytes = 255;
  /// Deterministic mode for tests: CAF's test scheduler, in-memory storage or SQLite,
  /// time advanced by the test (runtime/testkit.hpp). Not for production.
  bool deterministic = false;
  /// Clock for timestamps and timers: real (default), virtual (default in deterministic
  /// mode; runtime::advance_time moves it) or accelerated (demos).
  std::shared_ptr<actors::clock> clock;
  std::size_t timer_window = 10000;   ///< timers the scheduler keeps in memory
  /// Tests: use this journal instead of opening one (`storage`, `database_path`, `sync`
  /// and `cache_mb` are then ignored), e.g. a fault-injecting decorator, or an in-memory
  /// journal kept across runtimes. stop() flushes it but does not close it.
  std::shared_ptr<persistence::journal> journal_override;
};

/// Sets one option from text: `key` is the field name (e.g. "sync", "passivate_after_ms",
/// "database_path", "clock" = real | virtual | accelerated:<factor>); fails with
/// invalid_argument naming the key and the expected form.
[[nodiscard]] caf::error set_option(runtime_config& cfg, std::string_view key,
                                    std::string_view value);

}  // namespace longhaul
