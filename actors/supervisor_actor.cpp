// The supervisor (see header). Passivation handshake: an idle entity reports how many
// commands it received; the supervisor stops it only if it routed exactly that many, so
// no command is ever sent to an activation that is about to stop (S1).
#include "actors/supervisor_actor.hpp"

#include "actors/actor_error.hpp"
#include "actors/persistent_entity_actor.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/skip.hpp>

#include <algorithm>
#include <chrono>
#include <vector>

namespace longhaul::actors {

namespace {

using self_ptr = caf::stateful_actor<supervisor_state>*;

/// Checks the address of a command; returns an error (nothing stored) or nothing.
caf::error check_address(const supervisor_state& st, const command_envelope& cmd) {
  if (st.types.find(cmd.entity_type) == st.types.end())
    return make_actor_error(actor_errc::unknown_entity_type,
                            "no entity type '" + cmd.entity_type + "' is registered");
  if (cmd.entity_id.empty())
    return make_actor_error(actor_errc::invalid_id,
                            "empty id for entity type '" + cmd.entity_type + "'");
  if (cmd.entity_id.size() > st.ctx->settings.max_id_bytes)
    return make_actor_error(actor_errc::invalid_id,
                            "id of " + std::to_string(cmd.entity_id.size())
                              + " bytes for entity type '" + cmd.entity_type + "' (limit "
                              + std::to_string(st.ctx->settings.max_id_bytes) + ")");
  return {};
}

void arm_idle_sweep(self_ptr self);

/// The live instance `type`/`id`, activated if there is none. `presume_new`: an
/// activation starts without reading the journal (activation_start::presume_new), as for
/// a command, unless the id is one of the remembered passivated ones with a stream; else
/// it recovers first.
supervisor_state::entry& activation(self_ptr self, const std::string& type,
                                    const std::string& id, bool presume_new) {
  auto& st = self->state;
  // The persistence id is built in a buffer the supervisor keeps, so routing to a live
  // instance allocates no string; only an activation copies it.
  auto& pid = st.pid_buffer;
  pid.assign(type).append("/").append(id);
  auto it = st.instances.find(pid);
  if (it != st.instances.end())
    return it->second;
  presume_new = presume_new && !st.stored_passivated.contains(pid);
  // A free recovery permit goes with the spawn, which saves each cold activation a
  // request and its answer; when none is free the instance asks and waits in line. An
  // activation presumed new reads nothing and needs none (it asks if it must recover).
  bool permit = !presume_new && st.waiting_for_permit.empty()
                && st.permit_holders.size() < st.ctx->settings.max_concurrent_recoveries;
  auto start = presume_new ? activation_start::presume_new
               : permit    ? activation_start::recover_with_permit
                           : activation_start::recover;
  auto child = self->spawn(persistent_entity_actor, st.ctx, st.types.at(type), pid,
                           caf::actor_addr{self->address()}, st.outbox, st.scheduler, start);
  if (permit)
    st.permit_holders.push_back(child.address());
  self->monitor(child);
  ++st.activations;
  auto& e = st.instances.emplace(pid, supervisor_state::entry{child, 0, {}}).first->second;
  e.slot = st.idle_order.insert(st.idle_order.end(), {&e, self->clock().now()});
  arm_idle_sweep(self);
  return e;
}

/// `e` was routed to now: it moves to the back of idle_order.
void touch(self_ptr self, supervisor_state::entry& e) {
  auto& order = self->state.idle_order;
  e.slot->since = self->clock().now();
  order.splice(order.end(), order, e.slot);
}

/// Forgets the live activation `it` (passivated or gone).
void forget(supervisor_state& st, std::unordered_map<std::string, supervisor_state::entry>::iterator it) {
  st.idle_order.erase(it->second.slot);
  st.instances.erase(it);
}

/// The idle check is sent at most this long after an instance's time has come.
caf::actor_clock::duration_type sweep_interval(const supervisor_state& st) {
  auto quarter = std::chrono::duration_cast<caf::actor_clock::duration_type>(
    st.ctx->settings.passivate_after / 4);
  return std::max(quarter, caf::actor_clock::duration_type{std::chrono::milliseconds{1}});
}

/// Arms the next idle sweep while there are live activations (passivation on).
void arm_idle_sweep(self_ptr self) {
  auto& st = self->state;
  if (st.sweep_armed || st.idle_order.empty() || st.ctx->settings.passivate_after.count() <= 0)
    return;
  st.sweep_armed = true;
  self->delayed_send(self, sweep_interval(st), idle_sweep_atom::value);
}

/// Sends the idle check to every activation routed nothing (and not checked) for
/// passivate_after. A checked instance moves to the back: if it is busy or was active
/// more recently than the supervisor saw (a write outcome), it is checked again later.
void idle_sweep(self_ptr self) {
  auto& st = self->state;
  st.sweep_armed = false;
  auto now = self->clock().now();
  auto after = std::chrono::duration_cast<caf::actor_clock::duration_type>(
    st.ctx->settings.passivate_after);
  auto& order = st.idle_order;
  // Each instance is checked at most once per sweep: those moved to the back stop it.
  for (auto n = order.size(); n > 0 && order.front().since + after <= now; --n) {
    auto slot = order.begin();
    self->send(slot->instance->actor, passivate_atom::value);
    slot->since = now;
    order.splice(order.end(), order, slot);
  }
  arm_idle_sweep(self);
}

void grant_permits(self_ptr self) {
  auto& st = self->state;
  while (!st.waiting_for_permit.empty()
         && st.permit_holders.size() < st.ctx->settings.max_concurrent_recoveries) {
    auto next = std::move(st.waiting_for_permit.front());
    st.waiting_for_permit.pop_front();
    st.permit_holders.push_back(next.requester);
    next.promise.deliver(caf::unit);
  }
}

/// Takes back the recovery permit of `holder` (finished, died or stopped) and of any
/// request of it still waiting, then hands the permits on. A permit is counted per holder,
/// so a second release of the same one (permit_done, then its down message) changes
/// nothing, and an instance that dies holding one does not keep it forever.
void release_permits_of(self_ptr self, const caf::actor_addr& holder) {
  auto& st = self->state;
  auto& holders = st.permit_holders;
  if (auto it = std::find(holders.begin(), holders.end(), holder); it != holders.end())
    holders.erase(it);
  auto& waiting = st.waiting_for_permit;
  waiting.erase(std::remove_if(waiting.begin(), waiting.end(),
                               [&](const auto& w) { return w.requester == holder; }),
                waiting.end());
  grant_permits(self);
}

/// State of a drain helper: drains the instances that were live when the drain began,
/// with at most `drain_window` requests in flight. CAF 0.17 keeps an actor's pending
/// responses in a flat map searched linearly, so one actor awaiting all n instances costs
/// O(n^2): with 100,000 instances the supervisor's own drain did not finish in 5 minutes.
struct drain_helper_state {
  static inline const char* name = "longhaul.drain";
  std::vector<caf::actor> targets;
  std::size_t next = 0;
  std::size_t pending = 0;
  caf::response_promise done;
};

constexpr std::size_t drain_window = 64;

using drain_self_ptr = caf::stateful_actor<drain_helper_state>*;

void drain_more(drain_self_ptr self) {
  auto& st = self->state;
  while (st.pending < drain_window && st.next < st.targets.size()) {
    ++st.pending;
    // An instance that stopped meanwhile answers with an error: drained as well.
    self->request(st.targets[st.next++], caf::infinite, drain_atom::value)
      .then([self]() { --self->state.pending; drain_more(self); },
            [self](caf::error&) { --self->state.pending; drain_more(self); });
  }
  if (st.pending == 0 && st.next == st.targets.size()) {
    st.done.deliver(caf::unit);
    self->quit();
  }
}

caf::behavior drain_helper(drain_self_ptr self, std::vector<caf::actor> targets) {
  self->state.targets = std::move(targets);
  return {
    [self](drain_atom) -> caf::result<caf::unit_t> {
      auto rp = self->make_response_promise();
      self->state.done = rp;
      drain_more(self);
      return rp;
    },
  };
}

/// The supervisor's behavior once it knows the outbox dispatcher and the scheduler.
caf::behavior running_behavior(caf::stateful_actor<supervisor_state>* self) {
  return {
    [self](command_envelope& cmd) -> caf::result<command_reply> {
      auto& st = self->state;
      if (auto err = check_address(st, cmd)) {
        if (cmd.delivery == 0)
          return err;
        // An outbox delivery (an asynchronous message): answered by its number.
        auto rp = self->make_response_promise();
        rp.deliver(delivery_answer{cmd.delivery, caf::expected<command_reply>{std::move(err)}});
        return rp;
      }
      // A timer firing is for a stored instance; any other command may well be a new
      // instance's first (the activation finds out with its first write).
      auto& e = activation(self, cmd.entity_type, cmd.entity_id, cmd.timer_name.empty());
      ++e.routed;
      touch(self, e);
      auto rp = self->make_response_promise();
      rp.delegate(e.actor, std::move(cmd));
      return rp;
    },
    [self](set_outbox_atom, caf::actor& outbox, caf::actor& scheduler) {
      self->state.outbox = std::move(outbox);
      self->state.scheduler = std::move(scheduler);
    },
    [self](passivate_atom, const std::string& pid, std::uint64_t received, bool has_stream) {
      auto& st = self->state;
      auto it = st.instances.find(pid);
      if (it == st.instances.end() || it->second.actor.address() != self->current_sender())
        return;
      if (it->second.routed != received)
        return;  // S1: a command is on its way; the entity will ask again when idle
      self->demonitor(it->second.actor);
      self->send(it->second.actor, stop_atom::value);
      auto addr = it->second.actor.address();
      forget(st, it);
      ++st.passivations;
      if (has_stream)
        st.stored_passivated.remember(pid);
      release_permits_of(self, addr);  // an idle instance holds none; never leak one
    },
    [self](permit_atom) -> caf::result<caf::unit_t> {
      auto& st = self->state;
      // Before make_response_promise(), which takes the sender out of the message.
      auto requester = caf::actor_cast<caf::actor_addr>(self->current_sender());
      auto rp = self->make_response_promise();
      st.waiting_for_permit.push_back({std::move(requester), rp});
      grant_permits(self);
      return rp;
    },
    [self](permit_done_atom) {
      release_permits_of(self, caf::actor_cast<caf::actor_addr>(self->current_sender()));
    },
    [self](drain_atom) -> caf::result<caf::unit_t> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      if (st.instances.empty()) {
        rp.deliver(caf::unit);
        return rp;
      }
      std::vector<caf::actor> targets;
      targets.reserve(st.instances.size());
      for (auto& [pid, e] : st.instances)
        targets.push_back(e.actor);
      // The helper answers the requester directly (see drain_helper_state).
      rp.delegate(self->spawn(drain_helper, std::move(targets)), drain_atom::value);
      return rp;
    },
    [self](resume_atom, const std::string& type, const std::string& id)
      -> caf::result<command_reply> {
      command_envelope cmd;
      cmd.entity_type = type;
      cmd.entity_id = id;
      cmd.name = resume_command;
      if (auto err = check_address(self->state, cmd))
        return err;
      auto& e = activation(self, type, id, false);
      ++e.routed;
      touch(self, e);
      auto rp = self->make_response_promise();
      rp.delegate(e.actor, std::move(cmd));
      return rp;
    },
    [self](status_atom, const std::string& type, const std::string& id)
      -> caf::result<instance_status> {
      command_envelope probe;
      probe.entity_type = type;
      probe.entity_id = id;
      if (auto err = check_address(self->state, probe))
        return err;
      auto& e = activation(self, type, id, false);
      auto rp = self->make_response_promise();
      rp.delegate(e.actor, status_atom::value);
      return rp;
    },
    [self](count_atom) -> std::uint64_t { return self->state.instances.size(); },
    [self](idle_sweep_atom) { idle_sweep(self); },
  };
}

}  // namespace

caf::behavior supervisor_actor(
  caf::stateful_actor<supervisor_state>* self, std::shared_ptr<const entity_context> ctx,
  std::unordered_map<std::string, std::shared_ptr<const entity_behavior>> types) {
  self->state.stored_passivated = remembered_streams{ctx->settings.remembered_streams};
  self->state.ctx = std::move(ctx);
  self->state.types = std::move(types);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    for (auto it = st.instances.begin(); it != st.instances.end(); ++it) {
      if (it->second.actor.address() == msg.source) {
        // An activation died without a passivation handshake (a bug or a crash in user
        // code outside decide): forget it; the next command starts a fresh recovery.
        st.ctx->log->error("[{}] instance actor terminated: {}", it->first,
                           persistence::describe(msg.reason));
        // Outbox deliveries are asynchronous messages: CAF drops those left in its mailbox
        // (a request would bounce). The dispatcher sends them again.
        if (st.outbox)
          self->send(st.outbox, instance_down_atom::value, it->first);
        forget(st, it);
        release_permits_of(self, msg.source);
        return;
      }
    }
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    auto& st = self->state;
    for (auto& [pid, e] : st.instances)
      self->send_exit(e.actor, msg.reason);
    st.instances.clear();
    st.idle_order.clear();
    for (auto& w : st.waiting_for_permit)
      w.promise.deliver(make_actor_error(actor_errc::stopping, "runtime stopping"));
    st.waiting_for_permit.clear();
    self->quit(msg.reason);
  });
  // Until the runtime hands over the outbox dispatcher and the scheduler, every other
  // message stays in the mailbox (skip): an instance activated earlier would never get
  // the scheduler's handle, so its timer changes would go unreported until the next
  // window refill, and its outbox nudges would be lost (a start-up race).
  self->set_default_handler(caf::skip);
  return {
    [self](set_outbox_atom, caf::actor& outbox, caf::actor& scheduler) {
      self->state.outbox = std::move(outbox);
      self->state.scheduler = std::move(scheduler);
      self->set_default_handler(caf::print_and_drop);
      self->become(running_behavior(self));
    },
  };
}

}  // namespace longhaul::actors
