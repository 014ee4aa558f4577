// The scheduler (see header). Invariants:
// S2: the window holds every stored timer whose key is <= loaded_through, except timers
//     in flight; entities report their timer changes after each stored write (and all
//     their timers after a write with an unknown outcome), and the window grows by reading
//     the journal's next page after loaded_through, which only ever moves forward.
// S3: a firing carries the timer's due time; the entity ignores it unless the timer is
//     still set with that due time, and stores its removal with the command's effects, so
//     a timer fires exactly once even across crashes (JOURNAL.md I12).
#include "actors/scheduler_actor.hpp"

#include "actors/actor_error.hpp"
#include "persistence/persistence_error.hpp"

#include <boost/json.hpp>

#include <limits>

namespace longhaul::actors {

namespace {

using self_ptr = caf::stateful_actor<scheduler_state>*;
using key = scheduler_state::key;

constexpr auto delivery_timeout = std::chrono::seconds{60};
/// How often overdue deliveries are looked for (timeouts fire up to this much late).
constexpr auto deadline_sweep_interval = std::chrono::seconds{1};
/// Local message: time to look for overdue deliveries.
using scheduler_sweep_atom = caf::atom_constant<caf::atom("lh_ssweep")>;

std::string timer_id(std::string_view pid, std::string_view name) {
  std::string out{pid};
  out += '\n';
  out += name;
  return out;
}

void fire_due(self_ptr self);

/// Times out overdue deliveries; re-armed while any delivery is pending.
void arm_sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweep_armed || st.deadlines.empty())
    return;
  st.sweep_armed = true;
  self->delayed_send(self, deadline_sweep_interval, scheduler_sweep_atom::value);
}

/// Whether the window knows the stored timer at `k` (S2): timer changes at or before
/// loaded_through are applied to the window, later ones are left to the next read.
bool covered(const scheduler_state& st, const key& k) {
  return st.loaded && k <= st.loaded_through;
}

/// Rows per read: one chunk, less when the window is small.
std::size_t page_size(const scheduler_state& st) {
  return std::max<std::size_t>(
    1, std::min(st.ctx->settings.timer_read_chunk, st.ctx->settings.timer_window));
}

/// When the window must grow by a read: before the first firing; while the last read
/// stopped at its row limit and a page fits; or once less than half the horizon is left
/// of a window that is complete up to a time. Never when it would not fit a page, so the
/// window stays within timer_window (plus in-flight and re-armed retries).
bool wants_read(const scheduler_state& st, persistence::time_ms now) {
  if (st.read_pending)
    return false;
  if (!st.loaded)
    return true;
  if (st.read_retry_at >= 0 && now < st.read_retry_at)
    return false;
  if (st.window.size() + page_size(st) > st.ctx->settings.timer_window)
    return false;
  if (st.stopped_at_row)
    return true;
  auto complete_until = std::get<0>(st.loaded_through) - 1;
  return now + st.ctx->settings.timer_horizon.count() / 2 >= complete_until;
}

/// Merges a page read after loaded_through (S2): every stored timer up to its last row
/// (a full page) or up to `until` (a shorter one) is now known.
void merge_page(scheduler_state& st, std::vector<persistence::timer_record>& rows,
                persistence::time_ms until, std::size_t n) {
  st.read_retry_at = -1;
  st.stopped_at_row = rows.size() >= n;
  st.loaded_through = st.stopped_at_row ? key{rows.back().due_ms, rows.back().persistence_id,
                                              rows.back().name}
                                        : key{until + 1, {}, {}};
  for (auto& r : rows) {
    key k{r.due_ms, std::move(r.persistence_id), std::move(r.name)};
    if (st.in_flight.count(k) > 0)
      continue;
    st.due_of[timer_id(std::get<1>(k), std::get<2>(k))] = r.due_ms;
    st.window.emplace(std::move(k), scheduler_state::pending{std::move(r.payload_json), 0, 0});
  }
  st.loaded = true;
}

void read_failed(scheduler_state& st, persistence::time_ms now, const caf::error& err) {
  st.ctx->log->error("scheduler: reading timers failed (retry in {} ms): {}",
                     st.ctx->settings.timer_retry.count(), persistence::describe(err));
  st.read_retry_at = now + st.ctx->settings.timer_retry.count();
}

void apply_change(scheduler_state& st, timer_change& tc);
void arm(self_ptr self);

/// Applies the timer changes that arrived while a page was read (see scheduler_state::held).
void release_held(scheduler_state& st) {
  auto held = std::move(st.held);
  st.held.clear();
  for (auto& tc : held)
    apply_change(st, tc);
}

/// Extends the window by the journal's next page after loaded_through (S2): the earliest
/// stored timers not yet known, due by now + horizon, at most one page. The page reader
/// reads it on its own thread, so due firings never wait behind a read (a cold page took
/// up to 13 ms on the scheduler's thread); inline reads (deterministic tests) read here.
void read_page(self_ptr self, persistence::time_ms now) {
  auto& st = self->state;
  auto until = now + st.ctx->settings.timer_horizon.count();
  auto n = page_size(st);
  persistence::timer_position after{std::numeric_limits<persistence::time_ms>::min(), "", ""};
  if (st.loaded)
    after = {std::get<0>(st.loaded_through), std::get<1>(st.loaded_through),
             std::get<2>(st.loaded_through)};
  if (!st.page_reader) {
    auto rows = st.ctx->journal->timers_due_after(after, until, n);
    if (rows)
      merge_page(st, *rows, until, n);
    else
      read_failed(st, now, rows.error());
    return;
  }
  st.read_pending = true;
  self->request(st.page_reader, caf::infinite, timer_page_atom::value,
                timer_page_request{std::move(after), until, n})
    .then(
      [self, until, n](timer_page& page) {
        auto& s = self->state;
        s.read_pending = false;
        merge_page(s, page.rows, until, n);
        release_held(s);
        fire_due(self);
      },
      [self](caf::error& err) {
        auto& s = self->state;
        s.read_pending = false;
        read_failed(s, s.ctx->time->now(), err);
        release_held(s);
        arm(self);
      });
}

/// Reads pages of timers for the scheduler on its own (detached) thread.
caf::behavior timer_page_reader(caf::event_based_actor*,
                                std::shared_ptr<persistence::journal> journal) {
  return {
    [journal](timer_page_atom, timer_page_request& req) -> caf::result<timer_page> {
      auto rows = journal->timers_due_after(req.after, req.until, req.max);
      if (!rows)
        return rows.error();
      return timer_page{std::move(*rows)};
    },
  };
}

void remove_timer(scheduler_state& st, const std::string& pid, const std::string& name) {
  auto it = st.due_of.find(timer_id(pid, name));
  if (it == st.due_of.end())
    return;
  st.window.erase(key{it->second, pid, name});  // an in-flight firing is judged by S3
  st.due_of.erase(it);
}

/// Arms one wake-up for the next thing to do: the earliest firing or the next read.
void arm(self_ptr self) {
  auto& st = self->state;
  // All delivery slots taken: the next answer calls fire_due. Arming now would wake the
  // scheduler over and over for timers it cannot deliver yet.
  if (st.in_flight.size() >= st.ctx->settings.timers_max_in_flight)
    return;
  // A window complete up to a time reads on when half the horizon is left (wants_read);
  // one that stopped at a row limit reads on as firings make room, which no clock time
  // announces; after a failed read, at the retry time.
  constexpr auto never = std::numeric_limits<persistence::time_ms>::max();
  // Without room for a page, no read is due: the window holds the earliest timers, so
  // firings make room before anything beyond it comes due.
  auto next = never;
  bool room = st.window.size() + page_size(st) <= st.ctx->settings.timer_window;
  if (room && st.read_retry_at >= 0)
    next = st.read_retry_at;
  else if (room && st.loaded && !st.stopped_at_row)
    next = std::get<0>(st.loaded_through) - 1 - st.ctx->settings.timer_horizon.count() / 2;
  for (const auto& [k, p] : st.window) {
    if (std::get<0>(k) > next)
      break;
    next = std::min(next, std::max(std::get<0>(k), p.not_before));
  }
  if (next < 0 || next == never || next == st.armed_for)
    return;
  auto delay = st.ctx->time->real_delay_until(next);
  if (!delay)
    return;  // virtual clock: the test advances time and pokes us (fire_atom)
  st.armed_for = next;
  // Urgent: the wake-up overtakes the answers and timer changes queued in the mailbox
  // (about 20,000 a second at 10,000 firings a second), which would otherwise delay it.
  self->template delayed_send<caf::message_priority::high>(self, *delay, wake_atom::value, next);
}

void dead_letter(self_ptr self, const key& k, const std::string& payload, std::string reason) {
  auto& st = self->state;
  ++st.dead;
  st.ctx->log->error("[{}] timer '{}' cannot be delivered: {}", std::get<1>(k), std::get<2>(k),
                     reason);
  persistence::dead_letter_record rec;
  rec.message_id = "timer:" + std::get<1>(k) + "#" + std::get<2>(k) + "@"
                   + std::to_string(std::get<0>(k));
  rec.source_persistence_id = std::get<1>(k);
  rec.destination = std::get<1>(k);
  rec.payload_json = payload;
  rec.reason = std::move(reason);
  if (auto err = st.ctx->journal->record_dead_letter(std::move(rec)))
    st.ctx->log->error("recording dead letter failed: {}", persistence::describe(err));
}

/// Handles the outcome of a delivery. `refire`: look for more due timers afterwards
/// (false when called from inside fire_due's loop, which must not be re-entered).
void on_answer(self_ptr self, const key& k, const caf::error& err, bool refire) {
  auto& st = self->state;
  auto it = st.in_flight.find(k);
  if (it == st.in_flight.end())
    return;
  auto p = std::move(it->second);
  st.in_flight.erase(it);
  auto id = timer_id(std::get<1>(k), std::get<2>(k));
  auto owned = st.due_of.find(id);
  bool still_ours = owned != st.due_of.end() && owned->second == std::get<0>(k);
  if (!err || actor_code(err) == actor_errc::rejected) {
    // Handled: a domain rejection consumed the timer too (its removal was stored).
    ++st.fired;
    if (still_ours)
      st.due_of.erase(owned);
  } else if (is_permanent(err)) {
    if (still_ours)
      st.due_of.erase(owned);
    dead_letter(self, k, p.payload_json, persistence::describe(err));
  } else if (still_ours) {
    // Retryable (incident, restart, timeout): back off, the timer stays stored.
    auto backoff = st.ctx->settings.timer_retry.count() << std::min<std::uint32_t>(p.attempts, 6);
    p.not_before = st.ctx->time->now() + backoff;
    ++p.attempts;
    st.ctx->log->warn("[{}] timer '{}' will be retried: {}", std::get<1>(k), std::get<2>(k),
                      persistence::describe(err));
    st.window.emplace(k, std::move(p));
  }
  if (refire)
    fire_due(self);
}

void deliver(self_ptr self, const key& k, const scheduler_state::pending& p) {
  auto& st = self->state;
  auto now = st.ctx->time->now();
  const auto& [due, pid, name] = k;
  auto target = split_persistence_id(pid);
  boost::json::error_code ec;
  auto doc = boost::json::parse(p.payload_json, ec);
  if (!target || ec || !doc.is_object() || !doc.as_object().contains("name")
      || !doc.at("name").is_string()) {
    on_answer(self, k, make_actor_error(actor_errc::undecodable_command,
                                        "stored timer payload is not {name, payload}"),
              false);
    return;
  }
  command_envelope cmd;
  cmd.entity_type = std::move(target->first);
  cmd.entity_id = std::move(target->second);
  cmd.name = std::string{doc.at("name").as_string()};
  cmd.payload = doc.as_object().contains("payload") ? doc.at("payload") : boost::json::value{};
  cmd.timer_name = name;
  cmd.timer_due_ms = due;
  cmd.late_by_ms = std::max<persistence::time_ms>(0, now - due);
  cmd.message_id = "timer:" + pid + "#" + name + "@" + std::to_string(due);
  // Commands that declare `late_by_ms` learn how late they fired.
  if (cmd.payload.is_object())
    cmd.payload.as_object()["late_by_ms"] = cmd.late_by_ms;
  if (cmd.late_by_ms >= 1000)
    st.ctx->log->info("[{}] timer '{}' fired {} ms late", pid, name, cmd.late_by_ms);
  auto sup = caf::actor_cast<caf::actor>(st.supervisor);
  if (!sup) {
    on_answer(self, k, make_actor_error(actor_errc::stopping, "supervisor is gone"), false);
    return;
  }
  // No CAF request timeout (see request_deadlines.hpp): the deadline is ours.
  auto token = st.deadlines.add(self->clock().now() + delivery_timeout, [self, k] {
    on_answer(self, k, caf::make_error(caf::sec::request_timeout), true);
  });
  arm_sweep(self);
  self->request(sup, caf::infinite, std::move(cmd))
    .then(
      [self, k, token](command_reply&) {
        if (self->state.deadlines.settle(token))
          on_answer(self, k, caf::error{}, true);
      },
      [self, k, token](caf::error& err) {
        if (self->state.deadlines.settle(token))
          on_answer(self, k, err, true);
      });
}

void fire_due(self_ptr self) {
  auto& st = self->state;
  auto now = st.ctx->time->now();
  if (wants_read(st, now))
    read_page(self, now);
  auto max = st.ctx->settings.timers_max_in_flight;
  for (auto it = st.window.begin(); it != st.window.end() && st.in_flight.size() < max;) {
    if (std::get<0>(it->first) > now)
      break;
    if (it->second.not_before > now) {
      ++it;
      continue;
    }
    auto k = it->first;
    auto p = std::move(it->second);
    it = st.window.erase(it);
    auto& slot = st.in_flight.emplace(k, std::move(p)).first->second;
    deliver(self, k, slot);
  }
  arm(self);
}

/// Earliest clock time at which something is due (window or journal), for virtual time.
std::optional<persistence::time_ms> next_due(self_ptr self) {
  auto& st = self->state;
  std::optional<persistence::time_ms> next;
  for (const auto& [k, p] : st.window) {
    auto t = std::max(std::get<0>(k), p.not_before);
    if (!next || t < *next)
      next = t;
    if (std::get<0>(k) >= *next)
      break;
  }
  if (!next && st.loaded) {
    // Beyond the window: ask the journal for its earliest stored timer.
    auto rows = st.ctx->journal->timers_due(std::numeric_limits<persistence::time_ms>::max(), 1);
    if (rows && !rows->empty() && st.in_flight.count(key{rows->front().due_ms,
                                                         rows->front().persistence_id,
                                                         rows->front().name})
                                    == 0)
      next = rows->front().due_ms;
  }
  return next;
}

/// Applies an instance's stored timer changes to the window (S2).
void apply_change(scheduler_state& s, timer_change& tc) {
  if (tc.cancelled_all) {
    for (auto it = s.window.begin(); it != s.window.end();) {
      if (std::get<1>(it->first) == tc.persistence_id) {
        s.due_of.erase(timer_id(tc.persistence_id, std::get<2>(it->first)));
        it = s.window.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& name : tc.cancelled)
    remove_timer(s, tc.persistence_id, name);
  for (auto& t : tc.set) {
    remove_timer(s, tc.persistence_id, t.name);
    key k{t.due_ms, tc.persistence_id, t.name};
    if (covered(s, k)) {
      s.due_of[timer_id(tc.persistence_id, t.name)] = t.due_ms;
      s.window.emplace(std::move(k), scheduler_state::pending{std::move(t.payload_json), 0, 0});
    }
  }
}

}  // namespace

caf::behavior scheduler_actor(caf::stateful_actor<scheduler_state>* self,
                              std::shared_ptr<const entity_context> ctx,
                              caf::actor_addr supervisor) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.supervisor = std::move(supervisor);
  // Linked: it ends with the scheduler (and the scheduler with it: it never fails alone).
  if (!st.ctx->settings.inline_reads)
    st.page_reader = self->spawn<caf::detached + caf::linked>(timer_page_reader, st.ctx->journal);
  // Overdue timers fire at start-up, in due order, with their lateness.
  self->send(self, fire_atom::value);
  return {
    [self](fire_atom) { fire_due(self); },
    [self](scheduler_sweep_atom) {
      auto& s = self->state;
      s.sweep_armed = false;
      s.deadlines.sweep(self->clock().now());
      arm_sweep(self);
    },
    [self](wake_atom, persistence::time_ms t) {
      auto& s = self->state;
      if (t != s.armed_for)
        return;  // superseded by an earlier or later wake-up
      s.armed_for = -1;
      fire_due(self);
    },
    [self](timer_change& tc) {
      auto& s = self->state;
      if (s.read_pending) {
        s.held.push_back(std::move(tc));
        return;
      }
      apply_change(s, tc);
      fire_due(self);
    },
    [self](next_due_atom) -> std::optional<persistence::time_ms> { return next_due(self); },
  };
}

}  // namespace longhaul::actors
