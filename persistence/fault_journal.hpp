// A fault-injecting journal decorator for tests: wraps any journal and, on command, makes
// the next writes fail or be rejected, fails recovery reads, or holds acknowledgements.
// Flow: runtime -> fault_journal (inject or pass on) -> inner journal -> (held) ack.
#pragma once

#include "persistence/journal.hpp"

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace longhaul::persistence {

/// Decorator that passes every call to an inner journal unless a fault was scripted.
/// Faults are consumed in the order they were scripted, one per `write` call (writes) or
/// per `replay`/`load_snapshot`/`processed_outcome` call (reads). Thread-safe; callbacks
/// and the inner journal are never called while the decorator's lock is held.
class fault_journal final : public journal {
public:
  /// Wraps `inner` (shared: tests keep inspecting it). Throws std::invalid_argument if
  /// `inner` is null (a programming error, not a runtime condition).
  explicit fault_journal(std::shared_ptr<journal> inner);

  /// Delivers acknowledgements still held (every write callback runs exactly once).
  ~fault_journal() override;

  /// The next `n` writes are not stored and are acknowledged with `code` (a failed
  /// outcome, e.g. io_error). Fails with invalid_argument if `code` is not a failure
  /// code (`is_rejection` true, or ok).
  [[nodiscard]] caf::error fail_next_writes(std::size_t n,
                                            persistence_errc code = persistence_errc::io_error);

  /// The next `n` writes ARE stored by the inner journal, yet acknowledged with `code`:
  /// a commit whose acknowledgement was lost. Same precondition on `code` as above.
  [[nodiscard]] caf::error
  fail_next_writes_after_storing(std::size_t n, persistence_errc code = persistence_errc::io_error);

  /// The next `n` writes are not stored and are acknowledged with the rejection `code`
  /// (e.g. sequence_conflict). Fails with invalid_argument if `code` is not a rejection.
  [[nodiscard]] caf::error
  reject_next_writes(std::size_t n, persistence_errc code = persistence_errc::sequence_conflict);

  /// The next `n` calls of `replay`, `load_snapshot` or `processed_outcome` fail with
  /// `code` (any non-ok code).
  [[nodiscard]] caf::error fail_next_reads(std::size_t n,
                                           persistence_errc code = persistence_errc::io_error);

  /// The next `n` calls of `outbox_delivered` fail with io_error and remove nothing.
  void fail_next_outbox_removals(std::size_t n);

  /// From now on, acknowledgements (of stored, failed or rejected writes) are kept
  /// instead of delivered: writes still reach the inner journal and are stored, but stay
  /// "in flight" for their callers (a slow fsync) until release_acknowledgements().
  void hold_acknowledgements();

  /// Delivers the held acknowledgements in write order on the calling thread and stops
  /// holding. Returns how many were delivered.
  std::size_t release_acknowledgements();

  /// Number of acknowledgements currently held.
  [[nodiscard]] std::size_t held_acknowledgements() const;

  /// Number of `write` calls seen so far (faulty or not).
  [[nodiscard]] std::size_t writes_seen() const;

  /// Scripted faults not consumed yet (writes + reads + outbox removals).
  [[nodiscard]] std::size_t pending_faults() const;

  /// The wrapped journal.
  [[nodiscard]] journal& inner() noexcept { return *inner_; }

  void write(atomic_write w, write_callback done) override;
  [[nodiscard]] caf::expected<replay_result>
  replay(std::string_view id, sequence_nr from, sequence_nr to, std::uint64_t max) override;
  [[nodiscard]] caf::expected<sequence_nr> highest_seq(std::string_view id) override;
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
  [[nodiscard]] caf::error record_dead_letter(dead_letter_record rec) override;
  [[nodiscard]] caf::expected<std::vector<dead_letter_record>>
  dead_letters(std::uint64_t after_seq, std::uint64_t max) override;
  [[nodiscard]] caf::expected<bool> is_processed(std::string_view id,
                                                 std::string_view message_id) override;
  [[nodiscard]] caf::expected<std::optional<processed_message>>
  processed_outcome(std::string_view id, std::string_view message_id) override;

  /// Delivers held acknowledgements first (a flush promises acknowledged writes, and
  /// held ones would never be), then flushes the inner journal.
  void flush() override;

private:
  enum class write_fault_kind { fail_unstored, fail_stored, reject };
  struct write_fault {
    write_fault_kind kind;
    persistence_errc code;
  };
  struct held_ack {
    write_callback done;
    caf::expected<write_result> result;
  };

  /// Delivers `result` to `done` now, or keeps it while holding.
  void acknowledge(write_callback done, caf::expected<write_result> result);
  caf::error script_writes(std::size_t n, write_fault fault);
  [[nodiscard]] caf::error take_read_fault(std::string_view what, std::string_view id);

  std::shared_ptr<journal> inner_;
  mutable std::mutex mtx_;
  std::deque<write_fault> write_faults_;
  std::deque<persistence_errc> read_faults_;
  std::size_t outbox_removal_faults_ = 0;
  bool holding_ = false;
  std::vector<held_ack> held_;
  std::size_t writes_seen_ = 0;
};

}  // namespace longhaul::persistence
