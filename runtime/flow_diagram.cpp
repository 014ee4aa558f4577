// Flow diagrams (see flow_diagram.hpp): the definition and an optional trace become one
// small graph model (nodes, edges, highlights), which is then written as Mermaid or DOT;
// SVG comes from running Graphviz's dot on the DOT text in a temporary directory.
#include "runtime/flow_diagram.hpp"

#include "persistence/persistence_error.hpp"
#include "runtime/flow_engine.hpp"

#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <map>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace longhaul {

namespace {

using persistence::make_persistence_error;
using persistence::persistence_errc;

// -- graph model ---------------------------------------------------------------------

enum class node_shape { trigger, send, wait, decide, end, compensation };
enum class edge_kind { plain, timeout, retry, compensation };
enum class mark { none, executed, current };

constexpr std::size_t no_step = static_cast<std::size_t>(-1);

struct node {
  std::string id;
  node_shape shape;
  std::vector<std::string> lines;  ///< label lines, unescaped
  mark highlight = mark::none;
  std::string beside;  ///< compensation nodes: the step node they sit next to
  std::size_t step = no_step;  ///< index of the step drawn (steps only)
};

struct edge {
  std::string from;
  std::string to;
  std::string label;
  edge_kind kind = edge_kind::plain;
  std::size_t from_step = no_step;  ///< source step index (no_step: the trigger)
  std::size_t to_step = no_step;    ///< target step index (no_step: a compensation)
  bool highlight = false;
};

struct graph {
  std::string title;
  std::vector<node> nodes;
  std::vector<edge> edges;
};

std::string step_id(std::size_t i) {
  return "s" + std::to_string(i);
}

/// A JSON value for a branch label: strings quoted, doubles as written ("2.5", "2.0").
std::string value_text(const boost::json::value& v) {
  if (v.is_double() && std::isfinite(v.as_double())) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), v.as_double());
    std::string s{buf, res.ptr};
    if (s.find_first_of(".eE") == std::string::npos)
      s += ".0";
    return s;
  }
  return boost::json::serialize(v);
}

std::string condition(const decide_branch& b) {
  if (b.op == "exists" || b.op == "missing")
    return b.path + " " + b.op;
  return b.path + " " + b.op + " " + value_text(b.value);
}

graph build_graph(const flow_definition& def, const flow_trace* trace) {
  graph g;
  g.title = "flow " + def.name + " (key " + def.key + ")";
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < def.steps.size(); ++i)
    index.emplace(def.steps[i].name, i);  // the first of duplicate names wins
  g.nodes.push_back(
    {"trigger", node_shape::trigger, {def.trigger.event.empty() ? "start" : def.trigger.event},
     mark::none, "", no_step});
  if (!def.steps.empty())
    g.edges.push_back({"trigger", step_id(0), "", edge_kind::plain, no_step, 0, false});
  auto link = [&](std::size_t from, const std::string& target, std::string label,
                  edge_kind kind) {
    // Targets that name no step (an invalid definition) are not drawn.
    auto it = index.find(target);
    if (it != index.end())
      g.edges.push_back({step_id(from), step_id(it->second), std::move(label), kind, from,
                         it->second, false});
  };
  for (std::size_t i = 0; i < def.steps.size(); ++i) {
    const auto& s = def.steps[i];
    node n{step_id(i), node_shape::send, {s.name}, mark::none, "", i};
    std::visit(
      [&](const auto& k) {
        using T = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<T, send_step>) {
          n.shape = node_shape::send;
          n.lines.push_back("send " + k.command.entity_type + ": " + k.command.command);
          if (k.retry)
            n.lines.push_back("up to " + std::to_string(k.retry->max_attempts) + " attempts");
        } else if constexpr (std::is_same_v<T, wait_step>) {
          n.shape = node_shape::wait;
          n.lines.push_back("wait for " + k.event);
        } else if constexpr (std::is_same_v<T, decide_step>) {
          n.shape = node_shape::decide;
        } else {
          n.shape = node_shape::end;
          n.lines.push_back(std::string{"end: "} + to_string(k.outcome)
                            + (k.compensate ? ", compensates" : ""));
          if (k.publish_event)
            n.lines.push_back("publishes " + *k.publish_event);
        }
      },
      s.kind);
    g.nodes.push_back(std::move(n));
    if (s.compensation)
      g.nodes.push_back({"c" + std::to_string(i), node_shape::compensation,
                         {"compensate: " + s.compensation->command}, mark::none, step_id(i),
                         no_step});
    std::visit(
      [&](const auto& k) {
        using T = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<T, send_step>) {
          link(i, k.next, "", edge_kind::plain);
          if (k.retry)
            link(i, k.retry->on_exhausted, "retries exhausted", edge_kind::retry);
        } else if constexpr (std::is_same_v<T, wait_step>) {
          link(i, k.next, "", edge_kind::plain);
          // Other events that also end the wait, each labelled with its event name.
          for (const auto& [event, next] : k.alternatives)
            link(i, next, event, edge_kind::plain);
          if (k.timeout)
            link(i, k.on_timeout, "timeout " + human_duration(*k.timeout), edge_kind::timeout);
        } else if constexpr (std::is_same_v<T, decide_step>) {
          for (const auto& b : k.branches)
            link(i, b.next, condition(b), edge_kind::plain);
          link(i, k.otherwise, "otherwise", edge_kind::plain);
        }
      },
      s.kind);
    if (s.compensation)
      g.edges.push_back(
        {step_id(i), "c" + std::to_string(i), "", edge_kind::compensation, i, no_step, false});
  }
  if (trace == nullptr)
    return g;
  // The path the instance took: its executed steps, ending in the current one.
  std::vector<std::size_t> path;
  for (const auto& name : trace->executed)
    if (auto it = index.find(name); it != index.end())
      path.push_back(it->second);
  std::optional<std::size_t> current;
  if (auto it = index.find(trace->current); !trace->current.empty() && it != index.end()) {
    current = it->second;
    if (path.empty() || path.back() != *current)
      path.push_back(*current);
  }
  for (auto& n : g.nodes) {
    if (n.step == no_step)
      continue;
    if (current && n.step == *current)
      n.highlight = mark::current;
    else if (std::find(path.begin(), path.end(), n.step) != path.end())
      n.highlight = mark::executed;
  }
  for (auto& e : g.edges) {
    if (e.kind == edge_kind::compensation)
      continue;
    if (e.from_step == no_step) {
      e.highlight = !path.empty() && path.front() == 0;
      continue;
    }
    for (std::size_t k = 0; k + 1 < path.size() && !e.highlight; ++k)
      e.highlight = path[k] == e.from_step && path[k + 1] == e.to_step;
  }
  return g;
}

// -- Mermaid -------------------------------------------------------------------------

/// Mermaid label text: entity codes for the characters Mermaid would interpret.
std::string mermaid_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '#': out += "#35;"; break;
      case '"': out += "#quot;"; break;
      case '<': out += "#lt;"; break;
      case '>': out += "#gt;"; break;
      case '&': out += "#amp;"; break;
      case '\n':
      case '\r': out += ' '; break;
      default: out += c;
    }
  }
  return out;
}

std::string mermaid_label(const std::vector<std::string>& lines) {
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i)
    out += (i == 0 ? "" : "<br/>") + mermaid_text(lines[i]);
  return "\"" + out + "\"";
}

constexpr const char* executed_color = "#2e7d32";

std::string edge_style(const edge& e, bool mermaid) {
  std::vector<std::string> parts;
  switch (e.kind) {
    case edge_kind::plain: break;
    case edge_kind::timeout:
      parts.emplace_back(mermaid ? "stroke-dasharray:6 4" : "style=dashed");
      break;
    case edge_kind::retry:
      parts.emplace_back(mermaid ? "stroke-dasharray:2 3" : "style=dotted");
      break;
    case edge_kind::compensation:
      parts.emplace_back(mermaid ? "stroke:#c0392b" : "color=\"#c0392b\", arrowhead=odot");
      break;
  }
  if (e.highlight)
    parts.emplace_back(mermaid ? std::string{"stroke:"} + executed_color + ",stroke-width:3px"
                               : std::string{"color=\""} + executed_color + "\", penwidth=3");
  std::string out;
  for (const auto& p : parts)
    out += (out.empty() ? "" : (mermaid ? "," : ", ")) + p;
  return out;
}

// -- DOT -----------------------------------------------------------------------------

std::string dot_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      case '\r': break;
      default: out += c;
    }
  }
  return out;
}

std::string dot_label(const std::vector<std::string>& lines) {
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i)
    out += (i == 0 ? "" : "\\n") + dot_text(lines[i]);
  return "\"" + out + "\"";
}

// -- running dot ---------------------------------------------------------------------

/// The path of `dot` on PATH, or empty.
std::string find_dot() {
  const char* path = std::getenv("PATH");
  if (path == nullptr)
    return {};
  std::string_view rest{path};
  while (true) {
    auto colon = rest.find(':');
    std::string dir{rest.substr(0, colon)};
    if (dir.empty())
      dir = ".";
    auto candidate = dir + "/dot";
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)
        && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (colon == std::string_view::npos)
      return {};
    rest.remove_prefix(colon + 1);
  }
}

/// A temporary directory removed (with the files we put in it) on destruction.
class temp_dir {
public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string{base != nullptr && *base != '\0' ? base : "/tmp"}
                       + "/longhaul-flow-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr)
      path_ = tmpl;
  }
  ~temp_dir() {
    if (path_.empty())
      return;
    for (const auto& f : files_)
      ::unlink((path_ + "/" + f).c_str());
    ::rmdir(path_.c_str());
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  [[nodiscard]] bool ok() const noexcept { return !path_.empty(); }
  std::string file(const std::string& name) {
    files_.push_back(name);
    return path_ + "/" + name;
  }

private:
  std::string path_;
  std::vector<std::string> files_;
};

std::string read_all(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

caf::error dot_failed(const std::string& text) {
  return make_persistence_error(persistence_errc::internal, "graphviz dot failed: " + text);
}

}  // namespace

flow_trace trace_of(const flow_status& status) {
  return flow_trace{status.executed, status.current_step};
}

std::string human_duration(std::chrono::milliseconds d) {
  using namespace std::chrono;
  if (d.count() == 0)
    return "0ms";
  std::string out;
  std::int64_t ms = d.count();
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const std::pair<std::int64_t, const char*> units[] = {
    {24LL * 3600 * 1000, "d"}, {3600LL * 1000, "h"}, {60LL * 1000, "m"}, {1000, "s"}, {1, "ms"}};
  bool first = true;
  for (const auto& [size, suffix] : units) {
    if (ms >= size) {
      out += (first ? "" : " ") + std::to_string(ms / size) + suffix;
      first = false;
      ms %= size;
    }
  }
  return out;
}

std::string to_mermaid(const flow_definition& def, const flow_trace* trace) {
  auto g = build_graph(def, trace);
  std::string out = "flowchart TD\n";
  out += "  %% " + mermaid_text(g.title) + "\n";
  for (const auto& n : g.nodes) {
    auto label = mermaid_label(n.lines);
    out += "  " + n.id;
    switch (n.shape) {
      case node_shape::trigger: out += ">" + label + "]"; break;
      case node_shape::send: out += "[" + label + "]"; break;
      case node_shape::wait: out += "{{" + label + "}}"; break;
      case node_shape::decide: out += "{" + label + "}"; break;
      case node_shape::end: out += "([" + label + "])"; break;
      case node_shape::compensation: out += "(" + label + ")"; break;
    }
    out += "\n";
  }
  for (const auto& e : g.edges) {
    std::string arrow;
    switch (e.kind) {
      case edge_kind::plain: arrow = "-->"; break;
      case edge_kind::timeout:
      case edge_kind::retry: arrow = "-.->"; break;
      case edge_kind::compensation: arrow = "--o"; break;
    }
    out += "  " + e.from + " " + arrow;
    if (!e.label.empty())
      out += "|\"" + mermaid_text(e.label) + "\"|";
    out += " " + e.to + "\n";
  }
  // One linkStyle line per distinct style (Mermaid numbers links in order of appearance).
  std::vector<std::pair<std::string, std::string>> styles;  // style, indices
  for (std::size_t i = 0; i < g.edges.size(); ++i) {
    auto style = edge_style(g.edges[i], true);
    if (style.empty())
      continue;
    auto it = std::find_if(styles.begin(), styles.end(),
                           [&](const auto& s) { return s.first == style; });
    if (it == styles.end())
      styles.emplace_back(style, std::to_string(i));
    else
      it->second += "," + std::to_string(i);
  }
  for (const auto& [style, indices] : styles)
    out += "  linkStyle " + indices + " " + style + "\n";
  auto class_line = [&](const char* cls, auto pick) {
    std::string ids;
    for (const auto& n : g.nodes)
      if (pick(n))
        ids += (ids.empty() ? "" : ",") + n.id;
    if (!ids.empty())
      out += "  class " + ids + " " + cls + "\n";
    return !ids.empty();
  };
  bool any_compensation = std::any_of(g.nodes.begin(), g.nodes.end(), [](const node& n) {
    return n.shape == node_shape::compensation;
  });
  if (any_compensation) {
    out += "  classDef compensation fill:#fdecea,stroke:#c0392b\n";
    class_line("compensation", [](const node& n) { return n.shape == node_shape::compensation; });
  }
  if (trace != nullptr) {
    out += std::string{"  classDef executed fill:#d4edda,stroke:"} + executed_color
           + ",stroke-width:2px\n";
    out += "  classDef current fill:#ffe8cc,stroke:#e67e22,stroke-width:4px\n";
    class_line("executed", [](const node& n) { return n.highlight == mark::executed; });
    class_line("current", [](const node& n) { return n.highlight == mark::current; });
  }
  return out;
}

std::string to_dot(const flow_definition& def, const flow_trace* trace) {
  auto g = build_graph(def, trace);
  std::string out = "digraph " + dot_label({def.name}) + " {\n";
  out += "  graph [label=" + dot_label({g.title}) + ", labelloc=t, fontname=\"Helvetica\"];\n";
  out += "  node [fontname=\"Helvetica\", fontsize=11];\n";
  out += "  edge [fontname=\"Helvetica\", fontsize=10];\n";
  for (const auto& n : g.nodes) {
    out += "  " + n.id + " [label=" + dot_label(n.lines);
    std::string style;  // DOT has one style attribute: shape styles and "filled" combine
    switch (n.shape) {
      case node_shape::trigger: out += ", shape=cds"; break;
      case node_shape::send: out += ", shape=box"; break;
      case node_shape::wait: out += ", shape=hexagon"; break;
      case node_shape::decide: out += ", shape=diamond"; break;
      case node_shape::end:
        out += ", shape=box, peripheries=2";
        style = "rounded";
        break;
      case node_shape::compensation:
        out += ", shape=box";
        style = "rounded,filled";
        break;
    }
    if (n.highlight != mark::none && style.find("filled") == std::string::npos)
      style += style.empty() ? "filled" : ",filled";
    if (!style.empty())
      out += ", style=\"" + style + "\"";
    if (n.shape == node_shape::compensation)
      out += ", fillcolor=\"#fdecea\", color=\"#c0392b\"";
    if (n.highlight == mark::executed)
      out += std::string{", fillcolor=\"#d4edda\", color=\""} + executed_color
             + "\", penwidth=2";
    else if (n.highlight == mark::current)
      out += ", fillcolor=\"#ffe8cc\", color=\"#e67e22\", penwidth=4";
    out += "];\n";
    if (!n.beside.empty())
      out += "  { rank=same; " + n.beside + "; " + n.id + "; }\n";
  }
  for (const auto& e : g.edges) {
    out += "  " + e.from + " -> " + e.to;
    std::string attrs;
    if (!e.label.empty())
      attrs = "label=" + dot_label({e.label});
    auto style = edge_style(e, false);
    if (!style.empty())
      attrs += (attrs.empty() ? "" : ", ") + style;
    if (!attrs.empty())
      out += " [" + attrs + "]";
    out += ";\n";
  }
  out += "}\n";
  return out;
}

caf::expected<std::string> to_svg(const flow_definition& def, const flow_trace* trace) {
  auto dot = find_dot();
  if (dot.empty())
    return make_persistence_error(persistence_errc::cannot_open,
                                  "graphviz 'dot' not found; install graphviz");
  temp_dir dir;
  if (!dir.ok())
    return dot_failed(std::string{"cannot create a temporary directory: "} + std::strerror(errno));
  auto in_path = dir.file("flow.dot");
  auto out_path = dir.file("flow.svg");
  auto err_path = dir.file("dot.err");
  {
    std::ofstream in{in_path, std::ios::binary};
    in << to_dot(def, trace);
    if (!in.flush())
      return dot_failed("cannot write " + in_path);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  std::string arg_format = "-Tsvg";
  std::string arg_out = "-o" + out_path;
  std::vector<char*> argv{dot.data(), arg_format.data(), arg_out.data(), in_path.data(),
                          nullptr};
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, dot.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    return dot_failed("cannot run " + dot + ": " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return dot_failed(std::string{"waitpid: "} + std::strerror(errno));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    auto message = read_all(err_path);
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r'))
      message.pop_back();
    auto how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                 : "signal " + std::to_string(WTERMSIG(status));
    return dot_failed(how + (message.empty() ? "" : ": " + message));
  }
  auto svg = read_all(out_path);
  if (svg.find("<svg") == std::string::npos)
    return dot_failed("no SVG in its output");
  return svg;
}

}  // namespace longhaul
