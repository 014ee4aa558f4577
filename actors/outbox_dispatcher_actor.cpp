// The outbox dispatcher (see header). A row is removed from the outbox only after every
// receiver answered (stored its effects with the message id, or reported it a duplicate)
// or the row was dead-lettered (O1). Until then it is redelivered after a crash or a
// retryable failure, and receivers deduplicate by message id (JOURNAL.md I7).
#include "actors/outbox_dispatcher_actor.hpp"

#include "actors/actor_error.hpp"
#include "persistence/persistence_error.hpp"

#include <boost/json.hpp>
#include <caf/event_based_actor.hpp>

#include <cstddef>
#include <optional>

namespace longhaul::actors {

namespace {

using self_ptr = caf::stateful_actor<outbox_dispatcher_state>*;

constexpr auto delivery_timeout = std::chrono::seconds{60};
/// How often overdue deliveries are looked for (timeouts fire up to this much late).
constexpr auto deadline_sweep_interval = std::chrono::seconds{1};
/// Local message: time to look for overdue deliveries.
using outbox_sweep_atom = caf::atom_constant<caf::atom("lh_osweep")>;

/// Polls as soon as the mailbox allows (one queued poll serves many nudges).
void request_poll(self_ptr self) {
  auto& st = self->state;
  if (st.poll_queued)
    return;
  st.poll_queued = true;
  self->send(self, outbox_poll_atom::value);
}

/// The periodic poll: a safety net for retries and missed nudges.
void arm_tick(self_ptr self) {
  auto& st = self->state;
  if (st.tick_armed)
    return;
  st.tick_armed = true;
  self->delayed_send(self, st.ctx->settings.outbox_poll_interval, outbox_tick_atom::value);
}

void arm_flush(self_ptr self) {
  auto& st = self->state;
  if (st.flush_armed)
    return;
  st.flush_armed = true;
  self->send(self, outbox_flush_atom::value);
}

/// Records a dead letter. A row dead-lettered before a crash, and delivered again because
/// it was not removed yet, gets the same answer (JOURNAL.md I7) and is stored once (I15).
void dead_letter(self_ptr self, const persistence::outbox_record& row, std::string reason) {
  auto& st = self->state;
  ++st.dead_letters;
  st.ctx->log->warn("[{}] dead letter {} to {}: {}", row.source_persistence_id, row.message_id,
                    row.destination, reason);
  persistence::dead_letter_record rec;
  rec.message_id = row.message_id;
  rec.source_persistence_id = row.source_persistence_id;
  rec.destination = row.destination;
  rec.payload_json = row.payload_json;
  rec.reason = std::move(reason);
  if (auto err = st.ctx->journal->record_dead_letter(std::move(rec)))
    st.ctx->log->error("recording dead letter {} failed: {}", row.message_id,
                       persistence::describe(err));
}

void finish(self_ptr self, std::uint64_t seq) {
  auto& st = self->state;
  auto it = st.in_flight.find(seq);
  if (it == st.in_flight.end() || it->second.outstanding > 0)
    return;
  if (it->second.retry) {
    // O1: not removed; delivered again later (receivers drop duplicates).
    st.retry_from = st.retry_from == 0 ? seq : std::min(st.retry_from, seq);
    arm_tick(self);
  } else {
    st.delivered.push_back(seq);
    arm_flush(self);
  }
  st.in_flight.erase(it);
  if (st.in_flight.size() < st.ctx->settings.outbox_max_in_flight / 2)
    request_poll(self);
}

void deliver(self_ptr self, const persistence::outbox_record& row, command_envelope cmd);

/// Tells the sender that its command was dead-lettered (when it asked to be told), as part
/// of the same outbox row's delivery: the row is removed only after the sender stored it.
void notify_sender(self_ptr self, const persistence::outbox_record& row, const std::string& tag,
                   const std::string& reason) {
  auto source = split_persistence_id(row.source_persistence_id);
  if (!source)
    return;
  command_envelope cmd;
  cmd.entity_type = std::move(source->first);
  cmd.entity_id = std::move(source->second);
  cmd.name = "longhaul.delivery_failed";
  boost::json::object o;
  o["tag"] = tag;
  o["reason"] = reason;
  o["destination"] = row.destination;
  cmd.payload = std::move(o);
  cmd.message_id = row.message_id + "!failed";
  deliver(self, row, std::move(cmd));
}

/// The "on_failure" tag of a stored outbox payload, if any.
std::string failure_tag_of(const persistence::outbox_record& row) {
  boost::json::error_code ec;
  auto doc = boost::json::parse(row.payload_json, ec);
  if (ec || !doc.is_object() || !doc.as_object().contains("on_failure")
      || !doc.at("on_failure").is_string())
    return {};
  return std::string{doc.at("on_failure").as_string()};
}

/// A delivery of the row `seq` failed (an error answer, or no answer within
/// delivery_timeout). The row stays in `in_flight` while any of its deliveries is pending.
void on_delivery_error(self_ptr self, std::uint64_t seq, bool is_notification,
                       const caf::error& err) {
  auto& d = self->state.in_flight[seq];
  const auto& row = d.row;
  --d.outstanding;
  if (is_permanent(err)) {
    auto reason = persistence::describe(err);
    dead_letter(self, row, reason);
    auto tag = failure_tag_of(row);
    if (!tag.empty() && !is_notification && row.destination.rfind("event:", 0) != 0)
      notify_sender(self, row, tag, reason);
  } else {
    d.retry = true;
  }
  finish(self, seq);
}

/// Times out overdue deliveries; re-armed while any delivery is pending.
void arm_sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweep_armed || st.deadlines.empty())
    return;
  st.sweep_armed = true;
  self->delayed_send(self, deadline_sweep_interval, outbox_sweep_atom::value);
}

/// A delivery is an asynchronous message with a number (command_envelope::delivery), and
/// the receiver answers with a delivery_answer once its write is durable. Sent as CAF
/// requests, deliveries cost time in proportion to the deliveries in flight (up to
/// outbox_max_in_flight): CAF 0.17 keeps an actor's pending responses in a flat map
/// searched linearly (see the supervisor's drain helper), about 6,700 instructions per
/// delivery in the retail benchmark, a third of this actor's work. (A lower
/// outbox_max_in_flight, 250, saved about 5% of the benchmark's CPU but throttled a slow
/// disk: at 5 ms per fsync 1,530 instead of 2,380 orders/s, because deliveries wait for the
/// receivers' commits.) What CAF did besides, answering a request whose receiver died with
/// an error, comes from the supervisor instead: it reports an instance actor that
/// terminated (instance_down_atom), and what was routed to it is sent again.
void deliver(self_ptr self, const persistence::outbox_record& row, command_envelope cmd) {
  auto& st = self->state;
  auto sup = caf::actor_cast<caf::actor>(st.supervisor);
  if (!sup) {
    st.in_flight[row.outbox_seq].retry = true;
    return;
  }
  ++st.in_flight[row.outbox_seq].outstanding;
  auto seq = row.outbox_seq;
  bool is_notification = cmd.name == "longhaul.delivery_failed";
  // No CAF request (see above) and no CAF timeout (see request_deadlines.hpp): the
  // delivery is numbered by its deadline's token, and its answer names that number. The
  // row waits in `in_flight` (one copy per row, not two per delivery).
  auto token = st.deadlines.next_token();
  auto added = st.deadlines.add(self->clock().now() + delivery_timeout,
                                [self, token, seq, is_notification] {
                                  self->state.awaiting.erase(token);
                                  on_delivery_error(self, seq, is_notification,
                                                    caf::make_error(caf::sec::request_timeout));
                                });
  (void) added;  // == token
  st.awaiting.emplace(token, outbox_dispatcher_state::awaiting_answer{
                               seq, is_notification,
                               persistence_id_of(cmd.entity_type, cmd.entity_id)});
  arm_sweep(self);
  cmd.delivery = token;
  self->send(sup, std::move(cmd));
}

/// Delivery number `token`, no longer awaited from here on; nothing if it was not awaited
/// any more (answered, timed out or sent again).
std::optional<outbox_dispatcher_state::awaiting_answer> take_awaiting(self_ptr self,
                                                                      std::uint64_t token) {
  auto& st = self->state;
  auto it = st.awaiting.find(token);
  if (it == st.awaiting.end())
    return std::nullopt;
  auto a = std::move(it->second);
  st.awaiting.erase(it);
  if (!st.deadlines.settle(token))
    return std::nullopt;
  return a;
}

/// The answer to delivery number `a.delivery`, unless it timed out or was sent again.
void on_answer(self_ptr self, delivery_answer& a) {
  auto awaited = take_awaiting(self, a.delivery);
  if (!awaited)
    return;
  if (!a.outcome) {
    on_delivery_error(self, awaited->seq, awaited->is_notification, a.outcome.error());
    return;
  }
  --self->state.in_flight[awaited->seq].outstanding;
  finish(self, awaited->seq);
}

/// The instance actor of `receiver` terminated without passivating: what was routed to it
/// and not answered may have been dropped with its mailbox, so it is sent again (as a
/// request bounced by CAF would be). Should a delivery have been routed to the next
/// actor of that id instead, the receiver drops the second copy by its message id.
void on_receiver_down(self_ptr self, const std::string& receiver) {
  auto& st = self->state;
  std::vector<std::uint64_t> lost;
  for (const auto& [token, a] : st.awaiting)
    if (a.receiver == receiver)
      lost.push_back(token);
  for (auto token : lost)
    if (auto awaited = take_awaiting(self, token))
      on_delivery_error(self, awaited->seq, awaited->is_notification,
                        caf::make_error(caf::sec::request_receiver_down));
}

/// The memory of one dispatched message's JSON: a monotonic arena whose first block is
/// inside it. Parsing a typical message costs one allocation (this object, below the
/// 1 KiB up to which glibc's malloc stays on its fast paths) instead of one per key and
/// per longer string; a bigger message continues in blocks from the heap. Everything is
/// freed at once with the last value using it: the command, on the receiver's thread.
/// An arena must serve one command only: the command travels in CAF messages, so one
/// thread at a time allocates from it (copies constructed from its values stay in it).
class message_arena final : public boost::json::memory_resource {
public:
  message_arena() : arena_(first_block_, sizeof(first_block_)) {}

private:
  void* do_allocate(std::size_t n, std::size_t align) override {
    return arena_.allocate(n, align);
  }
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  alignas(std::max_align_t) unsigned char first_block_[704];
  boost::json::monotonic_resource arena_;  ///< after first_block_, which it starts with
};

/// A stored message ({"name":..,"payload":..}) split, its payload in a message_arena.
struct stored_message {
  std::string name;
  boost::json::value payload;
};

std::optional<stored_message> split_message(const std::string& text) {
  boost::json::error_code ec;
  auto doc = boost::json::parse(text, ec, boost::json::make_shared_resource<message_arena>());
  if (ec || !doc.is_object())
    return std::nullopt;
  auto& o = doc.as_object();
  auto* name = o.if_contains("name");
  if (name == nullptr || !name->is_string())
    return std::nullopt;
  stored_message out{std::string{name->as_string()}, boost::json::value(doc.storage())};
  if (auto* p = o.if_contains("payload"))
    out.payload = std::move(*p);  // the same arena: moved, not copied
  return out;
}

/// A command carrying `payload` as it is (constructed from it: assigning a value from
/// another arena would copy it).
command_envelope command_for(std::string type, std::string id, std::string name,
                             boost::json::value&& payload, std::string message_id) {
  return command_envelope{.entity_type = std::move(type),
                          .entity_id = std::move(id),
                          .name = std::move(name),
                          .payload = std::move(payload),
                          .message_id = std::move(message_id),
                          .late_by_ms = 0,
                          .timer_name = {},
                          .timer_due_ms = 0,
                          .typed = nullptr,
                          .typed_tag = nullptr,
                          .typed_encode = nullptr,
                          .delivery = 0};
}

/// Splits a stored message ({"name":..,"payload":..}) and dispatches it.
void dispatch(self_ptr self, persistence::outbox_record&& polled) {
  auto& st = self->state;
  auto seq = polled.outbox_seq;
  const auto& row = (st.in_flight[seq].row = std::move(polled));
  auto message = split_message(row.payload_json);
  if (!message) {
    dead_letter(self, row, "stored outbox payload is not {name, payload}");
    finish(self, seq);
    return;
  }
  auto& name = message->name;
  auto& payload = message->payload;
  if (row.destination.rfind("event:", 0) == 0) {
    auto subs = st.subscriptions.find(name);
    if (subs == st.subscriptions.end() || subs->second.empty()) {
      dead_letter(self, row, "no subscriber for event '" + name + "'");
    } else {
      const auto& all = subs->second;
      for (std::size_t i = 0; i < all.size(); ++i) {
        const auto& sub = all[i];
        auto id = sub.correlate(payload);
        if (!id) {
          dead_letter(self, row, "subscriber '" + sub.entity_type
                                   + "' cannot correlate: " + persistence::describe(id.error()));
          continue;
        }
        // The last subscriber takes the payload; the others get copies on the heap, so
        // that no two receivers (on two threads) ever allocate from one arena.
        auto mine = i + 1 == all.size() ? std::move(payload)
                                        : boost::json::value(payload, boost::json::storage_ptr{});
        deliver(self, row,
                command_for(sub.entity_type, std::move(*id), name, std::move(mine),
                            row.message_id + "@" + sub.entity_type));
      }
    }
  } else {
    auto target = split_persistence_id(row.destination);
    if (!target) {
      dead_letter(self, row, "destination '" + row.destination + "' is not type/id");
    } else {
      deliver(self, row,
              command_for(std::move(target->first), std::move(target->second),
                          std::move(name), std::move(payload), row.message_id));
    }
  }
  finish(self, seq);
}

void poll(self_ptr self) {
  auto& st = self->state;
  if (st.retry_from != 0) {
    st.cursor = std::min(st.cursor, st.retry_from - 1);
    st.retry_from = 0;
  }
  auto room = st.ctx->settings.outbox_max_in_flight;
  room = room > st.in_flight.size() ? room - st.in_flight.size() : 0;
  if (room == 0)
    return;  // flow control: finish() polls again when deliveries complete
  auto rows = st.ctx->journal->outbox_pending(st.cursor, room);
  if (!rows) {
    st.ctx->log->error("reading the outbox failed: {}", persistence::describe(rows.error()));
    arm_tick(self);
    return;
  }
  for (auto& row : *rows) {
    st.cursor = std::max(st.cursor, row.outbox_seq);
    if (st.in_flight.count(row.outbox_seq) == 0)
      dispatch(self, std::move(row));
  }
  arm_tick(self);
}

}  // namespace

caf::behavior outbox_dispatcher_actor(caf::stateful_actor<outbox_dispatcher_state>* self,
                                      std::shared_ptr<const entity_context> ctx,
                                      caf::actor_addr supervisor, subscription_table subs) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.supervisor = std::move(supervisor);
  st.subscriptions = std::move(subs);
  request_poll(self);  // rows left from before a crash are delivered first
  return {
    [self](delivery_answer& a) { on_answer(self, a); },
    [self](instance_down_atom, const std::string& receiver) { on_receiver_down(self, receiver); },
    [self](outbox_nudge_atom) { request_poll(self); },
    [self](outbox_poll_atom) {
      self->state.poll_queued = false;
      poll(self);
    },
    [self](outbox_tick_atom) {
      self->state.tick_armed = false;
      poll(self);
    },
    [self](outbox_sweep_atom) {
      auto& s = self->state;
      s.sweep_armed = false;
      s.deadlines.sweep(self->clock().now());
      arm_sweep(self);
    },
    [self](outbox_flush_atom) {
      auto& s = self->state;
      s.flush_armed = false;
      if (s.delivered.empty())
        return;
      auto seqs = std::move(s.delivered);
      s.delivered.clear();
      // Not awaited: the cursor already skips these rows, so the next poll need not wait
      // for their removal's commit (which, once an fsync, held every delivery up).
      auto n = seqs.size();
      s.ctx->journal->outbox_delivered_async(
        std::move(seqs), [log = s.ctx->log, n](caf::error err) {
          // Kept in the outbox: delivered again later, and dropped by the receivers.
          if (err)
            log->warn("removing {} delivered outbox rows failed: {}", n,
                      persistence::describe(err));
        });
    },
  };
}

}  // namespace longhaul::actors
