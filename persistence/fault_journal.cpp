// The fault-injecting journal decorator (see fault_journal.hpp): scripted faults are
// taken under the lock; the inner journal and write callbacks always run outside it.
#include "persistence/fault_journal.hpp"

#include <stdexcept>

namespace longhaul::persistence {

namespace {

bool is_failure_code(persistence_errc code) {
  return static_cast<std::uint8_t>(code) >= static_cast<std::uint8_t>(persistence_errc::io_error);
}

bool is_rejection_code(persistence_errc code) {
  return code != persistence_errc::ok && !is_failure_code(code);
}

caf::error bad_code(std::string_view what, persistence_errc code, std::string_view expected) {
  return make_persistence_error(persistence_errc::invalid_argument,
                                std::string{what} + ": '" + std::string{to_string(code)}
                                  + "' is not " + std::string{expected});
}

}  // namespace

fault_journal::fault_journal(std::shared_ptr<journal> inner) : inner_(std::move(inner)) {
  if (!inner_)
    throw std::invalid_argument("fault_journal: the inner journal must not be null");
}

fault_journal::~fault_journal() {
  // Every write callback runs exactly once, even if the test never released them.
  release_acknowledgements();
}

caf::error fault_journal::script_writes(std::size_t n, write_fault fault) {
  std::lock_guard guard{mtx_};
  for (std::size_t i = 0; i < n; ++i)
    write_faults_.push_back(fault);
  return {};
}

caf::error fault_journal::fail_next_writes(std::size_t n, persistence_errc code) {
  if (!is_failure_code(code))
    return bad_code("fail_next_writes", code, "a failure code (io_error or above)");
  return script_writes(n, {write_fault_kind::fail_unstored, code});
}

caf::error fault_journal::fail_next_writes_after_storing(std::size_t n, persistence_errc code) {
  if (!is_failure_code(code))
    return bad_code("fail_next_writes_after_storing", code, "a failure code (io_error or above)");
  return script_writes(n, {write_fault_kind::fail_stored, code});
}

caf::error fault_journal::reject_next_writes(std::size_t n, persistence_errc code) {
  if (!is_rejection_code(code))
    return bad_code("reject_next_writes", code, "a rejection code (below io_error)");
  return script_writes(n, {write_fault_kind::reject, code});
}

caf::error fault_journal::fail_next_reads(std::size_t n, persistence_errc code) {
  if (code == persistence_errc::ok)
    return bad_code("fail_next_reads", code, "an error code");
  std::lock_guard guard{mtx_};
  for (std::size_t i = 0; i < n; ++i)
    read_faults_.push_back(code);
  return {};
}

void fault_journal::fail_next_outbox_removals(std::size_t n) {
  std::lock_guard guard{mtx_};
  outbox_removal_faults_ += n;
}

void fault_journal::hold_acknowledgements() {
  std::lock_guard guard{mtx_};
  holding_ = true;
}

std::size_t fault_journal::release_acknowledgements() {
  std::size_t delivered = 0;
  // Keep holding while delivering, so an acknowledgement arriving meanwhile (SQLite's
  // writer thread) queues behind the held ones instead of overtaking them.
  for (;;) {
    std::vector<held_ack> batch;
    {
      std::lock_guard guard{mtx_};
      if (held_.empty()) {
        holding_ = false;
        return delivered;
      }
      batch.swap(held_);
    }
    for (auto& ack : batch) {
      ack.done(std::move(ack.result));
      ++delivered;
    }
  }
}

std::size_t fault_journal::held_acknowledgements() const {
  std::lock_guard guard{mtx_};
  return held_.size();
}

std::size_t fault_journal::writes_seen() const {
  std::lock_guard guard{mtx_};
  return writes_seen_;
}

std::size_t fault_journal::pending_faults() const {
  std::lock_guard guard{mtx_};
  return write_faults_.size() + read_faults_.size() + outbox_removal_faults_;
}

void fault_journal::acknowledge(write_callback done, caf::expected<write_result> result) {
  {
    std::lock_guard guard{mtx_};
    if (holding_) {
      held_.push_back({std::move(done), std::move(result)});
      return;
    }
  }
  done(std::move(result));
}

void fault_journal::write(atomic_write w, write_callback done) {
  std::optional<write_fault> fault;
  {
    std::lock_guard guard{mtx_};
    ++writes_seen_;
    if (!write_faults_.empty()) {
      fault = write_faults_.front();
      write_faults_.pop_front();
    }
  }
  if (!fault) {
    inner_->write(std::move(w), [this, done = std::move(done)](caf::expected<write_result> r) mutable {
      acknowledge(std::move(done), std::move(r));
    });
    return;
  }
  auto detail = "injected " + std::string{to_string(fault->code)} + " for the write of '"
                + w.persistence_id + "' at sequence " + std::to_string(w.expected_seq);
  switch (fault->kind) {
    case write_fault_kind::fail_unstored:
    case write_fault_kind::reject:
      acknowledge(std::move(done), make_persistence_error(fault->code, detail + " (not stored)"));
      return;
    case write_fault_kind::fail_stored:
      // Stored for real; only the acknowledgement says otherwise (a lost ack).
      inner_->write(std::move(w), [this, code = fault->code, detail,
                                   done = std::move(done)](caf::expected<write_result> r) mutable {
        if (r)
          acknowledge(std::move(done),
                      make_persistence_error(code, detail + " (stored nevertheless)"));
        else
          acknowledge(std::move(done), std::move(r));
      });
      return;
  }
}

caf::error fault_journal::take_read_fault(std::string_view what, std::string_view id) {
  std::lock_guard guard{mtx_};
  if (read_faults_.empty())
    return {};
  auto code = read_faults_.front();
  read_faults_.pop_front();
  return make_persistence_error(code, "injected " + std::string{to_string(code)} + " in "
                                        + std::string{what} + " of '" + std::string{id} + "'");
}

caf::expected<replay_result> fault_journal::replay(std::string_view id, sequence_nr from,
                                                   sequence_nr to, std::uint64_t max) {
  if (auto err = take_read_fault("replay", id))
    return err;
  return inner_->replay(id, from, to, max);
}

caf::expected<sequence_nr> fault_journal::highest_seq(std::string_view id) {
  return inner_->highest_seq(id);
}

caf::error fault_journal::delete_up_to(std::string_view id, sequence_nr n) {
  return inner_->delete_up_to(id, n);
}

caf::expected<std::vector<event_record>>
fault_journal::read_all(std::uint64_t after_position, std::uint64_t max,
                        const std::optional<std::string>& tag) {
  return inner_->read_all(after_position, max, tag);
}

caf::error fault_journal::save_snapshot(snapshot_record snap) {
  return inner_->save_snapshot(std::move(snap));
}

caf::expected<std::optional<snapshot_record>>
fault_journal::load_snapshot(std::string_view id, const snapshot_selection& sel) {
  if (auto err = take_read_fault("load_snapshot", id))
    return err;
  return inner_->load_snapshot(id, sel);
}

caf::error fault_journal::delete_snapshots(std::string_view id, const snapshot_selection& sel) {
  return inner_->delete_snapshots(id, sel);
}

caf::expected<std::vector<timer_record>> fault_journal::timers_due(time_ms until,
                                                                   std::uint64_t max) {
  return inner_->timers_due(until, max);
}

caf::expected<std::vector<timer_record>> fault_journal::timers_due_after(
  const timer_position& after, time_ms until, std::uint64_t max) {
  return inner_->timers_due_after(after, until, max);
}

caf::expected<std::vector<timer_record>> fault_journal::timers_of(std::string_view id) {
  return inner_->timers_of(id);
}

caf::expected<std::vector<outbox_record>> fault_journal::outbox_pending(std::uint64_t after_seq,
                                                                        std::uint64_t max) {
  return inner_->outbox_pending(after_seq, max);
}

caf::error fault_journal::outbox_delivered(std::vector<std::uint64_t> seqs) {
  {
    std::lock_guard guard{mtx_};
    if (outbox_removal_faults_ > 0) {
      --outbox_removal_faults_;
      return make_persistence_error(persistence_errc::io_error,
                                    "injected io_error removing " + std::to_string(seqs.size())
                                      + " delivered outbox messages (nothing removed)");
    }
  }
  return inner_->outbox_delivered(std::move(seqs));
}

caf::error fault_journal::record_dead_letter(dead_letter_record rec) {
  return inner_->record_dead_letter(std::move(rec));
}

caf::expected<std::vector<dead_letter_record>>
fault_journal::dead_letters(std::uint64_t after_seq, std::uint64_t max) {
  return inner_->dead_letters(after_seq, max);
}

caf::expected<bool> fault_journal::is_processed(std::string_view id,
                                                std::string_view message_id) {
  return inner_->is_processed(id, message_id);
}

caf::expected<std::optional<processed_message>>
fault_journal::processed_outcome(std::string_view id, std::string_view message_id) {
  if (auto err = take_read_fault("processed_outcome", id))
    return err;
  return inner_->processed_outcome(id, message_id);
}

void fault_journal::flush() {
  release_acknowledgements();
  inner_->flush();
}

}  // namespace longhaul::persistence
