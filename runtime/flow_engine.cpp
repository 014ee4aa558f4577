// The flow engine (see flow_engine.hpp). A decision runs the definition from the current
// position until it reaches a wait or an end, emitting one event per transition; apply()
// replays those events, so a recovered instance stands exactly where it stopped (F1).
// Every command a step sends and every compensation is an outbox message in the same
// atomic write as the event recording it: each is sent exactly once (F2).
#include "runtime/flow_engine.hpp"

#include "actors/actor_error.hpp"
#include "persistence/persistence_error.hpp"

#include <boost/json.hpp>

#include <cmath>
#include <map>
#include <optional>

namespace longhaul {

namespace {

namespace json = boost::json;
using actors::actor_errc;
using actors::make_actor_error;

// -- data paths ----------------------------------------------------------------------

/// The value at dotted `path` ("customer.id") in `root`, or nullptr.
const json::value* lookup(const json::object& root, std::string_view path) {
  const json::object* obj = &root;
  while (true) {
    auto dot = path.find('.');
    auto part = path.substr(0, dot);
    auto it = obj->find(part);
    if (it == obj->end())
      return nullptr;
    if (dot == std::string_view::npos)
      return &it->value();
    if (!it->value().is_object())
      return nullptr;
    obj = &it->value().as_object();
    path = path.substr(dot + 1);
  }
}

void assign(json::object& root, std::string_view path, json::value v) {
  json::object* obj = &root;
  while (true) {
    auto dot = path.find('.');
    if (dot == std::string_view::npos) {
      (*obj)[path] = std::move(v);
      return;
    }
    auto& child = (*obj)[path.substr(0, dot)];
    if (!child.is_object())
      child = json::object{};
    obj = &child.as_object();
    path = path.substr(dot + 1);
  }
}

/// Replaces "$path" strings in `tmpl` by flow data; fails naming the missing field.
caf::expected<json::value> fill(const json::value& tmpl, const json::object& data) {
  if (tmpl.is_string()) {
    auto s = std::string_view{tmpl.as_string()};
    if (s.size() > 1 && s[0] == '$') {
      auto* v = lookup(data, s.substr(1));
      if (v == nullptr)
        return make_actor_error(actor_errc::rejected,
                                "flow data has no field '" + std::string{s.substr(1)} + "'");
      return *v;
    }
    return tmpl;
  }
  if (tmpl.is_object()) {
    json::object out;
    for (const auto& [k, v] : tmpl.as_object()) {
      auto filled = fill(v, data);
      if (!filled)
        return filled.error();
      out[k] = std::move(*filled);
    }
    return out;
  }
  if (tmpl.is_array()) {
    json::array out;
    for (const auto& v : tmpl.as_array()) {
      auto filled = fill(v, data);
      if (!filled)
        return filled.error();
      out.push_back(std::move(*filled));
    }
    return out;
  }
  return tmpl;
}

std::string id_text(const json::value& v) {
  if (v.is_string())
    return std::string{v.as_string()};
  return json::serialize(v);
}

bool compare(const json::value* actual, const std::string& op, const json::value& expected) {
  if (op == "exists")
    return actual != nullptr;
  if (op == "missing")
    return actual == nullptr;
  if (actual == nullptr)
    return false;
  if (op == "==")
    return *actual == expected;
  if (op == "!=")
    return *actual != expected;
  if (actual->is_number() && expected.is_number()) {
    auto a = actual->to_number<double>();
    auto b = expected.to_number<double>();
    return op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b;
  }
  if (actual->is_string() && expected.is_string()) {
    auto a = std::string_view{actual->as_string()};
    auto b = std::string_view{expected.as_string()};
    return op == "<" ? a < b : op == "<=" ? a <= b : op == ">" ? a > b : a >= b;
  }
  return false;
}

// -- instance state ------------------------------------------------------------------

struct buffered_event {
  std::string event;
  json::object payload;
  persistence::time_ms expires_at = 0;
};

struct completed_send {
  std::string step;
  std::optional<actors::outgoing_command> compensation;  ///< resolved when it was sent
};

/// State of one flow instance; changed only by apply_event (F1).
struct flow_state final : actors::entity_state {
  bool started = false;
  std::string status = "not_started";
  std::string position;
  json::object data;
  std::vector<std::string> executed;
  std::vector<completed_send> completed;
  std::vector<std::string> compensated;
  std::optional<std::string> waiting_for;
  persistence::time_ms deadline = 0;
  std::vector<buffered_event> buffer;
  std::string reason;
};

json::value command_to_json(const actors::outgoing_command& c) {
  return json::object{{"entity_type", c.entity_type},
                      {"entity_id", c.entity_id},
                      {"command", c.name},
                      {"payload", c.payload}};
}

actors::outgoing_command command_from_json(const json::object& o) {
  actors::outgoing_command c;
  c.entity_type = std::string{o.at("entity_type").as_string()};
  c.entity_id = std::string{o.at("entity_id").as_string()};
  c.name = std::string{o.at("command").as_string()};
  c.payload = o.at("payload");
  return c;
}

std::string str(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string{it->value().as_string()}
                                                  : std::string{};
}

std::int64_t num(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_number() ? it->value().to_number<std::int64_t>() : 0;
}

/// The instance enters step `step`.
void enter_step(flow_state& st, std::string step) {
  st.position = std::move(step);
  st.executed.push_back(st.position);
  st.status = "running";
  st.waiting_for.reset();
  st.deadline = 0;
}

/// Applies one flow event (F1). Never fails on events this engine wrote.
void apply_event(flow_state& st, std::string_view name, const json::object& p) {
  // The first event of a send, wait or end step enters it ("entered": true, see
  // run::emit_object); flow.step_entered does so for decide steps and where another
  // event came first. Before flow.ended, so that an ended flow has no position.
  if (auto it = p.find("entered"); it != p.end() && it->value().is_bool()
                                   && it->value().as_bool())
    enter_step(st, str(p, "step"));
  if (name == "flow.started") {
    st.started = true;
    st.status = "running";
    if (auto it = p.find("data"); it != p.end() && it->value().is_object())
      st.data = it->value().as_object();
  } else if (name == "flow.step_entered") {
    enter_step(st, str(p, "step"));
  } else if (name == "flow.command_sent") {
    if (num(p, "attempt") <= 1) {
      completed_send c{str(p, "step"), std::nullopt};
      if (auto it = p.find("compensation"); it != p.end() && it->value().is_object())
        c.compensation = command_from_json(it->value().as_object());
      st.completed.push_back(std::move(c));
    }
  } else if (name == "flow.waiting") {
    st.status = "waiting";
    st.waiting_for = str(p, "event");
    st.deadline = num(p, "deadline");
  } else if (name == "flow.event_consumed") {
    if (auto it = p.find("merged"); it != p.end() && it->value().is_object())
      for (const auto& [k, v] : it->value().as_object())
        assign(st.data, k, v);
    if (auto it = p.find("buffer_index"); it != p.end() && it->value().is_number()) {
      auto i = it->value().to_number<std::size_t>();
      if (i < st.buffer.size())
        st.buffer.erase(st.buffer.begin() + static_cast<std::ptrdiff_t>(i));
    }
    st.waiting_for.reset();
    st.deadline = 0;
    st.status = "running";
  } else if (name == "flow.event_buffered") {
    buffered_event b{str(p, "event"), {}, num(p, "expires_at")};
    if (auto it = p.find("payload"); it != p.end() && it->value().is_object())
      b.payload = it->value().as_object();
    st.buffer.push_back(std::move(b));
  } else if (name == "flow.buffer_expired") {
    auto n = std::min<std::size_t>(static_cast<std::size_t>(num(p, "count")), st.buffer.size());
    st.buffer.erase(st.buffer.begin(), st.buffer.begin() + static_cast<std::ptrdiff_t>(n));
  } else if (name == "flow.timed_out") {
    st.waiting_for.reset();
    st.deadline = 0;
    st.status = "running";
  } else if (name == "flow.compensation_sent") {
    st.compensated.push_back(str(p, "step"));
  } else if (name == "flow.ended") {
    st.status = str(p, "outcome");
    st.reason = str(p, "reason");
    st.position.clear();
    st.waiting_for.reset();
    st.deadline = 0;
  } else if (name == "flow.send_failed") {
    // Attempts exhausted: the command never took effect, so there is nothing to
    // compensate for this send (its latest one, if the step ran more than once).
    if (auto it = p.find("exhausted"); it != p.end() && it->value().is_bool()
                                       && it->value().as_bool()) {
      auto step = str(p, "step");
      for (auto c = st.completed.rbegin(); c != st.completed.rend(); ++c)
        if (c->step == step) {
          c->compensation.reset();
          break;
        }
    }
  }
  // flow.retry_scheduled is history only.
}

json::object encode(const flow_state& st) {
  json::array executed, completed, compensated, buffer;
  for (const auto& s : st.executed)
    executed.emplace_back(s);
  for (const auto& c : st.completed) {
    json::object o{{"step", c.step}};
    if (c.compensation)
      o["compensation"] = command_to_json(*c.compensation);
    completed.push_back(std::move(o));
  }
  for (const auto& s : st.compensated)
    compensated.emplace_back(s);
  for (const auto& b : st.buffer)
    buffer.push_back(json::object{{"event", b.event}, {"payload", b.payload},
                                  {"expires_at", b.expires_at}});
  json::object o{{"started", st.started},     {"status", st.status},
                 {"position", st.position},   {"data", st.data},
                 {"executed", executed},      {"completed", completed},
                 {"compensated", compensated}, {"deadline", st.deadline},
                 {"buffer", buffer},          {"reason", st.reason}};
  if (st.waiting_for)
    o["waiting_for"] = *st.waiting_for;
  return o;
}

flow_state decode(const json::object& o) {
  flow_state st;
  st.started = o.at("started").as_bool();
  st.status = str(o, "status");
  st.position = str(o, "position");
  st.data = o.at("data").as_object();
  for (const auto& s : o.at("executed").as_array())
    st.executed.emplace_back(s.as_string());
  for (const auto& c : o.at("completed").as_array()) {
    const auto& co = c.as_object();
    completed_send cs{str(co, "step"), std::nullopt};
    if (auto it = co.find("compensation"); it != co.end())
      cs.compensation = command_from_json(it->value().as_object());
    st.completed.push_back(std::move(cs));
  }
  for (const auto& s : o.at("compensated").as_array())
    st.compensated.emplace_back(s.as_string());
  st.deadline = num(o, "deadline");
  for (const auto& b : o.at("buffer").as_array()) {
    const auto& bo = b.as_object();
    st.buffer.push_back({str(bo, "event"), bo.at("payload").as_object(), num(bo, "expires_at")});
  }
  st.reason = str(o, "reason");
  if (auto it = o.find("waiting_for"); it != o.end() && it->value().is_string())
    st.waiting_for = std::string{it->value().as_string()};
  return st;
}

// -- the engine --------------------------------------------------------------------------

class flow_behavior final : public actors::entity_behavior {
public:
  flow_behavior(flow_definition def, std::shared_ptr<const actors::clock> clock)
    : def_(std::move(def)), clock_(std::move(clock)) {
    for (std::size_t i = 0; i < def_.steps.size(); ++i)
      index_.emplace(def_.steps[i].name, i);
    options_.max_failures = 3;
  }

  const std::string& type_name() const override { return def_.name; }
  const actors::entity_options& options() const override { return options_; }

  std::unique_ptr<actors::entity_state> initial_state() const override {
    return std::make_unique<flow_state>();
  }

  bool accepts(std::string_view name) const override {
    if (name == flow_start_command || name == flow_cancel_command || name == flow_timeout_command
        || name == flow_retry_command || name == delivery_failed_command
        || name == def_.trigger.event)
      return true;
    for (const auto& s : def_.steps)
      if (auto* w = std::get_if<wait_step>(&s.kind)) {
        if (w->event == name)
          return true;
        for (const auto& [ev, next] : w->alternatives)
          if (ev == name)
            return true;
      }
    return false;
  }

  caf::expected<actors::decision_record> decide(const actors::entity_state& s,
                                                const actors::command_envelope& cmd) const override;

  caf::error apply_stored(actors::entity_state& s,
                          const persistence::event_record& ev) const override {
    json::error_code ec;
    auto v = json::parse(ev.payload_json, ec);
    if (ec || !v.is_object())
      return make_actor_error(actor_errc::instance_failed,
                              "'" + ev.persistence_id + "' event " + std::to_string(ev.seq) + " '"
                                + ev.type + "': payload is not a JSON object");
    if (ev.type.rfind("flow.", 0) != 0)
      return make_actor_error(actor_errc::instance_failed,
                              "'" + ev.persistence_id + "' event " + std::to_string(ev.seq) + " '"
                                + ev.type + "': not a flow event");
    apply_event(static_cast<flow_state&>(s), ev.type, v.as_object());
    return {};
  }

  caf::expected<std::string> encode_state(const actors::entity_state& s) const override {
    return json::serialize(encode(static_cast<const flow_state&>(s)));
  }

  caf::expected<std::unique_ptr<actors::entity_state>>
  decode_state(std::string_view text) const override {
    try {
      auto v = json::parse(text);
      return std::unique_ptr<actors::entity_state>{std::make_unique<flow_state>(decode(v.as_object()))};
    } catch (const std::exception& e) {
      return make_actor_error(actor_errc::instance_failed,
                              "flow '" + def_.name + "' snapshot does not decode: " + e.what());
    }
  }

  const flow_definition& definition() const noexcept { return def_; }
  const flow_step& step(const std::string& name) const { return def_.steps[index_.at(name)]; }

private:
  flow_definition def_;
  std::shared_ptr<const actors::clock> clock_;
  std::map<std::string, std::size_t> index_;
  actors::entity_options options_;
};

/// One decision in progress: a working copy of the state plus what the decision will
/// store. Each emitted event is applied to the copy at once so later steps see it.
class run {
public:
  run(const flow_behavior& b, const flow_state& st, std::string id, persistence::time_ms now)
    : b_(b), st_(st), id_(std::move(id)), now_(now) {}

  /// Emits the event `name` with the payload `fields`, built in this decision's arena.
  void emit(std::string name,
            std::initializer_list<std::pair<json::string_view, json::value_ref>> fields) {
    emit_object(std::move(name), json::object(fields, arena()));
  }

  /// Emits the event `name` with `payload` (best built in arena()). A send, wait or end
  /// step being entered (entering_) is recorded by its own first event, flow.command_sent,
  /// flow.waiting, flow.event_consumed or flow.ended, which then carries "entered": true:
  /// one event fewer per step than a flow.step_entered before it. Any other event comes
  /// first (a failed send ending the flow, expired early events, the compensations of an
  /// end step): flow.step_entered goes ahead.
  void emit_object(std::string name, json::object payload) {
    if (entering_) {
      auto step = std::move(*entering_);
      entering_.reset();
      if (enters_with(name) && str(payload, "step") == step)
        payload["entered"] = true;
      else
        emit("flow.step_entered", {{"step", step}});
    }
    apply_event(st_, name, payload);
    rec_.events.push_back({std::move(name), 1, json::serialize(payload), {b_.type_name()}});
  }

  /// Events that can enter the step they name.
  static bool enters_with(std::string_view name) {
    return name == "flow.command_sent" || name == "flow.waiting" || name == "flow.event_consumed"
           || name == "flow.ended";
  }

  /// Storage for JSON that lives only while the decision is made (event payloads until
  /// they are serialized): one stack buffer instead of a heap allocation per field.
  /// apply_event copies what it keeps into the state's own storage (assignments in
  /// Boost.JSON copy into the target's storage), so nothing outlives the decision here.
  json::storage_ptr arena() { return &arena_; }

  /// Runs steps from `from` until a wait or an end (F1, F2).
  void from(std::string step_name) {
    for (int guard = 0; guard < 10000; ++guard) {
      const auto& step = b_.step(step_name);
      if (!std::holds_alternative<decide_step>(step.kind))
        entering_ = step.name;  // recorded by the step's first event (emit_object)
      else
        emit("flow.step_entered", {{"step", step.name}});
      std::optional<std::string> next = std::visit(
        [&](const auto& k) -> std::optional<std::string> { return execute(step, k); }, step.kind);
      if (!next)
        return;
      step_name = std::move(*next);
    }
    end(flow_outcome::failed, "step limit reached (a loop without a wait?)", true, {});
  }

  /// Ends the flow: compensations of completed steps in reverse order (each exactly
  /// once, F2), an optional published event, then the end itself. `end_step` names the
  /// end step that ends it (flow.ended then names it and can enter it), if one does.
  void end(flow_outcome outcome, std::string reason, bool compensate,
           const std::optional<std::string>& publish_event,
           const std::string* end_step = nullptr) {
    if (compensate) {
      for (auto it = st_.completed.rbegin(); it != st_.completed.rend(); ++it) {
        if (!it->compensation)
          continue;
        if (std::find(st_.compensated.begin(), st_.compensated.end(), it->step)
            != st_.compensated.end())
          continue;
        auto cmd = *it->compensation;
        emit("flow.compensation_sent", {{"step", it->step}, {"command", command_to_json(cmd)}});
        rec_.sends.push_back(std::move(cmd));
      }
    }
    if (publish_event)
      rec_.publishes.push_back({*publish_event, st_.data});
    json::object ended({{"outcome", to_string(outcome)}, {"reason", reason}}, arena());
    if (end_step != nullptr)
      ended["step"] = *end_step;
    emit_object("flow.ended", std::move(ended));
    rec_.finished = true;  // removes every timer of the instance
  }

  /// Sends the command of send step `step` (attempt n), recording its compensation.
  bool send(const flow_step& step, const send_step& k, std::int64_t attempt) {
    auto cmd = resolve(k.command, step.name);
    if (!cmd) {
      end(flow_outcome::failed, "step '" + step.name + "': " + persistence::describe(cmd.error()),
          true, {});
      return false;
    }
    json::object ev({{"step", step.name}, {"attempt", attempt}}, arena());
    if (step.compensation && attempt <= 1) {
      auto comp = resolve(*step.compensation, step.name);
      if (!comp) {
        end(flow_outcome::failed,
            "step '" + step.name + "' compensation: " + persistence::describe(comp.error()), true,
            {});
        return false;
      }
      ev["compensation"] = command_to_json(*comp);
    }
    cmd->failure_tag = step.name + "#" + std::to_string(attempt);
    emit_object("flow.command_sent", std::move(ev));
    rec_.sends.push_back(std::move(*cmd));
    return true;
  }

  /// Leaves a wait (the timeout timer goes with it).
  void leave_wait() { rec_.timers_to_cancel.push_back("timeout"); }

  /// Consumes `payload` of `event` at wait `w` (the current step, or the one being
  /// entered when the event was buffered early), then runs on from the event's next step.
  void consume(const std::string& step, const wait_step& w, const std::string& event,
               const json::object& payload, std::optional<std::size_t> buffer_index) {
    json::object merged(arena());
    if (w.merge.empty()) {
      merged = payload;  // default: the event's fields become flow data
      merged.erase(b_.definition().key);
    } else {
      for (const auto& [data_path, event_path] : w.merge)
        if (auto* v = lookup(payload, event_path))
          merged[data_path] = *v;
    }
    json::object ev({{"step", step}, {"event", event}, {"merged", std::move(merged)}}, arena());
    if (buffer_index)
      ev["buffer_index"] = *buffer_index;
    emit_object("flow.event_consumed", std::move(ev));
    if (!buffer_index)
      leave_wait();
    from(next_after(w, event));
  }

  /// The step a wait continues with when `event` ends it.
  static const std::string& next_after(const wait_step& w, const std::string& event) {
    for (const auto& [ev, next] : w.alternatives)
      if (ev == event)
        return next;
    return w.next;
  }

  /// True if `event` ends wait `w`.
  static bool ends_wait(const wait_step& w, const std::string& event) {
    if (w.event == event)
      return true;
    for (const auto& [ev, next] : w.alternatives)
      if (ev == event)
        return true;
    return false;
  }

  /// Drops buffered events whose time to live has passed (they expire in arrival order).
  void prune_buffer() {
    std::size_t expired = 0;
    while (expired < st_.buffer.size() && st_.buffer[expired].expires_at <= now_)
      ++expired;
    if (expired > 0)
      emit("flow.buffer_expired", {{"count", expired}});
  }

  actors::decision_record finish() && {
    auto final_state = std::make_shared<flow_state>(std::move(st_));
    // The persistent actor applies a stored decision once: the working copy moves in.
    rec_.apply = [final_state](actors::entity_state& s) {
      static_cast<flow_state&>(s) = std::move(*final_state);
    };
    return std::move(rec_);
  }

  flow_state& state() { return st_; }
  actors::decision_record& record() { return rec_; }
  persistence::time_ms now() const { return now_; }

private:
  caf::expected<actors::outgoing_command> resolve(const flow_command& c, const std::string& step) {
    auto* id = lookup(st_.data, c.id_from);
    if (id == nullptr)
      return make_actor_error(actor_errc::rejected,
                              "flow data has no field '" + c.id_from + "' (id of the "
                                + c.entity_type + " to send " + c.command + " to, step '" + step
                                + "')");
    auto payload = fill(c.payload.is_null() ? json::value(json::object{}) : c.payload, st_.data);
    if (!payload)
      return payload.error();
    return actors::outgoing_command{c.entity_type, id_text(*id), c.command, std::move(*payload), {}};
  }

  std::optional<std::string> execute(const flow_step& step, const send_step& k) {
    if (!send(step, k, 1))
      return std::nullopt;
    return k.next;
  }

  std::optional<std::string> execute(const flow_step& step, const wait_step& k) {
    prune_buffer();
    for (std::size_t i = 0; i < st_.buffer.size(); ++i) {
      if (!ends_wait(k, st_.buffer[i].event))
        continue;
      // An early event: consumed now instead of waiting for it.
      auto event = st_.buffer[i].event;
      auto payload = st_.buffer[i].payload;
      consume(step.name, k, event, payload, i);
      return std::nullopt;  // consume() ran on from the event's next step
    }
    persistence::time_ms deadline = 0;
    if (k.timeout) {
      deadline = now_ + k.timeout->count();
      rec_.timers_to_set.push_back({"timeout", deadline, -1, flow_timeout_command,
                                    json::object{{"step", step.name}}});
    }
    std::string events = k.event;
    for (const auto& [ev, next] : k.alternatives)
      events += " | " + ev;
    emit("flow.waiting", {{"step", step.name}, {"event", events}, {"deadline", deadline}});
    return std::nullopt;
  }

  std::optional<std::string> execute(const flow_step&, const decide_step& k) {
    for (const auto& br : k.branches)
      if (compare(lookup(st_.data, br.path), br.op, br.value))
        return br.next;
    return k.otherwise;
  }

  std::optional<std::string> execute(const flow_step& step, const end_step& k) {
    auto reason = k.reason;
    if (reason.size() > 1 && reason[0] == '$') {
      auto* v = lookup(st_.data, std::string_view{reason}.substr(1));
      reason = v == nullptr ? std::string{} : v->is_string() ? std::string{v->as_string()}
                                                             : json::serialize(*v);
    }
    end(k.outcome, std::move(reason), k.compensate, k.publish_event, &step.name);
    return std::nullopt;
  }

  const flow_behavior& b_;
  flow_state st_;
  std::string id_;
  persistence::time_ms now_;
  actors::decision_record rec_;
  /// A send or wait step entered and not yet recorded (see emit_object).
  std::optional<std::string> entering_;
  unsigned char arena_buffer_[4096];
  json::monotonic_resource arena_{arena_buffer_, sizeof(arena_buffer_)};
};

bool ended(const flow_state& st) {
  return st.status == "completed" || st.status == "failed" || st.status == "canceled";
}

caf::expected<actors::decision_record>
flow_behavior::decide(const actors::entity_state& s, const actors::command_envelope& cmd) const {
  const auto& st = static_cast<const flow_state&>(s);
  if (!accepts(cmd.name))
    return make_actor_error(actor_errc::unknown_command,
                            "flow '" + def_.name + "' does not handle '" + cmd.name + "'");
  if (!cmd.payload.is_object() && !cmd.payload.is_null())
    return make_actor_error(actor_errc::undecodable_command,
                            "'" + cmd.name + "' for flow '" + def_.name + "' is not a JSON object");
  // The payload without the scheduler's "late_by_ms" (copied only if it is there).
  static const json::object no_payload;
  const json::object* given = cmd.payload.is_object() ? &cmd.payload.as_object() : &no_payload;
  std::optional<json::object> trimmed;
  if (given->contains("late_by_ms")) {
    trimmed.emplace(*given);
    trimmed->erase("late_by_ms");
    given = &*trimmed;
  }
  const json::object& payload = *given;
  run r{*this, st, cmd.entity_id, clock_->now()};
  // The flow data is copied once, into the decision's arena: a copy constructed from the
  // payload would stay in the payload's storage (the outbox dispatcher's per-message
  // arena), whose growth cost a heap block per started flow.
  auto start = [&](const json::object& given) {
    json::object data(given, r.arena());
    data[def_.key] = cmd.entity_id;  // the instance id is the flow key
    r.emit("flow.started", {{"data", std::move(data)}});
    r.from(def_.steps.front().name);
  };
  if (cmd.name == flow_start_command) {
    if (st.started)
      return make_actor_error(actor_errc::rejected,
                              "flow '" + def_.name + "/" + cmd.entity_id + "' already started");
    const auto* data = payload.if_contains("data");
    start(data != nullptr && data->is_object() ? data->as_object() : payload);
    return std::move(r).finish();
  }
  if (cmd.name == flow_cancel_command) {
    if (!st.started || ended(st))
      return make_actor_error(actor_errc::rejected,
                              "flow '" + def_.name + "/" + cmd.entity_id + "' is not running");
    if (st.waiting_for)
      r.leave_wait();
    r.end(flow_outcome::canceled, str(payload, "reason"), true, {});
    return std::move(r).finish();
  }
  if (cmd.name == flow_timeout_command) {
    auto step_name = str(payload, "step");
    if (!st.waiting_for || st.position != step_name)
      return actors::decision_record{};  // stale: the wait ended before its timeout
    const auto& w = std::get<wait_step>(step(step_name).kind);
    r.emit("flow.timed_out", {{"step", step_name}});
    r.from(w.on_timeout);
    return std::move(r).finish();
  }
  if (cmd.name == flow_retry_command) {
    auto step_name = str(payload, "step");
    if (ended(st) || index_.count(step_name) == 0)
      return actors::decision_record{};
    const auto& fs = step(step_name);
    if (auto* k = std::get_if<send_step>(&fs.kind))
      r.send(fs, *k, num(payload, "attempt"));
    return std::move(r).finish();
  }
  if (cmd.name == delivery_failed_command) {
    auto tag = str(payload, "tag");
    auto hash = tag.rfind('#');
    auto step_name = tag.substr(0, hash);
    std::int64_t attempt = hash == std::string::npos ? 1 : std::atoll(tag.c_str() + hash + 1);
    if (ended(st) || index_.count(step_name) == 0)
      return actors::decision_record{};
    const auto& fs = step(step_name);
    auto* k = std::get_if<send_step>(&fs.kind);
    if (k == nullptr)
      return actors::decision_record{};
    auto reason = str(payload, "reason");
    bool retry = k->retry && attempt < static_cast<std::int64_t>(k->retry->max_attempts);
    r.emit("flow.send_failed",
           {{"step", step_name}, {"attempt", attempt}, {"reason", reason}, {"exhausted", !retry}});
    if (retry) {
      auto delay = static_cast<double>(k->retry->initial_interval.count())
                   * std::pow(k->retry->factor, static_cast<double>(attempt - 1));
      auto due = r.now() + static_cast<persistence::time_ms>(delay);
      r.record().timers_to_set.push_back({"retry:" + step_name, due, -1, flow_retry_command,
                                          json::object{{"step", step_name},
                                                       {"attempt", attempt + 1}}});
      r.emit("flow.retry_scheduled",
             {{"step", step_name}, {"attempt", attempt + 1}, {"due", due}});
      return std::move(r).finish();
    }
    // Attempts exhausted: leave wherever the flow stands and go on as the step says.
    if (st.waiting_for)
      r.leave_wait();
    if (k->retry)
      r.from(k->retry->on_exhausted);
    else
      r.end(flow_outcome::failed,
            "step '" + step_name + "': command could not be delivered: " + reason, true, {});
    return std::move(r).finish();
  }
  // A domain event: the trigger, or one a wait is (or will be) waiting for.
  if (!st.started && cmd.name == def_.trigger.event) {
    start(payload);
    return std::move(r).finish();
  }
  if (ended(st))
    return actors::decision_record{};  // nothing waits for it any more
  if (st.waiting_for) {
    const auto& w = std::get<wait_step>(step(st.position).kind);
    if (run::ends_wait(w, cmd.name)) {
      r.consume(st.position, w, cmd.name, payload, std::nullopt);
      return std::move(r).finish();
    }
  }
  if (cmd.name == def_.trigger.event)
    return actors::decision_record{};  // a second trigger for a running flow
  // Early: buffered until its wait starts (or its time to live passes).
  r.prune_buffer();
  r.emit("flow.event_buffered", {{"event", cmd.name},
                                 {"payload", payload},
                                 {"expires_at", r.now() + def_.early_event_ttl.count()}});
  return std::move(r).finish();
}

}  // namespace

std::shared_ptr<actors::entity_behavior>
make_flow_behavior(flow_definition def, std::shared_ptr<const actors::clock> clock) {
  return std::make_shared<flow_behavior>(std::move(def), std::move(clock));
}

std::vector<std::pair<std::string, std::string>> flow_subscriptions(const flow_definition& def) {
  std::vector<std::pair<std::string, std::string>> out;
  auto add = [&](const std::string& event, const std::string& field) {
    for (const auto& [e, f] : out)
      if (e == event)
        return;
    out.emplace_back(event, field);
  };
  if (!def.trigger.event.empty())
    add(def.trigger.event, def.key);
  for (const auto& s : def.steps)
    if (auto* w = std::get_if<wait_step>(&s.kind)) {
      add(w->event, w->correlation);
      for (const auto& [ev, next] : w->alternatives)
        add(ev, w->correlation);
    }
  return out;
}

caf::expected<flow_status> parse_flow_status(std::string_view flow, std::string_view id,
                                             std::string_view state_json) {
  flow_status out;
  out.flow = std::string{flow};
  out.id = std::string{id};
  if (state_json.empty())
    return make_actor_error(actor_errc::instance_failed,
                            "flow '" + std::string{flow} + "/" + std::string{id}
                              + "' has no readable state");
  try {
    auto st = decode(json::parse(state_json).as_object());
    out.status = st.status;
    out.current_step = st.position;
    out.waiting_for = st.waiting_for.value_or("");
    out.deadline_ms = st.deadline;
    out.executed = st.executed;
    for (const auto& c : st.completed)
      out.completed.push_back(c.step);
    for (auto it = st.completed.rbegin(); it != st.completed.rend() && !ended(st); ++it)
      if (it->compensation
          && std::find(st.compensated.begin(), st.compensated.end(), it->step)
               == st.compensated.end())
        out.pending_compensations.push_back(it->step + ": " + it->compensation->name);
    out.compensated = st.compensated;
    for (const auto& b : st.buffer)
      out.buffered_events.push_back(b.event);
    out.reason = st.reason;
    out.data = st.data;
  } catch (const std::exception& e) {
    return make_actor_error(actor_errc::instance_failed,
                            "flow state of '" + std::string{flow} + "/" + std::string{id}
                              + "' does not decode: " + e.what());
  }
  return out;
}

}  // namespace longhaul
