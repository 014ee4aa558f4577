// The persistent entity actor (see header). Invariant R1 (STYLE.md rule 2): the state
// changes only after the journal acknowledged the write; while a write is in flight or
// recovery runs, commands wait in `queue` and are decided in arrival order.
#include "actors/persistent_entity_actor.hpp"

#include "actors/actor_error.hpp"
#include "persistence/persistence_error.hpp"

#include <boost/json.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/send.hpp>

#include <charconv>
#include <chrono>
#include <mutex>
#include <random>

namespace longhaul::actors {

namespace {

using self_ptr = caf::stateful_actor<entity_actor_state>*;
using mode = entity_actor_state::mode;

const char* mode_name(mode m) {
  switch (m) {
    case mode::recovering: return "recovering";
    case mode::ready: return "ready";
    case mode::writing: return "writing";
    case mode::backoff: return "backoff";
    case mode::failed: return "failed";
  }
  return "unknown";
}

/// Globally unique message id for outbox rows: the wall-clock millisecond in 11 hex
/// digits, a random part drawn once per thread, a per-thread counter, and the source, e.g.
/// `193a0e6c2d1-5f0c9e2b7a1d4c83-42#payment/order-7`. Receivers deduplicate by it, so it
/// must never repeat (random part and counter). It starts with the time so that ids sort
/// roughly by creation: the journal's processed-message key begins with the message id
/// (JOURNAL.md, schema version 3), and a commit's new keys then land next to each other
/// instead of all over the index. A clock that steps back costs that locality, not
/// uniqueness.
std::string new_message_id(const std::string& pid) {
  thread_local std::uint64_t salt = std::mt19937_64{std::random_device{}()}();
  thread_local std::uint64_t counter = 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count();
  // Formatted by hand: snprintf cost about 2,000 instructions per id.
  auto append_hex = [](std::string& out, std::uint64_t v, int min_digits) {
    static constexpr char hex[] = "0123456789abcdef";
    char buf[16];
    int n = 0;
    do {
      buf[n++] = hex[v & 0xf];
      v >>= 4;
    } while (v != 0);
    for (int i = n; i < min_digits; ++i)
      out += '0';
    while (n > 0)
      out += buf[--n];
  };
  std::string out;
  out.reserve(11 + 1 + 16 + 1 + 20 + 1 + pid.size());
  append_hex(out, static_cast<std::uint64_t>(ms), 11);
  out += '-';
  append_hex(out, salt, 16);
  out += '-';
  char digits[20];
  auto end = std::to_chars(digits, digits + sizeof(digits), ++counter).ptr;
  out.append(digits, end);
  out += '#';
  out += pid;
  return out;
}

/// Key under which failures of "the same command" are counted.
std::string failure_key(const command_envelope& cmd) {
  if (!cmd.message_id.empty())
    return cmd.message_id;
  return cmd.name + ":" + boost::json::serialize(payload_of(cmd));
}

/// The stored form of a command, {"name":..,"payload":..[,"on_failure":..]}, written
/// straight into the string (an object holding the payload would copy it first).
std::string command_json(std::string_view name, const boost::json::value& payload,
                         std::string_view failure_tag = {}) {
  std::string out;
  out.reserve(64 + name.size() + failure_tag.size());
  out += R"({"name":)";
  persistence::append_json_string(out, name);
  out += R"(,"payload":)";
  persistence::append_json(out, payload);
  if (!failure_tag.empty()) {
    out += R"(,"on_failure":)";
    persistence::append_json_string(out, failure_tag);
  }
  out += '}';
  return out;
}

/// The stored form of a rejection (JOURNAL.md I7: processed_messages.rejection): its
/// describe() text, e.g. "rejected: only 10 in stock", readable with sqlite3.
std::string rejection_text(const caf::error& err) {
  return persistence::describe(err);
}

/// The rejection a stored text describes: the same code and detail as the first answer
/// when it names a code decide() fails with, else `rejected` carrying the whole text.
caf::error rejection_of(const std::string& text) {
  for (auto code :
       {actor_errc::rejected, actor_errc::unknown_command, actor_errc::undecodable_command}) {
    auto name = to_string(code);
    if (text == name)
      return make_actor_error(code, "");
    if (text.size() >= name.size() + 2 && text.compare(0, name.size(), name) == 0
        && text.compare(name.size(), 2, ": ") == 0)
      return make_actor_error(code, text.substr(name.size() + 2));
  }
  return make_actor_error(actor_errc::rejected, text);
}

/// Delivers to a promise that may be empty (internal writes have no sender).
template <class T>
void reply(caf::response_promise& rp, T&& x) {
  if (rp.pending())
    rp.deliver(std::forward<T>(x));
}

/// Answers a command: a request with its response, an outbox delivery with a
/// delivery_answer to the dispatcher (its sender), which finds it by number.
template <class T>
void reply(entity_actor_state::pending_command& pc, T&& x) {
  if (pc.delivery == 0)
    reply(pc.promise, std::forward<T>(x));
  else if (pc.promise.pending())
    pc.promise.deliver(
      delivery_answer{pc.delivery, caf::expected<command_reply>{std::forward<T>(x)}});
}

bool idle(const entity_actor_state& st) {
  return st.queue.empty() && !st.in_flight
         && (st.current == mode::ready || st.current == mode::failed);
}

void process(self_ptr self);
void maybe_snapshot(self_ptr self, std::size_t new_events, bool requested);
void start_recovery(self_ptr self);

void notify_drained(self_ptr self) {
  auto& st = self->state;
  if (!idle(st))
    return;
  for (auto& rp : st.drain_waiters)
    reply(rp, caf::unit);
  st.drain_waiters.clear();
}

/// The configured idle time before passivation, in the actor clock's unit.
caf::actor_clock::duration_type passivate_after(const entity_actor_state& st) {
  return std::chrono::duration_cast<caf::actor_clock::duration_type>(
    st.ctx->settings.passivate_after);
}

/// Asks the supervisor to passivate this idle instance. The supervisor stops it only if
/// it routed nothing since (`received`); otherwise the command on its way is handled and
/// the instance asks again when it is idle.
void ask_to_passivate(self_ptr self) {
  auto& s = self->state;
  if (auto sup = caf::actor_cast<caf::actor>(s.supervisor))
    self->send(sup, passivate_atom::value, s.pid, s.received,
               s.stored_a_write || s.highest > 0 || !s.timers.empty());
}

/// The instance became idle: a finished one leaves memory now (unless passivation is
/// off); any other one once it has been idle for passivate_after, when the supervisor's
/// idle check finds it so (supervisor_state::idle_order).
void on_idle(self_ptr self) {
  auto& st = self->state;
  if (st.finished && st.ctx->settings.passivate_after.count() > 0)
    ask_to_passivate(self);
}

instance_status status_of(const entity_actor_state& st);

/// Status requests that arrived during recovery are answered once it ends.
void answer_status_waiters(self_ptr self) {
  auto& st = self->state;
  for (auto& rp : st.status_waiters)
    reply(rp, status_of(st));
  st.status_waiters.clear();
}

void release_permit(self_ptr self) {
  auto& st = self->state;
  if (!st.permit_held)
    return;
  st.permit_held = false;
  if (auto sup = caf::actor_cast<caf::actor>(st.supervisor))
    self->send(sup, permit_done_atom::value);
}

/// Recovery failed in a way a retry cannot fix (unknown event, undecodable payload):
/// the instance refuses commands with the reason; other instances are unaffected.
void fail_instance(self_ptr self, const caf::error& err) {
  auto& st = self->state;
  st.current = mode::failed;
  st.failure = persistence::describe(err);
  st.ctx->log->error("[{}] instance failed: {}", st.pid, st.failure);
  release_permit(self);
  answer_status_waiters(self);
  process(self);
}

/// A failed write or a throwing decide: forget the state and rebuild it from the
/// journal after an exponential backoff. Queued commands stay queued.
void restart_from_journal(self_ptr self, const std::string& why) {
  auto& st = self->state;
  ++st.restarts;
  auto backoff = st.ctx->settings.restart_backoff_min;
  for (std::uint32_t i = 1; i < st.restarts && backoff < st.ctx->settings.restart_backoff_max; ++i)
    backoff *= 2;
  backoff = std::min(backoff, st.ctx->settings.restart_backoff_max);
  st.current = mode::backoff;
  st.in_flight.reset();
  st.ctx->log->warn("[{}] restarting from the journal in {} ms (restart {}): {}", st.pid,
                    backoff.count(), st.restarts, why);
  self->delayed_send(self, backoff, recover_atom::value);
}

/// Applies one stored event during recovery: runtime events here, user events through
/// the behavior (upcast, decode, apply).
caf::error apply_recovered(entity_actor_state& st, const persistence::event_record& ev) {
  if (ev.type == incident_opened_event) {
    boost::json::error_code ec;
    auto v = boost::json::parse(ev.payload_json, ec);
    st.incident = !ec && v.is_object() && v.as_object().contains("error")
                    ? std::string{v.at("error").as_string()}
                    : std::string{"incident"};
    return {};
  }
  if (ev.type == incident_resolved_event) {
    st.incident.clear();
    return {};
  }
  return st.behavior->apply_stored(*st.state, ev);
}

void on_chunk(self_ptr self, loaded_chunk& chunk) {
  auto& st = self->state;
  for (const auto& t : chunk.timers)
    st.timers[t.name] = t.due_ms;
  if (std::exchange(st.resync_timers, false) && st.scheduler) {
    // After a write with an unknown outcome the scheduler may have missed timer changes
    // that did commit (S2): hand it this instance's stored timers as they are.
    timer_change tc;
    tc.persistence_id = st.pid;
    tc.cancelled_all = true;
    for (const auto& t : chunk.timers)
      tc.set.push_back({t.name, t.due_ms, t.payload_json});
    self->send(st.scheduler, std::move(tc));
  }
  if (chunk.snapshot) {
    auto decoded = st.behavior->decode_state(chunk.snapshot->state_json);
    if (!decoded) {
      fail_instance(self, make_actor_error(actor_errc::instance_failed,
                                           "'" + st.pid + "': snapshot at sequence number "
                                             + std::to_string(chunk.snapshot->seq)
                                             + " cannot be decoded: "
                                             + persistence::describe(decoded.error())));
      return;
    }
    st.state = std::move(*decoded);
    st.highest = chunk.snapshot->seq;
  }
  for (const auto& ev : chunk.events.events) {
    if (auto err = apply_recovered(st, ev)) {
      fail_instance(self, err);
      return;
    }
    st.highest = ev.seq;
  }
  auto journal_highest = chunk.events.highest_seq;
  if (!chunk.events.events.empty() && st.highest < journal_highest
      && chunk.events.events.size() >= st.ctx->settings.replay_chunk) {
    // Flow control: one chunk at a time, so a long history never floods the mailbox.
    load_request next{st.pid, false, st.highest + 1, st.ctx->settings.replay_chunk};
    if (st.ctx->settings.inline_reads) {
      auto r = st.ctx->journal->replay(next.persistence_id, next.from_seq,
                                       persistence::max_sequence_nr, next.max_events);
      if (!r) {
        restart_from_journal(self, persistence::describe(r.error()));
        return;
      }
      loaded_chunk more{std::nullopt, std::move(*r), {}};
      on_chunk(self, more);
      return;
    }
    self->request(st.ctx->readers, caf::infinite, load_atom::value, std::move(next))
      .then([self](loaded_chunk& more) { on_chunk(self, more); },
            [self](caf::error& err) { restart_from_journal(self, persistence::describe(err)); });
    return;
  }
  // Events 1..n may have been deleted after a snapshot: the journal's highest is the truth.
  st.highest = std::max(st.highest, journal_highest);
  st.current = mode::ready;
  release_permit(self);
  st.ctx->log->debug("[{}] recovered at sequence number {}", st.pid, st.highest);
  answer_status_waiters(self);
  process(self);
}

void load_first_chunk(self_ptr self) {
  auto& st = self->state;
  load_request req{st.pid, true, 1, st.ctx->settings.replay_chunk};
  if (st.ctx->settings.inline_reads) {
    auto start = st.ctx->journal->load_recovery_start(st.pid, req.max_events);
    if (!start) {
      restart_from_journal(self, persistence::describe(start.error()));
      return;
    }
    on_chunk(self, *start);
    return;
  }
  self->request(st.ctx->readers, caf::infinite, load_atom::value, std::move(req))
    .then([self](loaded_chunk& chunk) { on_chunk(self, chunk); },
          [self](caf::error& err) { restart_from_journal(self, persistence::describe(err)); });
}

void start_recovery(self_ptr self) {
  auto& st = self->state;
  st.presumed_new = false;
  st.finished = false;
  st.current = mode::recovering;
  st.state = st.behavior->initial_state();
  st.highest = 0;
  st.events_since_snapshot = 0;
  st.incident.clear();
  st.timers.clear();
  auto sup = caf::actor_cast<caf::actor>(st.supervisor);
  if (!sup || st.permit_held) {
    load_first_chunk(self);
    return;
  }
  // Bounded concurrent recoveries: wait for a permit from the supervisor.
  self->request(sup, caf::infinite, permit_atom::value)
    .then([self]() {
      self->state.permit_held = true;
      load_first_chunk(self);
    },
    [self](caf::error&) { load_first_chunk(self); });
}

/// A command activated this instance (activation_start::presume_new): no read; the
/// initial state is presumed, and the first command is decided at once. Most activations
/// for a command are of new ids (an order's payment, shipment, ...), and each saves a
/// permit, a journal read and two messages. What proves the presumption is the first
/// write: it is stored only as a new stream (atomic_write::new_stream).
void start_presumed_new(self_ptr self) {
  auto& st = self->state;
  st.state = st.behavior->initial_state();
  st.highest = 0;
  st.presumed_new = true;
  st.current = mode::ready;
}

/// What a presumed-new instance decided for `pc` cannot be trusted (the id has a stream,
/// or the decision was no new stream's first write): recover from the journal and decide
/// `pc` again, before anything queued behind it. Nothing was stored or answered for it.
void recover_then_decide(self_ptr self, entity_actor_state::pending_command pc) {
  auto& st = self->state;
  st.queue.push_front(std::move(pc));
  start_recovery(self);  // asks the supervisor for a recovery permit first
}

/// Turns a decision into one atomic write (events + timers + outbox + processed id).
/// Bad timers (empty name, due before the epoch, a command this type cannot take) are
/// refused here, when the decision is stored, not when the timer fires.
caf::expected<persistence::atomic_write>
make_write(entity_actor_state& st, const command_envelope& cmd, decision_record& d) {
  persistence::atomic_write w;
  w.persistence_id = st.pid;
  w.expected_seq = st.highest + 1;
  // Event payloads come from the entity behaviors' JSON serializers, timer and outbox
  // payloads from command_json: the journal need not parse them again.
  w.payloads_serialized = true;
  w.events = std::move(d.events);
  // A finished instance's timers all go; `timers` is what is stored (a presumed-new
  // instance's write is stored only for an id without a stream, so without timers): with
  // none, the write need not touch the timer table.
  w.cancel_all_timers = d.finished && !st.timers.empty();
  if (!cmd.timer_name.empty())  // a fired timer is removed with its command's effects
    w.timers_to_cancel.push_back({cmd.timer_name});
  for (auto& name : d.timers_to_cancel)
    w.timers_to_cancel.push_back({std::move(name)});
  for (auto& t : d.timers_to_set) {
    if (t.delay_ms >= 0)
      t.due_ms = st.ctx->time->now() + t.delay_ms;
    if (t.name.empty())
      return make_actor_error(actor_errc::rejected,
                              "'" + st.pid + "': a timer needs a name");
    if (t.due_ms < 0)
      return make_actor_error(actor_errc::rejected,
                              "'" + st.pid + "': timer '" + t.name + "' is due before the epoch");
    if (!st.behavior->accepts(t.command_name))
      return make_actor_error(actor_errc::rejected,
                              "'" + st.pid + "': timer '" + t.name + "' would deliver '"
                                + t.command_name + "', which entity type '"
                                + st.behavior->type_name() + "' does not accept");
    w.timers_to_set.push_back({t.name, t.due_ms, command_json(t.command_name, t.payload)});
  }
  for (auto& s : d.sends)
    w.outbox.push_back({new_message_id(st.pid), persistence_id_of(s.entity_type, s.entity_id),
                        command_json(s.name, s.payload, s.failure_tag)});
  for (auto& p : d.publishes)
    w.outbox.push_back({new_message_id(st.pid), "event:" + p.name, command_json(p.name, p.payload)});
  // A fired timer needs no processed-message row: its removal is stored with these
  // effects, and a firing whose timer is no longer stored with that due time is stale
  // (scheduler S3). The row would cost an index insert per firing and stay forever.
  if (!cmd.message_id.empty() && cmd.timer_name.empty())
    w.processed_message_id = cmd.message_id;
  return w;
}

/// A write on its way to the journal, with the message that reports its outcome already
/// built. `done` runs on the journal's writer thread: it fills in the outcome and enqueues
/// the message (R1: the state changes only when the entity handles it). The writer thread
/// allocates nothing, and the write, the ticket and the message are freed by the entity's
/// thread, which allocated them (persistence::write_ticket).
class outcome_ticket final : public persistence::write_ticket,
                             public std::enable_shared_from_this<outcome_ticket> {
public:
  outcome_ticket(caf::actor entity, std::uint64_t token)
    : entity_(std::move(entity)),
      message_(caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                         write_outcome{token, caf::error{}, nullptr})) {}

  void done(caf::expected<persistence::write_result> outcome) override {
    auto message = std::move(message_);
    auto entity = std::move(entity_);
    auto& out = message->content().get_mutable_as<write_outcome>(0);
    out.result = std::move(outcome);
    out.spent = shared_from_this();  // from here the message owns this ticket
    entity->enqueue(std::move(message), nullptr);
  }

private:
  caf::actor entity_;
  caf::mailbox_element_ptr message_;
};

/// What the scheduler must learn from a write about to be stored.
timer_change timer_change_of(const persistence::atomic_write& w) {
  timer_change tc;
  tc.persistence_id = w.persistence_id;
  tc.cancelled_all = w.cancel_all_timers;
  for (const auto& c : w.timers_to_cancel)
    tc.cancelled.push_back(c.name);
  tc.set = w.timers_to_set;
  return tc;
}

bool stores_nothing(const persistence::atomic_write& w) {
  return w.events.empty() && w.timers_to_set.empty() && w.timers_to_cancel.empty()
         && w.outbox.empty() && !w.processed_message_id && !w.cancel_all_timers;
}

/// Makes `pc` the command in flight, with what happens once its write is stored.
void hold_in_flight(entity_actor_state& st, entity_actor_state::pending_command pc,
                    decision_record d = {}) {
  // Constructed from the command, not assigned: a payload in a message arena (outbox
  // dispatcher) would be copied by an assignment.
  st.in_flight = std::make_unique<entity_actor_state::write_in_flight>(
    entity_actor_state::write_in_flight{.command = std::move(pc),
                                        .decision = std::move(d),
                                        .rejection = {},
                                        .incident = std::nullopt,
                                        .timers = std::nullopt});
}

void send_write(self_ptr self, persistence::atomic_write w) {
  auto& st = self->state;
  st.current = mode::writing;
  // Precondition: st.in_flight holds the command this write stores.
  if (!w.timers_to_set.empty() || !w.timers_to_cancel.empty() || w.cancel_all_timers)
    st.in_flight->timers = timer_change_of(w);
  auto token = ++st.write_token;
  auto ticket = std::make_shared<outcome_ticket>(caf::actor{self}, token);
  ticket->w = std::move(w);
  st.ctx->journal->submit(std::move(ticket));
}

decision_record incident_decision(const command_envelope& cmd, const std::string& error,
                                  std::uint32_t failures) {
  boost::json::object o;
  o["command"] = cmd.name;
  o["error"] = error;
  o["failures"] = failures;
  decision_record d;
  d.events.push_back({incident_opened_event, 1, boost::json::serialize(o), {incident_tag}});
  return d;
}

/// decide() threw: reply, count, and either open an incident or restart from the journal.
void on_decide_threw(self_ptr self, entity_actor_state::pending_command pc, std::string what) {
  auto& st = self->state;
  auto count = ++st.failures[failure_key(pc.cmd)];
  auto text = "'" + st.pid + "': decide(" + pc.cmd.name + ") threw: " + what;
  reply(pc, make_actor_error(actor_errc::decide_threw, text));
  if (count >= st.behavior->options().max_failures) {
    st.ctx->log->error("[{}] command {} failed {} times; opening an incident", st.pid,
                       pc.cmd.name, count);
    st.failures.erase(failure_key(pc.cmd));
    hold_in_flight(st, {pc.cmd, caf::response_promise{}, 0},
                   incident_decision(pc.cmd, text, count));
    st.in_flight->incident = text;
    command_envelope none;  // the incident event itself consumes no message or timer
    send_write(self, std::move(*make_write(st, none, st.in_flight->decision)));
    return;
  }
  restart_from_journal(self, text);
}

/// Decides one command in `ready` mode. Returns true when the next queued command may be
/// decided now (answered without a write), false when a write went out or the instance
/// restarts (the next command waits, R1).
bool decide_one(self_ptr self, entity_actor_state::pending_command pc) {
  auto& st = self->state;
  if (st.presumed_new && (pc.cmd.name == resume_command || !pc.cmd.timer_name.empty())) {
    // An incident or a timer belongs to a stored instance: recover before deciding.
    recover_then_decide(self, std::move(pc));
    return false;
  }
  if (pc.cmd.name == resume_command) {
    if (st.incident.empty()) {
      reply(pc, command_reply{std::nullopt, st.highest, false});
      return true;
    }
    decision_record d;
    d.events.push_back({incident_resolved_event, 1, "{}", {incident_tag}});
    command_envelope none;
    auto w = std::move(*make_write(st, none, d));
    hold_in_flight(st, std::move(pc), std::move(d));
    st.in_flight->incident = std::string{};  // resolved: no open incident once stored
    send_write(self, std::move(w));
    return false;
  }
  if (!pc.cmd.timer_name.empty()) {
    auto t = st.timers.find(pc.cmd.timer_name);
    if (t == st.timers.end() || t->second != pc.cmd.timer_due_ms) {
      // S3: replaced, cancelled or already handled: this firing is stale.
      reply(pc, command_reply{std::nullopt, st.highest, true});
      return true;
    }
  }
  if (!st.incident.empty()) {
    reply(pc, make_actor_error(
      actor_errc::incident, "'" + st.pid + "' has an open incident (resume it first): "
                              + st.incident));
    return true;
  }
  caf::expected<decision_record> decided{caf::error{}};
  std::optional<std::string> threw;  // what decide() threw, if it did
  try {
    decided = st.behavior->decide(*st.state, pc.cmd);
  } catch (const std::exception& e) {
    threw = e.what();
  } catch (...) {
    threw = "unknown exception";
  }
  if (st.presumed_new && (threw || !decided)) {
    // A throw or a rejection against the initial state says nothing about a stored one.
    recover_then_decide(self, std::move(pc));
    return false;
  }
  if (threw) {
    on_decide_threw(self, std::move(pc), std::move(*threw));
    return false;
  }
  if (!decided) {
    // Rejected: nothing stored, state unchanged. A fired timer or a message with an id
    // (outbox, subscription) is still consumed: the timer's removal or the processed
    // message id is written, with the rejection's text, and the rejection is reported
    // once that is stored. So a redelivery is not decided again but answered with the
    // same rejection (exactly-once; JOURNAL.md I7, answer_duplicate).
    if (!pc.cmd.timer_name.empty() || !pc.cmd.message_id.empty()) {
      decision_record empty;
      auto w = std::move(*make_write(st, pc.cmd, empty));
      if (w.processed_message_id)
        w.processed_rejection = rejection_text(decided.error());
      hold_in_flight(st, std::move(pc), std::move(empty));
      st.in_flight->rejection = decided.error();
      send_write(self, std::move(w));
      return false;
    }
    reply(pc, decided.error());
    return true;
  }
  auto written = make_write(st, pc.cmd, *decided);
  if (st.presumed_new && (!written || written->events.empty())) {
    // Only a write with events can prove the presumption (a stream without events may
    // hold timers this instance would not know); anything else is decided again.
    recover_then_decide(self, std::move(pc));
    return false;
  }
  if (!written) {
    reply(pc, written.error());
    return true;
  }
  auto w = std::move(*written);
  w.new_stream = st.presumed_new;
  if (stores_nothing(w)) {
    reply(pc, command_reply{std::move(decided->reply), st.highest, false});
    if (decided->snapshot_requested && st.highest > 0)
      maybe_snapshot(self, 0, true);  // nothing to store, but a snapshot was asked for
    return true;
  }
  hold_in_flight(st, std::move(pc), std::move(*decided));
  send_write(self, std::move(w));
  return false;
}

void process(self_ptr self) {
  auto& st = self->state;
  while (!st.queue.empty()) {
    if (st.current == mode::failed) {
      auto pc = st.queue.pop_front();
      reply(pc, make_actor_error(actor_errc::instance_failed, st.failure));
      continue;
    }
    if (st.current != mode::ready)
      return;
    auto pc = st.queue.pop_front();
    if (!decide_one(self, std::move(pc)))
      return;
  }
  notify_drained(self);
  if (idle(st))
    on_idle(self);
}

void maybe_snapshot(self_ptr self, std::size_t new_events, bool requested) {
  auto& st = self->state;
  st.events_since_snapshot += new_events;
  auto every = st.behavior->options().snapshot_every;
  if (!requested && (every == 0 || st.events_since_snapshot < every))
    return;
  auto json = st.behavior->encode_state(*st.state);
  if (!json) {
    st.ctx->log->warn("[{}] snapshot skipped: {}", st.pid, persistence::describe(json.error()));
    return;
  }
  st.events_since_snapshot = 0;
  snapshot_request req{{st.pid, st.highest, std::move(*json), 0},
                       st.behavior->options().delete_events_on_snapshot};
  if (st.ctx->settings.inline_reads) {
    if (auto err = st.ctx->journal->save_snapshot(req.snapshot))
      st.ctx->log->warn("[{}] snapshot failed: {}", st.pid, persistence::describe(err));
    else if (req.delete_covered_events)
      (void) st.ctx->journal->delete_up_to(st.pid, req.snapshot.seq);
    return;
  }
  self->send(st.ctx->readers, snapshot_atom::value, std::move(req));
}

/// Settles a redelivered message once its first outcome is known: the same rejection as
/// the first time, or a duplicate success. Ignored if the instance moved on meanwhile.
void settle_duplicate(self_ptr self, std::uint64_t token,
                      caf::expected<std::optional<persistence::processed_message>> first) {
  auto& st = self->state;
  if (token != st.write_token || st.current != mode::writing || !st.in_flight)
    return;
  auto pc = std::move(st.in_flight->command);
  st.in_flight.reset();
  st.current = mode::ready;
  if (!first) {
    // Nothing was stored and the state is unchanged, but the first answer is unknown:
    // report the read's failure (not permanent, so the sender delivers again later).
    st.ctx->log->warn("[{}] reading the first outcome of message {} failed: {}", st.pid,
                      pc.cmd.message_id, persistence::describe(first.error()));
    reply(pc, std::move(first.error()));
  } else if (*first && (*first)->rejection) {
    reply(pc, rejection_of(*(*first)->rejection));
  } else {
    reply(pc, command_reply{std::nullopt, st.highest, true});
  }
  process(self);
}

/// A redelivered message (duplicate_message): answers it as the first time (JOURNAL.md
/// §6) from the outcome stored with its id. Until that is read the instance stays in
/// `writing` with the message in flight, so the next queued command waits (R1 order).
void answer_duplicate(self_ptr self, entity_actor_state::pending_command pc) {
  auto& st = self->state;
  auto token = st.write_token;
  auto pid = st.pid;
  auto message_id = pc.cmd.message_id;
  hold_in_flight(st, std::move(pc));
  if (st.ctx->settings.inline_reads) {
    settle_duplicate(self, token, st.ctx->journal->processed_outcome(pid, message_id));
    return;
  }
  self->request(st.ctx->readers, caf::infinite, processed_atom::value, std::move(pid),
                std::move(message_id))
    .then(
      [self, token](std::optional<persistence::processed_message>& first) {
        settle_duplicate(self, token, std::move(first));
      },
      [self, token](caf::error& err) { settle_duplicate(self, token, std::move(err)); });
}

void on_write_outcome(self_ptr self, write_outcome& out) {
  auto& st = self->state;
  if (out.token != st.write_token || st.current != mode::writing || !st.in_flight)
    return;  // a stale outcome from before a restart
  auto held = std::move(st.in_flight);
  auto& pc = held->command;
  auto& d = held->decision;
  bool was_presumed_new = std::exchange(st.presumed_new, false);
  if (out.result) {
    // R1: the journal stored the write; only now does the state change. For a presumed
    // new instance the journal also confirmed that the id had no stream.
    auto stored = out.result->highest_seq - st.highest;
    st.highest = out.result->highest_seq;
    st.stored_a_write = true;
    st.finished = d.finished;
    if (d.apply)
      d.apply(*st.state);
    if (held->incident)
      st.incident = std::move(*held->incident);
    if (held->timers) {
      auto& tc = *held->timers;
      if (tc.cancelled_all)
        st.timers.clear();
      for (const auto& name : tc.cancelled)
        st.timers.erase(name);
      for (const auto& t : tc.set)
        st.timers[t.name] = t.due_ms;
      if (st.scheduler)
        self->send(st.scheduler, std::move(tc));
    }
    st.restarts = 0;
    if (!st.failures.empty())  // failure_key serializes the payload: skip it when no-op
      st.failures.erase(failure_key(pc.cmd));
    st.current = mode::ready;
    if (was_presumed_new)
      answer_status_waiters(self);
    if (held->rejection)
      reply(pc, std::move(held->rejection));
    else
      reply(pc, command_reply{std::move(d.reply), st.highest, false});
    if ((!d.sends.empty() || !d.publishes.empty()) && st.outbox)
      self->send(st.outbox, outbox_nudge_atom::value);
    if (stored > 0 || d.snapshot_requested)
      maybe_snapshot(self, stored, d.snapshot_requested);
    process(self);
    return;
  }
  const auto& err = out.result.error();
  if (was_presumed_new && persistence::is_rejection(err)) {
    // Nothing was stored. The id has a stream (sequence_conflict), or the presumed state
    // led to a refused write: recover, then decide the command again; its sender hears
    // only that answer.
    st.ctx->log->debug("[{}] not new after all, recovering: {}", st.pid,
                       persistence::describe(err));
    recover_then_decide(self, std::move(pc));
    return;
  }
  if (persistence::persistence_code(err) == persistence::persistence_errc::duplicate_message) {
    // Exactly-once: this message was handled before; nothing happens again, and the
    // sender gets the first answer (still `writing` until it is read).
    answer_duplicate(self, std::move(pc));
    return;
  }
  reply(pc, err);
  if (persistence::persistence_code(err) == persistence::persistence_errc::sequence_conflict) {
    // JOURNAL.md §6: nothing was stored, but this instance's view of its stream is stale
    // (another writer, or an earlier "failed" write that did commit): reload it now.
    st.ctx->log->warn("[{}] write rejected, reloading: {}", st.pid, persistence::describe(err));
    st.resync_timers = true;
    start_recovery(self);
    return;
  }
  if (persistence::is_rejection(err)) {
    // Definitely not stored: keep running with the state unchanged.
    st.ctx->log->warn("[{}] write rejected: {}", st.pid, persistence::describe(err));
    st.current = mode::ready;
    process(self);
    return;
  }
  // Failed: the outcome is unknown; only the journal can tell, so recover from it (and
  // tell the scheduler which timers are stored).
  st.resync_timers = true;
  restart_from_journal(self, "write failed: " + persistence::describe(err));
}

instance_status status_of(const entity_actor_state& st) {
  instance_status s;
  s.persistence_id = st.pid;
  s.mode = st.incident.empty() ? mode_name(st.current) : "incident";
  s.highest_seq = st.highest;
  s.queued_commands = st.queue.size() + (st.in_flight ? 1 : 0);
  s.incident = st.incident;
  s.failure = st.failure;
  if (st.state && st.current != mode::recovering)
    if (auto json = st.behavior->encode_state(*st.state))
      s.state_json = std::move(*json);
  return s;
}

}  // namespace

caf::behavior persistent_entity_actor(caf::stateful_actor<entity_actor_state>* self,
                                      std::shared_ptr<const entity_context> ctx,
                                      std::shared_ptr<const entity_behavior> behavior,
                                      std::string pid, caf::actor_addr supervisor,
                                      caf::actor outbox, caf::actor scheduler,
                                      activation_start start) {
  auto& st = self->state;
  st.permit_held = start == activation_start::recover_with_permit;
  st.last_active = self->clock().now();
  st.ctx = std::move(ctx);
  st.behavior = std::move(behavior);
  st.pid = std::move(pid);
  st.supervisor = std::move(supervisor);
  st.outbox = std::move(outbox);
  st.scheduler = std::move(scheduler);
  // An exception that escapes user code outside decide() (which restarts the instance),
  // e.g. one that is not a std::exception thrown by apply during recovery, ends this
  // activation. Everyone waiting on it gets an answer now instead of at their timeout;
  // the supervisor forgets the activation (and takes back its recovery permit), so the
  // next command starts a fresh recovery.
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& eptr) {
    auto& s = self->state;
    std::string what = "an exception that is not a std::exception";
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      what = std::string{"exception: "} + e.what();
    } catch (...) {
    }
    auto err = make_actor_error(actor_errc::instance_failed,
                                "'" + s.pid + "' ended by " + what + " outside decide ("
                                  + (s.current == mode::recovering ? "while recovering"
                                                                   : "after recovery")
                                  + "); a write in flight may have been stored");
    s.ctx->log->error("[{}] {}", s.pid, persistence::describe(err));
    if (s.in_flight)
      reply(s.in_flight->command, err);
    for (auto& pc : s.queue)
      reply(pc, err);
    s.queue.clear();
    for (auto& rp : s.status_waiters)
      reply(rp, err);
    s.status_waiters.clear();
    for (auto& rp : s.drain_waiters)
      reply(rp, caf::unit);  // nothing of it is left to drain
    s.drain_waiters.clear();
    return err;
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    // Shutting down: answer everything still queued, then quit.
    auto& s = self->state;
    auto err = make_actor_error(actor_errc::stopping, "'" + s.pid + "' stopped");
    for (auto& pc : s.queue)
      reply(pc, err);
    s.queue.clear();
    self->quit(msg.reason);
  });
  if (start == activation_start::presume_new)
    start_presumed_new(self);
  else
    start_recovery(self);
  return {
    [self](command_envelope& cmd) -> caf::result<command_reply> {
      auto& s = self->state;
      ++s.received;
      s.last_active = self->clock().now();
      if (cmd.typed && !s.behavior->decides_typed(cmd.typed_tag))
        materialize_payload(cmd);
      auto rp = self->make_response_promise();
      auto delivery = cmd.delivery;
      if (s.queue.empty() && s.current == mode::ready) {
        // Nothing waits before it (R1 order holds): decide at once, without the queue.
        if (decide_one(self, {std::move(cmd), rp, delivery}))
          process(self);
        return rp;
      }
      s.queue.push_back({std::move(cmd), rp, delivery});
      process(self);
      return rp;
    },
    [self](write_outcome& out) {
      self->state.last_active = self->clock().now();
      on_write_outcome(self, out);
    },
    [self](recover_atom) { start_recovery(self); },
    [self](passivate_atom) {
      // The supervisor's idle check: it routed nothing here for passivate_after. Busy,
      // or active since (a write outcome): the supervisor checks again later.
      auto& s = self->state;
      if (!idle(s) || self->clock().now() - s.last_active < passivate_after(s))
        return;
      ask_to_passivate(self);
    },
    [self](stop_atom) {
      // The supervisor routed nothing since our passivation request: we are idle.
      self->state.ctx->log->debug("[{}] passivated", self->state.pid);
      self->quit();
    },
    [self](drain_atom) -> caf::result<caf::unit_t> {
      auto& s = self->state;
      if (idle(s))
        return caf::unit;
      auto rp = self->make_response_promise();
      s.drain_waiters.push_back(rp);
      return rp;
    },
    [self](status_atom) -> caf::result<instance_status> {
      auto& s = self->state;
      if (s.current != mode::recovering && !s.presumed_new)
        return status_of(s);
      auto rp = self->make_response_promise();
      s.status_waiters.push_back(rp);
      // A presumed state is no answer: its first write, in flight, proves it (answered
      // then), or the journal tells.
      if (s.presumed_new && !s.in_flight)
        start_recovery(self);
      return rp;
    },
  };
}

boost::json::value payload_of(const command_envelope& cmd) {
  if (cmd.typed && cmd.typed_encode)
    return cmd.typed_encode(cmd.typed.get());
  return cmd.payload;
}

void materialize_payload(command_envelope& cmd) {
  if (!cmd.typed)
    return;
  if (cmd.typed_encode)
    cmd.payload = cmd.typed_encode(cmd.typed.get());
  cmd.typed.reset();
  cmd.typed_tag = nullptr;
}

std::string persistence_id_of(std::string_view type, std::string_view id) {
  std::string out;
  out.reserve(type.size() + 1 + id.size());
  out.append(type).append("/").append(id);
  return out;
}

std::optional<std::pair<std::string, std::string>> split_persistence_id(std::string_view pid) {
  auto slash = pid.find('/');
  if (slash == std::string_view::npos)
    return std::nullopt;
  return std::pair<std::string, std::string>{std::string{pid.substr(0, slash)},
                                             std::string{pid.substr(slash + 1)}};
}

namespace {

/// The free list of instance_memory. Created once and never destroyed: an actor system
/// that outlives static destruction can still give its actors' memory back.
struct instance_free_list {
  std::mutex mutex;
  std::size_t block_bytes = 0;  ///< the size of the blocks kept (one actor type)
  std::vector<void*> blocks;
  std::size_t in_use = 0;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kept_at_most = 0;  // reused memory would hide use-after-free reports
#else
constexpr std::size_t kept_at_most = instance_memory::capacity;
#endif

instance_free_list& free_list() {
  static auto* list = [] {
    auto* l = new instance_free_list;
    l->blocks.reserve(kept_at_most);
    return l;
  }();
  return *list;
}

}  // namespace

void* instance_memory::take(std::size_t bytes) {
  auto& l = free_list();
  {
    std::lock_guard<std::mutex> guard{l.mutex};
    ++l.in_use;
    if (bytes == l.block_bytes && !l.blocks.empty()) {
      auto* block = l.blocks.back();
      l.blocks.pop_back();
      return block;
    }
  }
  return ::operator new(bytes);
}

void instance_memory::give_back(void* block, std::size_t bytes) noexcept {
  if (block == nullptr)
    return;
  auto& l = free_list();
  {
    std::lock_guard<std::mutex> guard{l.mutex};
    --l.in_use;
    if (l.block_bytes == 0)
      l.block_bytes = bytes;
    if (bytes == l.block_bytes && l.blocks.size() < kept_at_most) {
      l.blocks.push_back(block);  // reserved: never allocates
      return;
    }
  }
  ::operator delete(block, bytes);
}

std::size_t instance_memory::in_use() noexcept {
  auto& l = free_list();
  std::lock_guard<std::mutex> guard{l.mutex};
  return l.in_use;
}

}  // namespace longhaul::actors
