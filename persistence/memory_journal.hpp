// The in-memory journal: the same promises as the SQLite journal (it passes the same
// contract suite), nothing survives the process. For unit tests and the testkit.
#pragma once

#include "persistence/journal.hpp"

#include <memory>

namespace longhaul::persistence {

/// Configuration of the in-memory journal.
struct memory_journal_config {
  write_limits limits;
  std::size_t keep_snapshots = 0;   ///< keep the newest k snapshots per id (0 = all)
  std::function<time_ms()> clock;   ///< write timestamps; default: system clock
};

/// In-memory journal. Thread-safe; `write` completes synchronously on the caller's thread.
class memory_journal final : public journal {
public:
  explicit memory_journal(memory_journal_config cfg = {});
  ~memory_journal() override;

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
  void flush() override;

  struct state;
private:
  std::unique_ptr<state> state_;
};

}  // namespace longhaul::persistence
