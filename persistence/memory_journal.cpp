// The in-memory journal (see memory_journal.hpp): every promise of journal.hpp kept in
// ordered maps behind one mutex. Flow: caller -> write (validate, check, store) -> callback.
#include "persistence/memory_journal.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <utility>

namespace longhaul::persistence {

namespace {

time_ms system_clock_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

caf::error check_id(std::string_view id, const write_limits& limits) {
  if (id.empty())
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "persistence id must not be empty");
  if (id.size() > limits.max_id_bytes)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "persistence id is " + std::to_string(id.size())
                                    + " bytes, limit " + std::to_string(limits.max_id_bytes));
  return {};
}

// A timer's place in the due order of `timers_due`: (due_ms, persistence id, name).
using due_key = std::tuple<time_ms, std::string, std::string>;

// Everything stored for one persistence id. Events live in `state::events` by global
// position; the stream maps its sequence numbers to those positions.
struct stream {
  sequence_nr highest = 0;                      // never decreases (delete_up_to keeps it)
  std::map<sequence_nr, std::uint64_t> events;  // seq -> global position
  std::map<std::string, time_ms, std::less<>> timers;  // name -> due_ms
  std::map<sequence_nr, snapshot_record> snapshots;
  std::map<std::string, processed_message, std::less<>> processed;  // by message id
};

} // namespace

struct memory_journal::state {
  explicit state(memory_journal_config c) : cfg(std::move(c)) {
    if (!cfg.clock)
      cfg.clock = system_clock_ms;
  }

  memory_journal_config cfg;

  std::mutex mtx;
  std::map<std::string, stream, std::less<>> streams;
  std::map<std::uint64_t, event_record> events;  // global position -> event
  std::uint64_t last_position = 0;
  std::map<due_key, std::string> timers_by_due;  // -> payload_json
  std::map<std::uint64_t, outbox_record> outbox;
  std::set<std::string, std::less<>> pending_message_ids;  // message ids in `outbox`
  std::uint64_t last_outbox_seq = 0;
  std::vector<dead_letter_record> dead_letters;
  /// (message id, destination, reason) of every dead letter: an identical one is stored once.
  std::set<std::tuple<std::string, std::string, std::string>> dead_letter_keys;

  // flush() waits for writes that began before it; writes complete (callback included)
  // on their callers' threads, so track them by ticket.
  std::mutex flight_mtx;
  std::condition_variable flight_cv;
  std::uint64_t next_ticket = 0;
  std::set<std::uint64_t> in_flight;

  stream* find(std::string_view id) {
    auto i = streams.find(id);
    return i == streams.end() ? nullptr : &i->second;
  }

  // Checks and stores `w` under `mtx`; every check precedes the first change so a
  // rejected write leaves nothing behind (all-or-nothing).
  caf::expected<write_result> store(atomic_write& w) {
    std::lock_guard<std::mutex> guard{mtx};
    auto* existing = find(w.persistence_id);
    sequence_nr highest = existing ? existing->highest : 0;
    if (w.new_stream && existing)
      return make_persistence_error(persistence_errc::sequence_conflict,
                                    "write for '" + w.persistence_id
                                      + "' was for a new stream, but it has one (highest "
                                      + std::to_string(highest) + ")");
    if (w.expected_seq != highest + 1)
      return make_persistence_error(persistence_errc::sequence_conflict,
                                    "write for '" + w.persistence_id + "' expected "
                                      + std::to_string(w.expected_seq) + ", highest "
                                      + std::to_string(highest) + " (next is "
                                      + std::to_string(highest + 1) + ")");
    if (w.processed_message_id && existing
        && existing->processed.count(*w.processed_message_id) > 0)
      return make_persistence_error(persistence_errc::duplicate_message,
                                    "message '" + *w.processed_message_id
                                      + "' was already processed by '" + w.persistence_id
                                      + "'");
    // JOURNAL.md I13: a message id is unique among pending outbox messages.
    for (std::size_t i = 0; i < w.outbox.size(); ++i) {
      const auto& id = w.outbox[i].message_id;
      bool repeated = false;
      for (std::size_t k = 0; k < i && !repeated; ++k)
        repeated = w.outbox[k].message_id == id;
      if (repeated || pending_message_ids.count(id) > 0)
        return make_persistence_error(persistence_errc::invalid_argument,
                                      "outbox message id '" + id + "' of '" + w.persistence_id
                                        + "' is already pending");
    }
    auto now = cfg.clock();
    auto& s = existing ? *existing : streams[w.persistence_id];
    write_result result;
    result.written_at_ms = now;
    for (auto& ev : w.events) {
      auto seq = ++s.highest;
      auto pos = ++last_position;
      s.events.emplace(seq, pos);
      events.emplace(pos, event_record{w.persistence_id, seq, std::move(ev.type),
                                       ev.schema_version, std::move(ev.payload_json),
                                       std::move(ev.tags), now, pos});
      result.last_position = pos;
    }
    result.highest_seq = s.highest;
    if (w.cancel_all_timers) {
      std::vector<std::string> names;
      for (const auto& [name, due] : s.timers)
        names.push_back(name);
      for (const auto& name : names)
        erase_timer(s, w.persistence_id, name);
    }
    for (const auto& c : w.timers_to_cancel)
      erase_timer(s, w.persistence_id, c.name);
    for (auto& t : w.timers_to_set) {
      erase_timer(s, w.persistence_id, t.name);
      s.timers.emplace(t.name, t.due_ms);
      timers_by_due.emplace(due_key{t.due_ms, w.persistence_id, std::move(t.name)},
                            std::move(t.payload_json));
    }
    for (auto& m : w.outbox) {
      auto seq = ++last_outbox_seq;
      pending_message_ids.insert(m.message_id);
      outbox.emplace(seq, outbox_record{seq, std::move(m.message_id), w.persistence_id,
                                        std::move(m.destination), std::move(m.payload_json),
                                        now});
    }
    if (w.processed_message_id) {
      const auto& id = *w.processed_message_id;
      s.processed.emplace(id, processed_message{id, std::move(w.processed_rejection), now});
    }
    return result;
  }

  void erase_timer(stream& s, const std::string& id, std::string_view name) {
    auto i = s.timers.find(name);
    if (i == s.timers.end())
      return;
    timers_by_due.erase(due_key{i->second, id, i->first});
    s.timers.erase(i);
  }

  static bool selected(const snapshot_record& snap, const snapshot_selection& sel) {
    return snap.seq >= sel.min_seq && snap.seq <= sel.max_seq
           && snap.saved_at_ms <= sel.max_saved_at_ms;
  }
};

memory_journal::memory_journal(memory_journal_config cfg)
  : state_(std::make_unique<state>(std::move(cfg))) {
  // nop
}

memory_journal::~memory_journal() = default;

void memory_journal::write(atomic_write w, write_callback done) {
  std::uint64_t ticket;
  {
    std::lock_guard<std::mutex> guard{state_->flight_mtx};
    ticket = state_->next_ticket++;
    state_->in_flight.insert(ticket);
  }
  auto outcome = [&]() -> caf::expected<write_result> {
    if (auto err = validate_write(w, state_->cfg.limits))
      return err;
    return state_->store(w);
  }();
  // The callback runs after `mtx` is released (store returned), on this thread.
  if (done)
    done(std::move(outcome));
  {
    std::lock_guard<std::mutex> guard{state_->flight_mtx};
    state_->in_flight.erase(ticket);
  }
  state_->flight_cv.notify_all();
}

caf::expected<replay_result> memory_journal::replay(std::string_view id, sequence_nr from,
                                                    sequence_nr to, std::uint64_t max) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  replay_result result;
  auto* s = state_->find(id);
  if (!s)
    return result;
  result.highest_seq = s->highest;
  if (from > to)
    return result;
  for (auto i = s->events.lower_bound(from);
       i != s->events.end() && i->first <= to && result.events.size() < max; ++i)
    result.events.push_back(state_->events.at(i->second));
  return result;
}

caf::expected<sequence_nr> memory_journal::highest_seq(std::string_view id) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(id);
  return s ? s->highest : sequence_nr{0};
}

caf::error memory_journal::delete_up_to(std::string_view id, sequence_nr n) {
  if (auto err = check_id(id, state_->cfg.limits))
    return err;
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(id);
  if (!s)
    return {};
  // Only events go; `highest` stays so the next write still continues at highest + 1.
  auto end = s->events.upper_bound(n);
  for (auto i = s->events.begin(); i != end; ++i)
    state_->events.erase(i->second);
  s->events.erase(s->events.begin(), end);
  return {};
}

caf::expected<std::vector<event_record>>
memory_journal::read_all(std::uint64_t after_position, std::uint64_t max,
                         const std::optional<std::string>& tag) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  std::vector<event_record> result;
  for (auto i = state_->events.upper_bound(after_position);
       i != state_->events.end() && result.size() < max; ++i) {
    const auto& tags = i->second.tags;
    if (tag && std::find(tags.begin(), tags.end(), *tag) == tags.end())
      continue;
    result.push_back(i->second);
  }
  return result;
}

caf::error memory_journal::save_snapshot(snapshot_record snap) {
  const auto& limits = state_->cfg.limits;
  if (auto err = check_id(snap.persistence_id, limits))
    return err;
  auto what = "snapshot of '" + snap.persistence_id + "' at sequence " + std::to_string(snap.seq);
  if (snap.seq == 0)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  what + " (a snapshot follows an event, sequence >= 1)");
  if (snap.state_json.size() > limits.max_payload_bytes)
    return make_persistence_error(persistence_errc::payload_too_large,
                                  what + " is " + std::to_string(snap.state_json.size())
                                    + " bytes, limit "
                                    + std::to_string(limits.max_payload_bytes));
  if (!is_valid_json(snap.state_json))
    return make_persistence_error(persistence_errc::invalid_payload,
                                  what + " is not valid JSON");
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(snap.persistence_id);
  auto highest = s ? s->highest : sequence_nr{0};
  // A snapshot describes the state after an event that was stored; one beyond the
  // highest would let recovery skip events that never existed.
  if (snap.seq > highest)
    return make_persistence_error(persistence_errc::invalid_argument,
                                  what + " but the highest stored is "
                                    + std::to_string(highest));
  snap.saved_at_ms = state_->cfg.clock();
  auto& snaps = s->snapshots;
  auto seq = snap.seq;
  snaps.insert_or_assign(seq, std::move(snap));
  if (auto keep = state_->cfg.keep_snapshots; keep > 0)
    while (snaps.size() > keep)
      snaps.erase(snaps.begin());
  return {};
}

caf::expected<std::optional<snapshot_record>>
memory_journal::load_snapshot(std::string_view id, const snapshot_selection& sel) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(id);
  if (!s)
    return std::optional<snapshot_record>{};
  for (auto i = s->snapshots.rbegin(); i != s->snapshots.rend(); ++i)
    if (state::selected(i->second, sel))
      return std::optional<snapshot_record>{i->second};
  return std::optional<snapshot_record>{};
}

caf::error memory_journal::delete_snapshots(std::string_view id,
                                            const snapshot_selection& sel) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(id);
  if (!s)
    return {};
  for (auto i = s->snapshots.begin(); i != s->snapshots.end();) {
    if (state::selected(i->second, sel))
      i = s->snapshots.erase(i);
    else
      ++i;
  }
  return {};
}

namespace {

/// Timers in due order from `from`, with due_ms <= until, at most `max`.
std::vector<timer_record> due_from(const std::map<due_key, std::string>& by_due,
                                   std::map<due_key, std::string>::const_iterator from,
                                   time_ms until, std::uint64_t max) {
  std::vector<timer_record> result;
  for (auto i = from; i != by_due.end() && std::get<0>(i->first) <= until && result.size() < max;
       ++i) {
    const auto& [due, id, name] = i->first;
    result.push_back(timer_record{id, name, due, i->second});
  }
  return result;
}

}  // namespace

caf::expected<std::vector<timer_record>> memory_journal::timers_due(time_ms until,
                                                                    std::uint64_t max) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  const auto& by_due = state_->timers_by_due;
  return due_from(by_due, by_due.begin(), until, max);
}

caf::expected<std::vector<timer_record>> memory_journal::timers_due_after(
  const timer_position& after, time_ms until, std::uint64_t max) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  const auto& by_due = state_->timers_by_due;
  auto from = by_due.upper_bound(due_key{after.due_ms, after.persistence_id, after.name});
  return due_from(by_due, from, until, max);
}

caf::expected<std::vector<timer_record>> memory_journal::timers_of(std::string_view id) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  std::vector<timer_record> result;
  auto* s = state_->find(id);
  if (!s)
    return result;
  std::string key{id};
  for (const auto& [name, due] : s->timers)
    result.push_back(
      timer_record{key, name, due, state_->timers_by_due.at(due_key{due, key, name})});
  return result;
}

caf::expected<std::vector<outbox_record>>
memory_journal::outbox_pending(std::uint64_t after_seq, std::uint64_t max) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  std::vector<outbox_record> result;
  for (auto i = state_->outbox.upper_bound(after_seq);
       i != state_->outbox.end() && result.size() < max; ++i)
    result.push_back(i->second);
  return result;
}

caf::error memory_journal::outbox_delivered(std::vector<std::uint64_t> seqs) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  for (auto seq : seqs) {
    auto i = state_->outbox.find(seq);
    if (i == state_->outbox.end())
      continue;
    state_->pending_message_ids.erase(i->second.message_id);
    state_->outbox.erase(i);
  }
  return {};
}

caf::expected<bool> memory_journal::is_processed(std::string_view id,
                                                 std::string_view message_id) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(id);
  return s != nullptr && s->processed.count(message_id) > 0;
}

caf::expected<std::optional<processed_message>>
memory_journal::processed_outcome(std::string_view id, std::string_view message_id) {
  std::lock_guard<std::mutex> guard{state_->mtx};
  auto* s = state_->find(id);
  if (s == nullptr)
    return std::optional<processed_message>{};
  auto i = s->processed.find(message_id);
  if (i == s->processed.end())
    return std::optional<processed_message>{};
  return std::optional<processed_message>{i->second};
}

void memory_journal::flush() {
  std::unique_lock<std::mutex> guard{state_->flight_mtx};
  auto before = state_->next_ticket;
  state_->flight_cv.wait(guard, [&] {
    return state_->in_flight.empty() || *state_->in_flight.begin() >= before;
  });
}

caf::error memory_journal::record_dead_letter(dead_letter_record rec) {
  if (rec.message_id.empty() || rec.destination.empty())
    return make_persistence_error(persistence_errc::invalid_argument,
                                  "dead letter needs a message id and a destination");
  auto& st = *state_;
  std::lock_guard<std::mutex> guard{st.mtx};
  if (!st.dead_letter_keys.emplace(rec.message_id, rec.destination, rec.reason).second)
    return {};  // recorded before (a redelivery after a crash)
  rec.dead_letter_seq = st.dead_letters.size() + 1;
  rec.recorded_at_ms = st.cfg.clock();
  st.dead_letters.push_back(std::move(rec));
  return {};
}

caf::expected<std::vector<dead_letter_record>>
memory_journal::dead_letters(std::uint64_t after_seq, std::uint64_t max) {
  auto& st = *state_;
  std::lock_guard<std::mutex> guard{st.mtx};
  std::vector<dead_letter_record> out;
  for (std::size_t i = after_seq; i < st.dead_letters.size() && out.size() < max; ++i)
    out.push_back(st.dead_letters[i]);
  return out;
}

}  // namespace longhaul::persistence
