// Flow definitions as JSON (see flow_json.hpp): a strict Boost.JSON parse that reports
// line and column and rejects duplicate keys, a reader that maps the document onto
// flow_definition field by field, and a deterministic pretty printer for the way back.
#include "runtime/flow_json.hpp"

#include "persistence/persistence_error.hpp"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <unordered_set>

namespace longhaul {

namespace json = boost::json;

namespace {

using persistence::make_persistence_error;
using persistence::persistence_errc;

// -- strict parsing ------------------------------------------------------------------

/// Builds a json::value like Boost.JSON's own parser, but stops at a duplicate key (the
/// stock parser would silently keep the last one, hiding a typo such as two "next").
struct strict_handler {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  json::value_stack st;
  std::vector<std::unordered_set<std::string>> keys;  ///< keys seen, per open object
  std::string key;                                    ///< key being read (parts)
  std::string duplicate;                              ///< set when a duplicate stopped us

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    keys.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t n, json::error_code&) {
    keys.pop_back();
    st.push_object(n);
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    st.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key.append(s.data(), s.size());
    st.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code& ec) {
    key.append(s.data(), s.size());
    if (!keys.back().insert(key).second) {
      duplicate = key;
      ec = json::make_error_code(json::error::syntax);
      return false;
    }
    key.clear();
    st.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    st.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    st.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    st.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    st.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view, json::error_code&) {
    st.push_double(d);
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    st.push_bool(b);
    return true;
  }
  bool on_null(json::error_code&) {
    st.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

using strict_parser = json::basic_parser<strict_handler>;

/// Line and column (both from 1; columns count UTF-8 characters) of byte `offset`.
std::pair<std::size_t, std::size_t> line_column(std::string_view text, std::size_t offset) {
  std::size_t line = 1;
  std::size_t column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++line;
      column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++column;
    }
  }
  return {line, column};
}

caf::expected<json::value> parse_strict(std::string_view text) {
  {
    strict_parser p{json::parse_options{}};
    p.handler().st.reset();
    json::error_code ec;
    auto used = p.write_some(false, text.data(), text.size(), ec);
    if (!ec && used == text.size())
      return p.handler().st.release();
  }
  // On error write_some reports the whole buffer as consumed, so find where the parse
  // stopped by feeding a fresh parser one byte at a time: the byte that fails it is the
  // error position (the end of the text for an incomplete document). Only bad documents
  // pay for this.
  strict_parser p{json::parse_options{}};
  p.handler().st.reset();
  json::error_code ec;
  std::size_t offset = 0;
  bool extra = false;  // a byte after a complete document (the parser leaves it unused)
  for (; offset < text.size(); ++offset) {
    extra = p.write_some(true, text.data() + offset, 1, ec) == 0 && !ec;
    if (ec || extra)
      break;
  }
  if (!ec && !extra)
    p.write_some(false, text.data() + text.size(), 0, ec);
  auto [line, column] = line_column(text, offset);
  std::string message = extra ? std::string{"extra data after the document"}
                        : p.handler().duplicate.empty()
                          ? ec.message()
                          : "duplicate key '" + p.handler().duplicate + "'";
  return make_persistence_error(persistence_errc::invalid_argument,
                                "flow JSON syntax error at line " + std::to_string(line)
                                  + ", column " + std::to_string(column) + ": " + message);
}

// -- reading the document --------------------------------------------------------------

/// A double that reads back as the same double and stays a double ("2.0", not "2").
std::string number_text(double d) {
  if (!std::isfinite(d))
    return "null";  // JSON has no infinities; the reader rejects the null with a message
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s{buf, res.ptr};
  if (s.find_first_of(".eE") == std::string::npos)
    s += ".0";
  return s;
}

/// A short rendering of a value for "got ..." in messages.
std::string got(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: return "an object";
    case json::kind::array: return "an array";
    case json::kind::string: {
      auto s = json::serialize(v);
      return s.size() > 40 ? "a string" : s;
    }
    case json::kind::double_: return number_text(v.as_double());
    default: return json::serialize(v);
  }
}

std::string join(std::initializer_list<std::string_view> names) {
  std::string out;
  for (auto n : names) {
    if (!out.empty())
      out += ", ";
    out += n;
  }
  return out;
}

/// Maps a flow document onto flow_definition. Keeps the first error; every message names
/// the flow (once its name is known), the step and the field.
class document_reader {
public:
  caf::expected<flow_definition> read(const json::value& doc) {
    flow_definition def;
    if (!doc.is_object()) {
      fail("", "the document must be a JSON object, got " + got(doc));
      return err_;
    }
    const auto& o = doc.as_object();
    // The name first, so that every later message can carry it.
    if (!text(o, "", "name", true, def.name))
      return err_;
    flow_ = def.name;
    if (!known_keys(o, "", {"name", "key", "started_by", "early_event_ttl_ms", "steps"})
        || !text(o, "", "key", true, def.key)
        || !text(o, "", "started_by", false, def.trigger.event)
        || !milliseconds(o, "", "early_event_ttl_ms", false, def.early_event_ttl))
      return err_;
    auto* steps = o.if_contains("steps");
    if (steps == nullptr) {
      fail("steps", "missing (expected an array of steps)");
      return err_;
    }
    if (!steps->is_array()) {
      fail("steps", "expected an array of steps, got " + got(*steps));
      return err_;
    }
    const auto& arr = steps->as_array();
    std::vector<bool> next_given;
    for (std::size_t i = 0; i < arr.size(); ++i) {
      step_ = "#" + std::to_string(i);
      flow_step s;
      bool has_next = false;
      if (!read_step(arr[i], s, has_next))
        return err_;
      def.steps.push_back(std::move(s));
      next_given.push_back(has_next);
    }
    step_.clear();
    // A send or wait without "next" continues with the following step (as in the builder).
    for (std::size_t i = 0; i + 1 < def.steps.size(); ++i) {
      if (next_given[i])
        continue;
      const auto& following = def.steps[i + 1].name;
      std::visit(
        [&](auto& k) {
          using T = std::decay_t<decltype(k)>;
          if constexpr (std::is_same_v<T, send_step> || std::is_same_v<T, wait_step>)
            k.next = following;
        },
        def.steps[i].kind);
    }
    if (auto err = validate(def))
      return err;
    return def;
  }

private:
  bool fail(const std::string& field, const std::string& message) {
    std::string where = flow_.empty() ? std::string{"flow JSON"} : "flow '" + flow_ + "'";
    if (!step_.empty())
      where += ", step '" + step_ + "'";
    if (!field.empty())
      where += ", field '" + field + "'";
    err_ = make_persistence_error(persistence_errc::invalid_argument, where + ": " + message);
    return false;
  }

  static std::string field_name(const std::string& prefix, std::string_view key) {
    return prefix.empty() ? std::string{key} : prefix + "." + std::string{key};
  }

  bool known_keys(const json::object& o, const std::string& prefix,
                  std::initializer_list<std::string_view> allowed) {
    for (const auto& kv : o) {
      std::string_view key{kv.key().data(), kv.key().size()};
      bool ok = false;
      for (auto a : allowed)
        ok = ok || a == key;
      if (!ok)
        return fail(field_name(prefix, key), "unknown key; expected one of " + join(allowed));
    }
    return true;
  }

  bool text(const json::object& o, const std::string& prefix, std::string_view key,
            bool required, std::string& out) {
    auto* v = o.if_contains(key);
    if (v == nullptr)
      return required ? fail(field_name(prefix, key), "missing (expected a string)") : true;
    if (!v->is_string())
      return fail(field_name(prefix, key), "expected a string, got " + got(*v));
    out.assign(v->as_string().data(), v->as_string().size());
    return true;
  }

  /// A positive integer that fits `max`.
  bool positive(const json::object& o, const std::string& prefix, std::string_view key,
                bool required, std::int64_t max, std::int64_t& out) {
    auto* v = o.if_contains(key);
    if (v == nullptr)
      return required ? fail(field_name(prefix, key), "missing (expected a positive integer)")
                      : true;
    std::int64_t n = 0;
    bool fits = true;
    if (v->is_int64()) {
      n = v->as_int64();
      fits = n <= max;
    } else if (v->is_uint64()) {
      fits = v->as_uint64() <= static_cast<std::uint64_t>(max);
      n = fits ? static_cast<std::int64_t>(v->as_uint64()) : max;
    } else {
      return fail(field_name(prefix, key), "expected a positive integer, got " + got(*v));
    }
    if (n <= 0)
      return fail(field_name(prefix, key), "expected a positive integer, got " + got(*v));
    if (!fits)
      return fail(field_name(prefix, key), "expected a positive integer up to "
                                             + std::to_string(max) + ", got " + got(*v));
    out = n;
    return true;
  }

  bool milliseconds(const json::object& o, const std::string& prefix, std::string_view key,
                    bool required, std::chrono::milliseconds& out) {
    std::int64_t n = out.count();
    if (!positive(o, prefix, key, required, std::numeric_limits<std::int64_t>::max(), n))
      return false;
    out = std::chrono::milliseconds{n};
    return true;
  }

  bool object_field(const json::object& o, const std::string& prefix, std::string_view key,
                    bool required, const json::object*& out) {
    auto* v = o.if_contains(key);
    out = nullptr;
    if (v == nullptr)
      return required ? fail(field_name(prefix, key), "missing (expected an object)") : true;
    if (!v->is_object())
      return fail(field_name(prefix, key), "expected an object, got " + got(*v));
    out = &v->as_object();
    return true;
  }

  bool command(const json::object& o, const std::string& field, flow_command& out) {
    if (!known_keys(o, field, {"entity_type", "id_from", "command", "payload"})
        || !text(o, field, "entity_type", true, out.entity_type)
        || !text(o, field, "id_from", true, out.id_from)
        || !text(o, field, "command", true, out.command))
      return false;
    const json::object* payload = nullptr;
    if (!object_field(o, field, "payload", false, payload))
      return false;
    if (payload != nullptr)
      out.payload = *payload;
    return true;
  }

  bool retry(const json::object& o, retry_policy& out) {
    const std::string field = "retry";
    if (!known_keys(o, field, {"max_attempts", "initial_interval_ms", "factor", "on_exhausted"}))
      return false;
    std::int64_t attempts = 0;
    if (!positive(o, field, "max_attempts", true, std::numeric_limits<std::uint32_t>::max(),
                  attempts)
        || !milliseconds(o, field, "initial_interval_ms", false, out.initial_interval)
        || !text(o, field, "on_exhausted", true, out.on_exhausted))
      return false;
    out.max_attempts = static_cast<std::uint32_t>(attempts);
    if (auto* f = o.if_contains("factor")) {
      if (f->is_double())
        out.factor = f->as_double();
      else if (f->is_int64())
        out.factor = static_cast<double>(f->as_int64());
      else if (f->is_uint64())
        out.factor = static_cast<double>(f->as_uint64());
      else
        return fail("retry.factor", "expected a number, got " + got(*f));
    }
    return true;
  }

  bool wait(const json::object& o, wait_step& out) {
    const std::string field = "wait";
    if (!known_keys(o, field,
                    {"event", "correlation", "merge", "timeout_ms", "on_timeout", "alternatives"})
        || !text(o, field, "event", true, out.event)
        || !text(o, field, "correlation", false, out.correlation))
      return false;
    const json::object* merge = nullptr;
    if (!object_field(o, field, "merge", false, merge))
      return false;
    if (merge != nullptr) {
      for (const auto& kv : *merge) {
        if (!kv.value().is_string())
          return fail("wait.merge." + std::string{kv.key()},
                      "expected a string (the event field to copy), got " + got(kv.value()));
        out.merge.emplace_back(std::string{kv.key()}, std::string{kv.value().as_string()});
      }
    }
    if (o.contains("timeout_ms")) {
      std::chrono::milliseconds t{0};
      if (!milliseconds(o, field, "timeout_ms", true, t))
        return false;
      out.timeout = t;
    }
    if (auto* alternatives = o.if_contains("alternatives")) {
      if (!alternatives->is_array())
        return fail("wait.alternatives",
                    "expected an array of {event, next}, got " + got(*alternatives));
      const auto& arr = alternatives->as_array();
      for (std::size_t i = 0; i < arr.size(); ++i) {
        auto f = "wait.alternatives[" + std::to_string(i) + "]";
        if (!arr[i].is_object())
          return fail(f, "expected an object, got " + got(arr[i]));
        const auto& a = arr[i].as_object();
        std::string event;
        std::string next;
        if (!known_keys(a, f, {"event", "next"}) || !text(a, f, "event", true, event)
            || !text(a, f, "next", true, next))
          return false;
        out.alternatives.emplace_back(std::move(event), std::move(next));
      }
    }
    return text(o, field, "on_timeout", false, out.on_timeout);
  }

  bool decide(const json::object& o, decide_step& out) {
    if (!known_keys(o, "decide", {"branches", "otherwise"})
        || !text(o, "decide", "otherwise", true, out.otherwise))
      return false;
    auto* branches = o.if_contains("branches");
    if (branches == nullptr)
      return fail("decide.branches", "missing (expected an array of branches)");
    if (!branches->is_array())
      return fail("decide.branches", "expected an array of branches, got " + got(*branches));
    const auto& arr = branches->as_array();
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto field = "decide.branches[" + std::to_string(i) + "]";
      if (!arr[i].is_object())
        return fail(field, "expected an object, got " + got(arr[i]));
      const auto& b = arr[i].as_object();
      decide_branch branch;
      if (!known_keys(b, field, {"path", "op", "value", "next"})
          || !text(b, field, "path", true, branch.path) || !text(b, field, "op", true, branch.op)
          || !text(b, field, "next", true, branch.next))
        return false;
      if (auto* v = b.if_contains("value"))
        branch.value = *v;
      else if (branch.op != "exists" && branch.op != "missing")
        return fail(field + ".value", "missing (operator '" + branch.op + "' needs a value)");
      out.branches.push_back(std::move(branch));
    }
    return true;
  }

  bool end(const json::object& o, end_step& out) {
    const std::string field = "end";
    if (!known_keys(o, field, {"outcome", "reason", "compensate", "publish"}))
      return false;
    std::string outcome;
    if (!text(o, field, "outcome", true, outcome))
      return false;
    if (outcome == "completed")
      out.outcome = flow_outcome::completed;
    else if (outcome == "failed")
      out.outcome = flow_outcome::failed;
    else if (outcome == "canceled")
      out.outcome = flow_outcome::canceled;
    else
      return fail("end.outcome", "expected \"completed\", \"failed\" or \"canceled\", got "
                                   + got(o.at("outcome")));
    if (!text(o, field, "reason", false, out.reason))
      return false;
    if (auto* c = o.if_contains("compensate")) {
      if (!c->is_bool())
        return fail("end.compensate", "expected true or false, got " + got(*c));
      out.compensate = c->as_bool();
    }
    if (o.contains("publish")) {
      std::string event;
      if (!text(o, field, "publish", true, event))
        return false;
      out.publish_event = std::move(event);
    }
    return true;
  }

  bool read_step(const json::value& v, flow_step& s, bool& has_next) {
    if (!v.is_object())
      return fail("", "expected a step object, got " + got(v));
    const auto& o = v.as_object();
    if (!text(o, "", "name", true, s.name))
      return false;
    step_ = s.name;
    if (!known_keys(o, "", {"name", "send", "wait", "decide", "end", "next", "compensation",
                            "retry"}))
      return false;
    std::vector<std::string> kinds;
    for (const char* k : {"send", "wait", "decide", "end"})
      if (o.contains(k))
        kinds.emplace_back(k);
    if (kinds.size() != 1) {
      std::string found = kinds.empty() ? "none" : "'" + kinds[0] + "' and '" + kinds[1] + "'";
      return fail("", "a step has exactly one of send, wait, decide, end (found " + found + ")");
    }
    const auto& kind = kinds[0];
    const json::object* body = nullptr;
    if (!object_field(o, "", kind, true, body))
      return false;
    has_next = o.contains("next");
    std::string next;
    if (!text(o, "", "next", false, next))
      return false;
    if (has_next && (kind == "decide" || kind == "end"))
      return fail("next", (kind == "end" ? "an " : "a ") + kind + " step has no 'next'"
                            + (kind == "decide" ? " (use branches and otherwise)" : ""));
    if (o.contains("retry") && kind != "send")
      return fail("retry", "only send steps have a retry policy");
    const json::object* compensation = nullptr;
    if (!object_field(o, "", "compensation", false, compensation))
      return false;
    if (compensation != nullptr) {
      flow_command c;
      if (!command(*compensation, "compensation", c))
        return false;
      s.compensation = std::move(c);
    }
    if (kind == "send") {
      send_step send;
      send.next = std::move(next);
      if (!command(*body, "send", send.command))
        return false;
      const json::object* r = nullptr;
      if (!object_field(o, "", "retry", false, r))
        return false;
      if (r != nullptr) {
        retry_policy policy;
        if (!retry(*r, policy))
          return false;
        send.retry = std::move(policy);
      }
      s.kind = std::move(send);
    } else if (kind == "wait") {
      wait_step w;
      w.next = std::move(next);
      if (!wait(*body, w))
        return false;
      s.kind = std::move(w);
    } else if (kind == "decide") {
      decide_step d;
      if (!decide(*body, d))
        return false;
      s.kind = std::move(d);
    } else {
      end_step e;
      if (!end(*body, e))
        return false;
      s.kind = std::move(e);
    }
    return true;
  }

  std::string flow_;  ///< flow name for messages (empty until known)
  std::string step_;  ///< current step name, or "#i" before its name is known
  caf::error err_;
};

// -- writing -------------------------------------------------------------------------

json::object command_json(const flow_command& c) {
  json::object o;
  o["entity_type"] = c.entity_type;
  o["id_from"] = c.id_from;
  o["command"] = c.command;
  if (!c.payload.is_null())
    o["payload"] = c.payload;
  return o;
}

json::object step_json(const flow_step& s) {
  json::object o;
  o["name"] = s.name;
  std::visit(
    [&](const auto& k) {
      using T = std::decay_t<decltype(k)>;
      if constexpr (std::is_same_v<T, send_step>) {
        o["send"] = command_json(k.command);
        o["next"] = k.next;
      } else if constexpr (std::is_same_v<T, wait_step>) {
        json::object w;
        w["event"] = k.event;
        w["correlation"] = k.correlation;
        if (!k.merge.empty()) {
          json::object m;
          for (const auto& [data_path, event_path] : k.merge)
            m[data_path] = event_path;
          w["merge"] = std::move(m);
        }
        if (!k.alternatives.empty()) {
          json::array alternatives;
          for (const auto& [event, next] : k.alternatives)
            alternatives.emplace_back(json::object{{"event", event}, {"next", next}});
          w["alternatives"] = std::move(alternatives);
        }
        if (k.timeout)
          w["timeout_ms"] = k.timeout->count();
        if (k.timeout || !k.on_timeout.empty())
          w["on_timeout"] = k.on_timeout;
        o["wait"] = std::move(w);
        o["next"] = k.next;
      } else if constexpr (std::is_same_v<T, decide_step>) {
        json::array branches;
        for (const auto& b : k.branches) {
          json::object jb;
          jb["path"] = b.path;
          jb["op"] = b.op;
          if ((b.op != "exists" && b.op != "missing") || !b.value.is_null())
            jb["value"] = b.value;
          jb["next"] = b.next;
          branches.emplace_back(std::move(jb));
        }
        o["decide"] = json::object{{"branches", std::move(branches)}, {"otherwise", k.otherwise}};
      } else {
        json::object e;
        e["outcome"] = to_string(k.outcome);
        if (!k.reason.empty())
          e["reason"] = k.reason;
        e["compensate"] = k.compensate;
        if (k.publish_event)
          e["publish"] = *k.publish_event;
        o["end"] = std::move(e);
      }
    },
    s.kind);
  if (s.compensation)
    o["compensation"] = command_json(*s.compensation);
  if (auto* send = std::get_if<send_step>(&s.kind); send != nullptr && send->retry) {
    const auto& r = *send->retry;
    o["retry"] = json::object{{"max_attempts", r.max_attempts},
                              {"initial_interval_ms", r.initial_interval.count()},
                              {"factor", r.factor},
                              {"on_exhausted", r.on_exhausted}};
  }
  return o;
}

std::string scalar_text(const json::value& v) {
  if (v.is_double())
    return number_text(v.as_double());
  return json::serialize(v);
}

/// One-line rendering: {"a": 1, "b": [2, 3]}.
std::string inline_text(const json::value& v) {
  std::string out;
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& kv : v.as_object()) {
      out += first ? "" : ", ";
      first = false;
      out += json::serialize(kv.key()) + ": " + inline_text(kv.value());
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& e : v.as_array()) {
      out += first ? "" : ", ";
      first = false;
      out += inline_text(e);
    }
    out += ']';
  } else {
    out += scalar_text(v);
  }
  return out;
}

constexpr std::size_t line_width = 96;

/// Pretty-prints `v` starting at `column` (where the value begins) with `indent` spaces
/// for nested lines. Containers of scalars that fit on the line stay on one line.
void write_pretty(std::string& out, const json::value& v, std::size_t indent,
                  std::size_t column) {
  if (!v.is_object() && !v.is_array()) {
    out += scalar_text(v);
    return;
  }
  auto one_line = inline_text(v);
  if (column + one_line.size() + 1 <= line_width) {  // + 1: the comma after it
    out += one_line;
    return;
  }
  std::string pad(indent + 2, ' ');
  if (v.is_object()) {
    out += "{\n";
    bool first = true;
    for (const auto& kv : v.as_object()) {
      out += first ? "" : ",\n";
      first = false;
      auto key = json::serialize(kv.key()) + ": ";
      out += pad + key;
      write_pretty(out, kv.value(), indent + 2, indent + 2 + key.size());
    }
    out += "\n" + std::string(indent, ' ') + "}";
  } else {
    out += "[\n";
    bool first = true;
    for (const auto& e : v.as_array()) {
      out += first ? "" : ",\n";
      first = false;
      out += pad;
      write_pretty(out, e, indent + 2, indent + 2);
    }
    out += "\n" + std::string(indent, ' ') + "]";
  }
}

}  // namespace

caf::expected<flow_definition> load_flow_json(std::string_view text) {
  auto doc = parse_strict(text);
  if (!doc)
    return doc.error();
  return document_reader{}.read(*doc);
}

caf::expected<flow_definition> load_flow_json_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return make_persistence_error(persistence_errc::cannot_open,
                                  "cannot read flow file '" + path + "': is a directory");
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return make_persistence_error(persistence_errc::cannot_open,
                                  "cannot read flow file '" + path + "': " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    return make_persistence_error(persistence_errc::cannot_open,
                                  "cannot read flow file '" + path + "'");
  auto def = load_flow_json(buf.str());
  if (!def) {
    const auto& ctx = def.error().context();
    std::string detail = ctx.size() == 1 && ctx.match_element<std::string>(0)
                           ? ctx.get_as<std::string>(0)
                           : persistence::describe(def.error());
    return make_persistence_error(persistence::persistence_code(def.error()),
                                  "flow file '" + path + "': " + detail);
  }
  return def;
}

std::string to_flow_json(const flow_definition& def) {
  json::object o;
  o["name"] = def.name;
  o["key"] = def.key;
  if (!def.trigger.event.empty())
    o["started_by"] = def.trigger.event;
  o["early_event_ttl_ms"] = def.early_event_ttl.count();
  json::array steps;
  for (const auto& s : def.steps)
    steps.emplace_back(step_json(s));
  o["steps"] = std::move(steps);
  std::string out;
  write_pretty(out, o, 0, 0);
  out += '\n';
  return out;
}

}  // namespace longhaul
