// A journal decorator base: passes every call to an inner journal. A decorator (a test's
// recorder, a kill switch, a bench's timing wrapper) derives from it and overrides only
// the calls it changes, so a new journal method is forwarded in one place.
#pragma once

#include "persistence/journal.hpp"

#include <memory>
#include <utility>

namespace longhaul::persistence {

/// Forwards every journal call to `inner`. `Inner` may be a concrete journal type
/// (e.g. sqlite_journal) when the decorator needs its own calls (write_and_wait).
/// Thread-safe as far as `Inner` is.
template <class Inner = journal>
class forwarding_journal : public journal {
public:
  explicit forwarding_journal(std::shared_ptr<Inner> inner) : inner_(std::move(inner)) {}

  void write(atomic_write w, write_callback done) override {
    inner_->write(std::move(w), std::move(done));
  }
  caf::expected<replay_result> replay(std::string_view id, sequence_nr from, sequence_nr to,
                                      std::uint64_t max) override {
    return inner_->replay(id, from, to, max);
  }
  caf::expected<sequence_nr> highest_seq(std::string_view id) override {
    return inner_->highest_seq(id);
  }
  caf::error delete_up_to(std::string_view id, sequence_nr n) override {
    return inner_->delete_up_to(id, n);
  }
  caf::expected<std::vector<event_record>>
  read_all(std::uint64_t after, std::uint64_t max, const std::optional<std::string>& tag) override {
    return inner_->read_all(after, max, tag);
  }
  caf::error save_snapshot(snapshot_record snap) override {
    return inner_->save_snapshot(std::move(snap));
  }
  caf::expected<std::optional<snapshot_record>>
  load_snapshot(std::string_view id, const snapshot_selection& sel) override {
    return inner_->load_snapshot(id, sel);
  }
  caf::expected<recovery_start> load_recovery_start(std::string_view id,
                                                    std::uint64_t max_events) override {
    return inner_->load_recovery_start(id, max_events);
  }
  caf::error delete_snapshots(std::string_view id, const snapshot_selection& sel) override {
    return inner_->delete_snapshots(id, sel);
  }
  caf::expected<std::vector<timer_record>> timers_due(time_ms until,
                                                      std::uint64_t max) override {
    return inner_->timers_due(until, max);
  }
  caf::expected<std::vector<timer_record>> timers_due_after(const timer_position& after,
                                                            time_ms until,
                                                            std::uint64_t max) override {
    return inner_->timers_due_after(after, until, max);
  }
  caf::expected<std::vector<timer_record>> timers_of(std::string_view id) override {
    return inner_->timers_of(id);
  }
  caf::expected<std::vector<outbox_record>> outbox_pending(std::uint64_t after,
                                                           std::uint64_t max) override {
    return inner_->outbox_pending(after, max);
  }
  caf::error outbox_delivered(std::vector<std::uint64_t> seqs) override {
    return inner_->outbox_delivered(std::move(seqs));
  }
  void outbox_delivered_async(std::vector<std::uint64_t> seqs,
                              std::function<void(caf::error)> done) override {
    inner_->outbox_delivered_async(std::move(seqs), std::move(done));
  }
  caf::error record_dead_letter(dead_letter_record rec) override {
    return inner_->record_dead_letter(std::move(rec));
  }
  caf::expected<std::vector<dead_letter_record>> dead_letters(std::uint64_t after,
                                                              std::uint64_t max) override {
    return inner_->dead_letters(after, max);
  }
  caf::expected<bool> is_processed(std::string_view id, std::string_view message_id) override {
    return inner_->is_processed(id, message_id);
  }
  caf::expected<std::optional<processed_message>>
  processed_outcome(std::string_view id, std::string_view message_id) override {
    return inner_->processed_outcome(id, message_id);
  }
  void flush() override { inner_->flush(); }

protected:
  /// The decorated journal.
  [[nodiscard]] Inner& inner() const noexcept { return *inner_; }

private:
  std::shared_ptr<Inner> inner_;
};

}  // namespace longhaul::persistence
