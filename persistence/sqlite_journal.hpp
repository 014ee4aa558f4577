// The SQLite journal: one database file in WAL mode, one writer thread that batches
// concurrent writes into one transaction (group commit), and pooled read connections.
// Format, invariants and failure modes: persistence/JOURNAL.md.
#pragma once

#include "persistence/journal.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace longhaul::persistence {

/// How hard each COMMIT waits for the disk (JOURNAL.md §Durability).
enum class sync_mode {
  full,    ///< fsync the WAL on every commit: an acknowledged write survives power loss
  normal,  ///< fsync at checkpoints only: survives a process crash, not power loss
  off,     ///< no fsync: survives a process crash, not an OS crash or power loss
};

/// Parses "full", "normal" or "off".
[[nodiscard]] caf::expected<sync_mode> parse_sync_mode(std::string_view text);

/// Opening a SQLite journal.
struct sqlite_journal_config {
  std::string path;                   ///< database file; created if missing (unless read_only)
  sync_mode sync = sync_mode::full;
  bool read_only = false;             ///< no writer lock, no writer thread; writes fail
  std::size_t cache_mb = 64;          ///< SQLite page cache of each read connection
  /// SQLite page cache of the write connection. Small on purpose: its work is at the right
  /// edges of the tables and a few index pages, and SQLite 3.40 scans the whole cache at
  /// many commits (JOURNAL.md §8, The writer's page cache).
  std::size_t writer_cache_mb = 8;
  std::size_t max_batch_writes = 2000;///< group commit: atomic writes per transaction
  /// Group commit: how long the writer lingers for more writes when a batch is not full.
  /// 0 (default) batches whatever queued up during the previous commit.
  std::chrono::microseconds max_batch_delay{0};
  write_limits limits;
  std::size_t keep_snapshots = 0;     ///< keep the newest k snapshots per id (0 = all)
  std::chrono::milliseconds busy_timeout{5000};
  std::size_t stream_cache_entries = 100000;  ///< ids whose highest seq the writer keeps
  std::size_t max_read_connections = 8;
  /// WAL pages after which a commit copies the WAL into the database file (as PRAGMA
  /// wal_autocheckpoint would, done by the writer's WAL hook and timed in statistics();
  /// 0 = never until close). A checkpoint writes each page once however often commits
  /// changed it: 4000 (16 MB) instead of SQLite's 1000 wrote fewer pages and gave 10% more
  /// retail orders/s (JOURNAL.md §8, Checkpoints).
  std::size_t checkpoint_pages = 4000;
  std::string vfs;                    ///< SQLite VFS name; empty = default (tests inject faults)
  /// The writer hands a transaction's WAL frames to `vfs` in a few large writes at its
  /// commit frame instead of two writes per frame (sqlite_wal_buffer.hpp; JOURNAL.md §7).
  bool buffer_wal_writes = true;
  /// The outbox tail (JOURNAL.md §5): the writer keeps up to this many of the newest
  /// committed outbox rows in memory, and `outbox_pending` hands them over without reading
  /// the file back. 0 = off (every call reads the file).
  std::size_t outbox_tail_rows = 10000;
  /// The tail's bound in bytes of message id, destination and payload; the oldest rows
  /// leave it first (and are then read from the file).
  std::size_t outbox_tail_bytes = std::size_t{16} << 20;
  std::function<time_ms()> clock;     ///< write timestamps; default: system clock
  /// Keep SQLite's process-wide memory statistics. Off by default: open() calls
  /// disable_sqlite_memory_status() (see there) when it is the process's first use of
  /// SQLite, so that SQLite's allocations take no global mutex.
  bool sqlite_memory_status = false;
};

/// Turns off SQLite's memory statistics for the whole process (SQLITE_CONFIG_MEMSTATUS 0,
/// which SQLite recommends for speed): otherwise every sqlite3_malloc and sqlite3_free
/// counts its bytes under a global mutex, about 4% of the journal writer's instructions
/// (JOURNAL.md §8). Takes effect only before SQLite's first use in the process, and then
/// returns true; afterwards it changes nothing and returns false. Once off,
/// sqlite3_memory_used(), sqlite3_memory_highwater(), sqlite3_status64() and the soft and
/// hard heap limits no longer work. Like sqlite3_config(), it must not run while another
/// thread uses SQLite. sqlite_journal::open() calls it unless
/// sqlite_journal_config::sqlite_memory_status is set.
bool disable_sqlite_memory_status();

/// The SQLite journal (see file comment). Thread-safe.
class sqlite_journal final : public journal {
public:
  /// Opens or creates the journal. Fails with locked_by_other_process ("journal locked by
  /// process N"), schema_too_new, cannot_open or corrupt; never hangs on a held lock.
  [[nodiscard]] static caf::expected<std::unique_ptr<sqlite_journal>>
  open(sqlite_journal_config cfg);

  /// Drains queued writes (each is acknowledged), stops the writer, closes connections.
  ~sqlite_journal() override;

  void write(atomic_write w, write_callback done) override;
  void submit(std::shared_ptr<write_ticket> t) override;
  [[nodiscard]] caf::expected<replay_result>
  replay(std::string_view id, sequence_nr from, sequence_nr to, std::uint64_t max) override;
  [[nodiscard]] caf::expected<sequence_nr> highest_seq(std::string_view id) override;
  /// One read transaction for the snapshot, the first events and the timers.
  [[nodiscard]] caf::expected<recovery_start>
  load_recovery_start(std::string_view id, std::uint64_t max_events) override;
  [[nodiscard]] caf::error delete_up_to(std::string_view id, sequence_nr n) override;
  [[nodiscard]] caf::expected<std::vector<event_record>>
  read_all(std::uint64_t after_position, std::uint64_t max,
           const std::optional<std::string>& tag) override;
  [[nodiscard]] caf::error save_snapshot(snapshot_record snap) override;
  [[nodiscard]] caf::expected<std::optional<snapshot_record>>
  load_snapshot(std::string_view id, const snapshot_selection& sel) override;
  [[nodiscard]] caf::error delete_snapshots(std::string_view id,
                                            const snapshot_selection& sel) override;
  [[nodiscard]] caf::expected<std::vector<timer_record>>
  timers_due(time_ms until, std::uint64_t max) override;
  [[nodiscard]] caf::expected<std::vector<timer_record>>
  timers_due_after(const timer_position& after, time_ms until, std::uint64_t max) override;
  [[nodiscard]] caf::expected<std::vector<timer_record>>
  timers_of(std::string_view id) override;
  [[nodiscard]] caf::expected<std::vector<outbox_record>>
  outbox_pending(std::uint64_t after_seq, std::uint64_t max) override;
  [[nodiscard]] caf::error outbox_delivered(std::vector<std::uint64_t> seqs) override;
  /// Queues the removal into the next write batch (group commit) and returns at once.
  void outbox_delivered_async(std::vector<std::uint64_t> seqs,
                              std::function<void(caf::error)> done) override;
  [[nodiscard]] caf::error record_dead_letter(dead_letter_record rec) override;
  [[nodiscard]] caf::expected<std::vector<dead_letter_record>>
  dead_letters(std::uint64_t after_seq, std::uint64_t max) override;
  [[nodiscard]] caf::expected<bool> is_processed(std::string_view id,
                                                 std::string_view message_id) override;
  [[nodiscard]] caf::expected<std::optional<processed_message>>
  processed_outcome(std::string_view id, std::string_view message_id) override;
  void flush() override;

  /// Drains and stops the writer; later writes fail with `closed`. Idempotent.
  void close();

  /// Schema version this build writes (PRAGMA user_version).
  static constexpr int schema_version = 3;

  /// Counters for benchmarks and logs.
  struct stats {
    std::uint64_t transactions = 0;
    std::uint64_t writes = 0;
    std::uint64_t max_batch = 0;
    std::uint64_t outbox_reads_in_memory = 0;  ///< outbox_pending calls the tail answered
    std::uint64_t outbox_reads_from_file = 0;  ///< outbox_pending calls that read the file
    std::uint64_t events = 0;           ///< events of committed writes
    /// Writes refused inside a batch (sequence conflict, duplicate message, reused outbox id).
    std::uint64_t refused_writes = 0;
    std::uint64_t failed_writes = 0;    ///< writes whose batch failed (I/O error, ...)
    /// Where the writer thread's time goes (ns): running batches and maintenance (the
    /// rest it waits for work); of that, in COMMIT (writing the WAL, its fsync with
    /// sync_mode::full, and checkpoints); of that, in checkpoints.
    std::uint64_t writer_busy_ns = 0;
    std::uint64_t commit_ns = 0;
    std::uint64_t checkpoints = 0;
    std::uint64_t checkpoint_ns = 0;
  };
  [[nodiscard]] stats statistics() const;

  struct impl;
private:
  explicit sqlite_journal(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace longhaul::persistence
