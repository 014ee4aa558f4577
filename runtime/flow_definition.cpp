// Flow definitions: the builder and validation (see flow_definition.hpp).
#include "runtime/flow_definition.hpp"

#include "persistence/persistence_error.hpp"

#include <functional>
#include <map>
#include <set>

namespace longhaul {

const char* to_string(flow_outcome o) noexcept {
  switch (o) {
    case flow_outcome::completed: return "completed";
    case flow_outcome::failed: return "failed";
    case flow_outcome::canceled: return "canceled";
  }
  return "unknown";
}

namespace {

caf::error invalid(const std::string& flow, const std::string& step, const std::string& field,
                   const std::string& text) {
  std::string where = "flow '" + flow + "'";
  if (!step.empty())
    where += ", step '" + step + "'";
  if (!field.empty())
    where += ", field '" + field + "'";
  return persistence::make_persistence_error(persistence::persistence_errc::invalid_argument,
                                             where + ": " + text);
}

/// Successor steps with the field that names them.
std::vector<std::pair<std::string, std::string>> successors(const flow_step& s) {
  std::vector<std::pair<std::string, std::string>> out;
  std::visit(
    [&](const auto& k) {
      using T = std::decay_t<decltype(k)>;
      if constexpr (std::is_same_v<T, send_step>) {
        out.emplace_back("next", k.next);
        if (k.retry && !k.retry->on_exhausted.empty())
          out.emplace_back("retry.on_exhausted", k.retry->on_exhausted);
      } else if constexpr (std::is_same_v<T, wait_step>) {
        out.emplace_back("next", k.next);
        for (std::size_t i = 0; i < k.alternatives.size(); ++i)
          out.emplace_back("alternatives[" + std::to_string(i) + "].next", k.alternatives[i].second);
        if (k.timeout)
          out.emplace_back("on_timeout", k.on_timeout);
      } else if constexpr (std::is_same_v<T, decide_step>) {
        for (std::size_t i = 0; i < k.branches.size(); ++i)
          out.emplace_back("branches[" + std::to_string(i) + "].next", k.branches[i].next);
        out.emplace_back("otherwise", k.otherwise);
      }
    },
    s.kind);
  return out;
}

caf::error check_command(const std::string& flow, const std::string& step,
                         const std::string& field, const flow_command& c) {
  if (c.entity_type.empty())
    return invalid(flow, step, field + ".entity_type", "is empty");
  if (c.id_from.empty())
    return invalid(flow, step, field + ".id_from", "is empty (which flow-data field holds the id?)");
  if (c.command.empty())
    return invalid(flow, step, field + ".command", "is empty");
  if (!c.payload.is_null() && !c.payload.is_object())
    return invalid(flow, step, field + ".payload", "must be a JSON object");
  return {};
}

}  // namespace

caf::error validate(const flow_definition& def) {
  const auto& f = def.name;
  if (f.empty() || f.find('/') != std::string::npos)
    return invalid(f, "", "name", "must be non-empty and contain no '/'");
  if (def.key.empty())
    return invalid(f, "", "key", "is empty (which data field identifies an instance?)");
  if (def.steps.empty())
    return invalid(f, "", "steps", "a flow needs at least one step");
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < def.steps.size(); ++i) {
    const auto& s = def.steps[i];
    // append, not "#" + to_string(i): GCC 12 at -O3 reports a false -Wrestrict there.
    if (s.name.empty())
      return invalid(f, std::string{"#"}.append(std::to_string(i)), "name", "is empty");
    if (!index.emplace(s.name, i).second)
      return invalid(f, s.name, "name", "duplicate step name");
  }
  for (const auto& s : def.steps) {
    for (const auto& [field, target] : successors(s)) {
      if (target.empty())
        return invalid(f, s.name, field, "names no step");
      if (index.count(target) == 0)
        return invalid(f, s.name, field, "unknown target step '" + target + "'");
    }
    if (s.compensation)
      if (auto err = check_command(f, s.name, "compensation", *s.compensation))
        return err;
    caf::error err;
    std::visit(
      [&](const auto& k) {
        using T = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<T, send_step>) {
          err = check_command(f, s.name, "command", k.command);
          if (!err && k.retry) {
            if (k.retry->max_attempts < 1)
              err = invalid(f, s.name, "retry.max_attempts", "must be >= 1");
            else if (k.retry->initial_interval.count() <= 0)
              err = invalid(f, s.name, "retry.initial_interval_ms", "must be > 0");
            else if (k.retry->factor < 1.0)
              err = invalid(f, s.name, "retry.factor", "must be >= 1");
            else if (k.retry->on_exhausted.empty())
              err = invalid(f, s.name, "retry.on_exhausted", "names no step");
          }
        } else if constexpr (std::is_same_v<T, wait_step>) {
          if (k.event.empty())
            err = invalid(f, s.name, "event", "is empty");
          else if (k.correlation.empty())
            err = invalid(f, s.name, "correlation",
                          "a wait needs a correlation key (the event field holding '" + def.key
                            + "')");
          else if (k.timeout && k.timeout->count() <= 0)
            err = invalid(f, s.name, "timeout_ms", "must be > 0");
          else if (!k.timeout && !k.on_timeout.empty())
            err = invalid(f, s.name, "on_timeout", "is set but the wait has no timeout");
          for (std::size_t i = 0; i < k.alternatives.size() && !err; ++i) {
            const auto& ev = k.alternatives[i].first;
            if (ev.empty())
              err = invalid(f, s.name, "alternatives[" + std::to_string(i) + "].event", "is empty");
            else if (ev == k.event)
              err = invalid(f, s.name, "alternatives[" + std::to_string(i) + "].event",
                            "repeats the wait's own event '" + ev + "'");
          }
        } else if constexpr (std::is_same_v<T, decide_step>) {
          static const std::set<std::string> ops{"==", "!=", "<", "<=", ">", ">=", "exists",
                                                 "missing"};
          for (std::size_t i = 0; i < k.branches.size() && !err; ++i) {
            const auto& b = k.branches[i];
            auto field = "branches[" + std::to_string(i) + "]";
            if (b.path.empty())
              err = invalid(f, s.name, field + ".path", "is empty");
            else if (ops.count(b.op) == 0)
              err = invalid(f, s.name, field + ".op", "unknown operator '" + b.op + "'");
          }
        } else {
          if (s.compensation)
            err = invalid(f, s.name, "compensation", "an end step has nothing to compensate");
        }
      },
      s.kind);
    if (err)
      return err;
    if (s.compensation && !std::holds_alternative<send_step>(s.kind))
      return invalid(f, s.name, "compensation", "only send steps can be compensated");
  }
  // Reachability from the first step.
  std::vector<bool> seen(def.steps.size(), false);
  std::vector<std::size_t> todo{0};
  seen[0] = true;
  while (!todo.empty()) {
    auto i = todo.back();
    todo.pop_back();
    for (const auto& [field, target] : successors(def.steps[i])) {
      auto j = index.at(target);
      if (!seen[j]) {
        seen[j] = true;
        todo.push_back(j);
      }
    }
  }
  for (std::size_t i = 0; i < def.steps.size(); ++i)
    if (!seen[i])
      return invalid(f, def.steps[i].name, "", "unreachable from the first step '"
                                                 + def.steps[0].name + "'");
  // A cycle must pass through a wait (or a retry, which waits on a timer); otherwise an
  // instance would loop forever inside one decision. Look for cycles among the other steps.
  auto pauses = [&](std::size_t i) {
    const auto& s = def.steps[i];
    if (std::holds_alternative<wait_step>(s.kind))
      return true;
    auto* send = std::get_if<send_step>(&s.kind);
    return send != nullptr && send->retry.has_value();
  };
  std::vector<int> color(def.steps.size(), 0);  // 0 new, 1 on stack, 2 done
  std::string cycle_at;
  std::function<bool(std::size_t)> dfs = [&](std::size_t i) {
    color[i] = 1;
    for (const auto& [field, target] : successors(def.steps[i])) {
      auto j = index.at(target);
      if (pauses(j))
        continue;
      if (color[j] == 1) {
        cycle_at = def.steps[j].name;
        return true;
      }
      if (color[j] == 0 && dfs(j))
        return true;
    }
    color[i] = 2;
    return false;
  };
  for (std::size_t i = 0; i < def.steps.size(); ++i)
    if (!pauses(i) && color[i] == 0 && dfs(i))
      return invalid(f, cycle_at, "", "loop without a wait or timer");
  return {};
}

// -- builder -------------------------------------------------------------------------

flow_builder::flow_builder(std::string name, std::string key) {
  def_.name = std::move(name);
  def_.key = std::move(key);
}

flow_builder& flow_builder::started_by(std::string event) {
  def_.trigger.event = std::move(event);
  return *this;
}

flow_builder& flow_builder::early_event_ttl(std::chrono::milliseconds ttl) {
  def_.early_event_ttl = ttl;
  return *this;
}

void flow_builder::link_previous(const std::string& step) {
  // A step whose `next` was left empty continues with the step added after it.
  if (def_.steps.empty() || !next_defaulted_.back())
    return;
  std::visit(
    [&](auto& k) {
      using T = std::decay_t<decltype(k)>;
      if constexpr (std::is_same_v<T, send_step> || std::is_same_v<T, wait_step>)
        k.next = step;
    },
    def_.steps.back().kind);
  next_defaulted_.back() = false;
}

flow_step* flow_builder::last(const char* what) {
  if (def_.steps.empty()) {
    if (error_.empty())
      error_ = std::string{what} + " needs a step before it";
    return nullptr;
  }
  return &def_.steps.back();
}

flow_builder& flow_builder::send(std::string step, flow_command cmd, std::string next) {
  link_previous(step);
  bool defaulted = next.empty();
  def_.steps.push_back({std::move(step), send_step{std::move(cmd), std::nullopt, std::move(next)},
                        std::nullopt});
  next_defaulted_.push_back(defaulted);
  return *this;
}

flow_builder& flow_builder::compensate_with(flow_command cmd) {
  if (auto* s = last("compensate_with"))
    s->compensation = std::move(cmd);
  return *this;
}

flow_builder& flow_builder::retry(retry_policy policy) {
  if (auto* s = last("retry")) {
    if (auto* send = std::get_if<send_step>(&s->kind))
      send->retry = std::move(policy);
    else if (error_.empty())
      error_ = "retry() follows step '" + s->name + "', which is not a send step";
  }
  return *this;
}

flow_builder& flow_builder::wait(std::string step, std::string event, std::string correlation,
                                 std::string next) {
  link_previous(step);
  bool defaulted = next.empty();
  wait_step w;
  w.event = std::move(event);
  w.correlation = std::move(correlation);
  w.next = std::move(next);
  def_.steps.push_back({std::move(step), std::move(w), std::nullopt});
  next_defaulted_.push_back(defaulted);
  return *this;
}

flow_builder& flow_builder::timeout(std::chrono::milliseconds after, std::string on_timeout) {
  if (auto* s = last("timeout")) {
    if (auto* w = std::get_if<wait_step>(&s->kind)) {
      w->timeout = after;
      w->on_timeout = std::move(on_timeout);
    } else if (error_.empty()) {
      error_ = "timeout() follows step '" + s->name + "', which is not a wait step";
    }
  }
  return *this;
}

flow_builder& flow_builder::or_event(std::string event, std::string next) {
  if (auto* s = last("or_event")) {
    if (auto* w = std::get_if<wait_step>(&s->kind))
      w->alternatives.emplace_back(std::move(event), std::move(next));
    else if (error_.empty())
      error_ = "or_event() follows step '" + s->name + "', which is not a wait step";
  }
  return *this;
}

flow_builder& flow_builder::merge(std::string data_path, std::string event_path) {
  if (auto* s = last("merge")) {
    if (auto* w = std::get_if<wait_step>(&s->kind))
      w->merge.emplace_back(std::move(data_path), std::move(event_path));
    else if (error_.empty())
      error_ = "merge() follows step '" + s->name + "', which is not a wait step";
  }
  return *this;
}

flow_builder& flow_builder::decide(std::string step, std::string otherwise) {
  link_previous(step);
  def_.steps.push_back({std::move(step), decide_step{{}, std::move(otherwise)}, std::nullopt});
  next_defaulted_.push_back(false);
  return *this;
}

flow_builder& flow_builder::when(std::string path, std::string op, boost::json::value value,
                                 std::string next) {
  if (auto* s = last("when")) {
    if (auto* d = std::get_if<decide_step>(&s->kind))
      d->branches.push_back({std::move(path), std::move(op), std::move(value), std::move(next)});
    else if (error_.empty())
      error_ = "when() follows step '" + s->name + "', which is not a decide step";
  }
  return *this;
}

flow_builder& flow_builder::end(std::string step, flow_outcome outcome, std::string reason,
                                bool compensate) {
  link_previous(step);
  def_.steps.push_back(
    {std::move(step), end_step{outcome, std::move(reason), compensate, std::nullopt}, std::nullopt});
  next_defaulted_.push_back(false);
  return *this;
}

flow_builder& flow_builder::publish(std::string event) {
  if (auto* s = last("publish")) {
    if (auto* e = std::get_if<end_step>(&s->kind))
      e->publish_event = std::move(event);
    else if (error_.empty())
      error_ = "publish() follows step '" + s->name + "', which is not an end step";
  }
  return *this;
}

caf::expected<flow_definition> flow_builder::build() const {
  if (!error_.empty())
    return invalid(def_.name, "", "", error_);
  if (auto err = validate(def_))
    return err;
  return def_;
}

}  // namespace longhaul
