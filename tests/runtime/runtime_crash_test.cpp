// Real crash test of the runtime: runtime_crash_child drives `add` commands (which forward
// shares to other instances through the outbox) into a SQLite-backed runtime and is
// SIGKILLed at random moments and restarted; a final run drains the outbox and reports every
// instance. The journal and the reported states must hold every acknowledged command and
// every effect it implies exactly once. Env: LONGHAUL_CRASH_SEED (kill timing; thread
// interleaving is not reproducible), LONGHAUL_CRASH_KILLS (default 20).
#include "persistence/sqlite_journal.hpp"
#include "tests/crash_harness.hpp"
#include "tests/runtime/crash_entities.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#ifndef LONGHAUL_RUNTIME_CRASH_CHILD
#  error "LONGHAUL_RUNTIME_CRASH_CHILD must name the runtime_crash_child executable"
#endif

namespace {

using namespace longhaul::persistence;
namespace fs = std::filesystem;
using longhaul::testing::child_process;

constexpr std::uint64_t default_kills = 20;
constexpr std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();

/// A numeric environment variable, or nullopt when unset. Malformed values fail the test.
std::optional<std::uint64_t> env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0')
    return std::nullopt;
  std::uint64_t value = 0;
  std::string_view sv{text};
  auto [end, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), value);
  if (ec != std::errc{} || end != sv.data() + sv.size())
    FAIL(name << " must be a non-negative integer, got '" << text << "'");
  return value;
}

/// A fresh directory under the system temp dir; removed unless the test is failing.
struct scratch_dir {
  fs::path path;

  explicit scratch_dir(const std::string& name) {
    path = fs::temp_directory_path() / ("longhaul_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }

  ~scratch_dir() {
    if (std::uncaught_exceptions() > 0) {
      std::cout << "kept " << path << " for inspection\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// -- the model -------------------------------------------------------------------------

/// A parsed command id "r<run>t<thread>n<n>".
struct command_ref {
  std::uint64_t run = 0;
  std::uint64_t thread = 0;
  std::uint64_t n = 0;
};

std::optional<command_ref> parse_command_id(std::string_view id) {
  command_ref ref;
  auto field = [&](char tag, std::uint64_t& out) {
    if (id.empty() || id.front() != tag)
      return false;
    id.remove_prefix(1);
    auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), out);
    if (ec != std::errc{} || end == id.data())
      return false;
    id.remove_prefix(static_cast<std::size_t>(end - id.data()));
    return true;
  };
  if (!field('r', ref.run) || !field('t', ref.thread) || !field('n', ref.n) || !id.empty())
    return std::nullopt;
  return ref;
}

/// One hop of the share an `add` forwards, as the counter entity must store it.
struct hop_effect {
  std::string key;       ///< "<cmd_id>/<hop>"
  std::string instance;  ///< where it is received
  std::int64_t amount = 0;
  std::int64_t kept = 0;
};

/// Every hop the `add` with `cmd_id` causes (mirrors crash::counter::decide).
std::vector<hop_effect> chain_of(const std::string& cmd_id) {
  std::vector<hop_effect> out;
  auto share = crash::share_of(cmd_id, crash::amount_of(cmd_id));
  for (std::uint32_t hop = 1; share > 0; ++hop) {
    auto next = crash::forwarded_of(hop, share);
    out.push_back({crash::hop_key(cmd_id, hop), crash::hop_target(cmd_id, hop), share,
                   share - next});
    share = next;
  }
  return out;
}

/// What the parent saw after the runs: the ack log, the journal, the reported states.
struct observation {
  std::vector<std::string> ack_lines;
  std::map<std::string, replay_result> journal;  ///< by instance id ("c0042")
  std::map<std::string, std::string> states;     ///< by instance id: reported state JSON
  std::set<std::uint64_t> killed_runs;           ///< runs that may have left a command unacked
};

/// What a check found: the problems (empty = consistent) and the figures.
struct check_report {
  std::vector<std::string> problems;
  std::uint64_t acked = 0;            ///< acknowledged commands
  std::uint64_t stored_unacked = 0;   ///< stored, ack line lost to the kill (tolerated)
  std::uint64_t hops = 0;             ///< share hops delivered through the outbox
  std::uint64_t events = 0;
  std::int64_t total_value = 0;

  void problem(std::string text) { problems.push_back(std::move(text)); }

  [[nodiscard]] bool reported(std::string_view text) const {
    return std::any_of(problems.begin(), problems.end(),
                       [&](const std::string& p) { return p.find(text) != std::string::npos; });
  }

  /// The first problems, one per line, for a failure message.
  [[nodiscard]] std::string summary() const {
    std::string out = std::to_string(problems.size()) + " problem(s):";
    for (std::size_t i = 0; i < problems.size() && i < 25; ++i)
      out += "\n  " + problems[i];
    return out;
  }
};

/// Where one stored effect was found.
struct found_effect {
  std::string instance;
  sequence_nr seq = 0;
  std::int64_t amount = 0;
  std::int64_t kept = 0;
};

std::string describe_found(const std::vector<found_effect>& found) {
  std::string out;
  for (const auto& f : found)
    out += (out.empty() ? "" : ", ") + f.instance + " seq " + std::to_string(f.seq);
  return out;
}

template <class T>
std::optional<T> decode(const std::string& json) {
  try {
    return boost::json::value_to<T>(boost::json::parse(json));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// Checks the observation against the model: every acknowledged `add` is stored exactly
/// once at its target; a stored but unacknowledged `add` is only the one command a driver
/// thread of a killed run had in flight (the next after its last ack); every stored `add`
/// has each hop of its share stored exactly once at the hop's target, and nothing else is
/// stored; per instance the seqs run 1..highest; every reported state equals the state the
/// stored commands imply.
check_report check_model(const observation& obs) {
  check_report report;
  // 1. The ack log: each thread's acks are n = 0..k-1 (one ask at a time, acked in order).
  std::unordered_set<std::string> acked;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::set<std::uint64_t>> acked_n;
  for (const auto& line : obs.ack_lines) {
    auto ref = parse_command_id(line);
    if (!ref) {
      report.problem("malformed ack log line '" + line + "'");
      continue;
    }
    if (!acked.insert(line).second)
      report.problem("command " + line + " is in the ack log twice");
    acked_n[{ref->run, ref->thread}].insert(ref->n);
  }
  report.acked = acked.size();
  for (const auto& [key, ns] : acked_n)
    if (*ns.rbegin() + 1 != ns.size())
      report.problem("acks of r" + std::to_string(key.first) + "t" + std::to_string(key.second)
                     + " are not n = 0.." + std::to_string(ns.size() - 1));
  // 2. The journal: contiguous seqs; collect the stored effects.
  std::map<std::string, std::vector<found_effect>> adds;  // by cmd_id
  std::map<std::string, std::vector<found_effect>> hops;  // by hop key
  for (const auto& [instance, replayed] : obs.journal) {
    const auto& events = replayed.events;
    if (replayed.highest_seq != events.size())
      report.problem(instance + ": highest_seq " + std::to_string(replayed.highest_seq) + " but "
                     + std::to_string(events.size()) + " events stored");
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto& ev = events[i];
      auto where = instance + " seq " + std::to_string(ev.seq);
      if (ev.seq != i + 1 || ev.persistence_id != "counter/" + instance) {
        report.problem(instance + ": event " + std::to_string(i) + " has seq "
                       + std::to_string(ev.seq) + " of '" + ev.persistence_id
                       + "' (gap or foreign event)");
        break;
      }
      ++report.events;
      if (ev.type == crash::added::event_name) {
        auto a = decode<crash::added>(ev.payload_json);
        if (!a) {
          report.problem(where + ": undecodable " + ev.type + " " + ev.payload_json);
          continue;
        }
        adds[a->cmd_id].push_back({instance, ev.seq, a->amount, a->kept});
      } else if (ev.type == crash::share_received::event_name) {
        auto r = decode<crash::share_received>(ev.payload_json);
        if (!r) {
          report.problem(where + ": undecodable " + ev.type + " " + ev.payload_json);
          continue;
        }
        hops[crash::hop_key(r->origin, r->hop)].push_back({instance, ev.seq, r->amount, r->kept});
      } else {
        report.problem(where + ": unexpected event '" + ev.type + "' " + ev.payload_json);
      }
    }
  }
  // 3. The stored commands: acked ones, plus at most the in-flight one per killed thread.
  std::map<std::string, crash::counter_state> expected;  // by instance id
  auto account = [&](const std::string& instance, std::int64_t kept, const std::string& key,
                     bool is_add) {
    auto& st = expected[instance];
    st.value += kept;
    (is_add ? st.adds : st.receipts) += 1;
    st.digest += crash::fnv1a(key);
    report.total_value += kept;
  };
  std::set<std::string> expected_hops;
  for (const auto& [cmd_id, found] : adds) {
    auto what = "command " + cmd_id;
    auto ref = parse_command_id(cmd_id);
    if (!ref) {
      report.problem(what + " (" + describe_found(found) + ") is not a command id of the child");
      continue;
    }
    if (found.size() != 1)
      report.problem(what + " is applied " + std::to_string(found.size()) + " times ("
                     + describe_found(found) + ")");
    if (acked.count(cmd_id) == 0) {
      auto it = acked_n.find({ref->run, ref->thread});
      auto next = it == acked_n.end() ? 0 : it->second.size();
      // Still accounted below: the journal is what the reported states must reflect.
      if (obs.killed_runs.count(ref->run) == 0 || ref->n != next)
        report.problem(what + " is stored (" + describe_found(found)
                       + ") but neither acknowledged nor the command its thread had in flight"
                         " at a kill");
      else
        ++report.stored_unacked;
    }
    auto amount = crash::amount_of(cmd_id);
    auto kept = amount - crash::share_of(cmd_id, amount);
    const auto& f = found.front();
    if (f.instance != crash::target_of(cmd_id) || f.amount != amount || f.kept != kept)
      report.problem(what + " stored at " + f.instance + " with amount " + std::to_string(f.amount)
                     + " kept " + std::to_string(f.kept) + "; expected " + crash::target_of(cmd_id)
                     + ", " + std::to_string(amount) + ", " + std::to_string(kept));
    account(crash::target_of(cmd_id), kept, cmd_id, true);
    for (const auto& hop : chain_of(cmd_id)) {
      expected_hops.insert(hop.key);
      account(hop.instance, hop.kept, hop.key, false);
      auto it = hops.find(hop.key);
      if (it == hops.end()) {
        report.problem("share " + hop.key + " (" + std::to_string(hop.amount) + " to "
                       + hop.instance + ") is lost");
        continue;
      }
      const auto& got = it->second;
      ++report.hops;
      if (got.size() != 1)
        report.problem("share " + hop.key + " is applied " + std::to_string(got.size())
                       + " times (" + describe_found(got) + ")");
      if (got.front().instance != hop.instance || got.front().amount != hop.amount
          || got.front().kept != hop.kept)
        report.problem("share " + hop.key + " stored at " + got.front().instance + " with amount "
                       + std::to_string(got.front().amount) + "; expected " + hop.instance + ", "
                       + std::to_string(hop.amount));
    }
  }
  for (const auto& cmd_id : acked)
    if (adds.count(cmd_id) == 0)
      report.problem("acknowledged command " + cmd_id + " (to " + crash::target_of(cmd_id)
                     + ") is lost");
  for (const auto& [key, found] : hops)
    if (expected_hops.count(key) == 0)
      report.problem("share " + key + " (" + describe_found(found)
                     + ") is stored but no stored command sent it");
  // 4. The states the final run reported.
  for (std::uint64_t i = 0; i < crash::instance_count; ++i) {
    auto instance = crash::instance_id(i);
    auto it = obs.states.find(instance);
    if (it == obs.states.end()) {
      report.problem("no state reported for " + instance);
      continue;
    }
    auto got = decode<crash::counter_state>(it->second);
    auto want = expected[instance];
    auto want_json = boost::json::serialize(boost::json::value_from(want));
    if (!got)
      report.problem(instance + ": reported state " + it->second + " does not decode");
    else if (got->value != want.value || got->adds != want.adds || got->receipts != want.receipts
             || got->digest != want.digest)
      report.problem(instance + ": reported state " + it->second + ", expected " + want_json);
  }
  for (const auto& [instance, json] : obs.states)
    if (expected.count(instance) == 0)  // the loop above added every known instance
      report.problem("state reported for unknown instance '" + instance + "'");
  return report;
}

// -- reading what the child left -------------------------------------------------------

std::vector<std::string> read_ack_log(const fs::path& file, check_report& report) {
  std::vector<std::string> lines;
  std::ifstream in{file, std::ios::binary};
  if (!in)
    return lines;  // nothing was acknowledged yet
  std::string content{std::istreambuf_iterator<char>{in}, {}};
  if (!content.empty() && content.back() != '\n')
    report.problem("ack log ends with an incomplete line");
  std::istringstream stream{content};
  std::string line;
  while (std::getline(stream, line))
    lines.push_back(line);
  return lines;
}

std::unique_ptr<sqlite_journal> open_read_only(const fs::path& db, check_report& report) {
  sqlite_journal_config cfg;
  cfg.path = db.string();
  cfg.read_only = true;
  auto opened = sqlite_journal::open(std::move(cfg));
  if (!opened) {
    report.problem("opening the journal read-only failed: " + describe(opened.error()));
    return nullptr;
  }
  return std::move(*opened);
}

/// Replays every instance into `obs` and checks the journal-wide invariants: read_all
/// returns exactly the replayed events in strictly increasing positions, no dead letters,
/// and (after the final run) an empty outbox.
void read_journal(const fs::path& db, observation& obs, check_report& report) {
  auto journal = open_read_only(db, report);
  if (!journal)
    return;
  std::uint64_t replayed = 0;
  for (std::uint64_t i = 0; i < crash::instance_count; ++i) {
    auto instance = crash::instance_id(i);
    auto r = journal->replay("counter/" + instance, 1, max_sequence_nr, unlimited);
    if (!r) {
      report.problem("replay " + instance + ": " + describe(r.error()));
      continue;
    }
    replayed += r->events.size();
    obs.journal[instance] = std::move(*r);
  }
  auto all = journal->read_all(0, unlimited, std::nullopt);
  if (!all) {
    report.problem("read_all: " + describe(all.error()));
  } else {
    if (all->size() != replayed)
      report.problem("read_all returned " + std::to_string(all->size()) + " events, replay of "
                     "the instances " + std::to_string(replayed));
    for (std::size_t i = 1; i < all->size(); ++i)
      if ((*all)[i].position <= (*all)[i - 1].position) {
        report.problem("read_all positions do not increase at index " + std::to_string(i));
        break;
      }
  }
  auto outbox = journal->outbox_pending(0, unlimited);
  if (!outbox)
    report.problem("outbox_pending: " + describe(outbox.error()));
  else if (!outbox->empty())
    report.problem(std::to_string(outbox->size()) + " outbox messages were never delivered "
                   "(first: " + outbox->front().message_id + " to "
                   + outbox->front().destination + ")");
  auto dead = journal->dead_letters(0, unlimited);
  if (!dead)
    report.problem("dead_letters: " + describe(dead.error()));
  else if (!dead->empty())
    report.problem(std::to_string(dead->size()) + " dead letters (first: "
                   + dead->front().message_id + " to " + dead->front().destination + ": "
                   + dead->front().reason + ")");
}

/// Parses the final run's "state <id> <json>" lines.
std::map<std::string, std::string> reported_states(const std::string& output,
                                                   check_report& report) {
  std::map<std::string, std::string> states;
  std::istringstream stream{output};
  std::string line;
  while (std::getline(stream, line)) {
    if (line.rfind("state ", 0) != 0)
      continue;
    auto space = line.find(' ', 6);
    if (space == std::string::npos) {
      report.problem("malformed state line '" + line + "'");
      continue;
    }
    auto id = line.substr(6, space - 6);
    if (!states.emplace(id, line.substr(space + 1)).second)
      report.problem("state of " + id + " reported twice");
  }
  return states;
}

/// One chain of child runs on one journal, with the checks run between the kills.
struct crash_fixture {
  scratch_dir dir;
  fs::path db;
  fs::path acks;
  std::uint64_t runs = 0;
  // Incremental check after each kill: the `add` commands stored so far.
  std::uint64_t cursor = 0;
  std::unordered_set<std::string> stored_adds;
  std::uint64_t acks_checked = 0;

  explicit crash_fixture(const std::string& name)
    : dir(name), db(dir.path / "journal.db"), acks(dir.path / "acks.log") {}

  child_process start_child(bool final_run) {
    // 8 driver threads; passivation after 200 ms idle, so instances also stop and recover
    // (from snapshots every 5 events) while the runs go on.
    std::vector<std::string> args{"--db",           db.string(),
                                  "--acks",         acks.string(),
                                  "--run",          std::to_string(runs),
                                  "--threads",      "8",
                                  "--passivate-ms", "200",
                                  "--snapshot-every", "5",
                                  "--final",        final_run ? "1" : "0"};
    ++runs;
    return child_process::spawn(LONGHAUL_RUNTIME_CRASH_CHILD, args);
  }

  /// Outbox messages found undelivered after a kill.
  struct outbox_figures {
    std::uint64_t left = 0;          ///< all of them
    std::uint64_t carried_over = 0;  ///< already undelivered after the previous kill
  };
  std::set<std::string> undelivered;  ///< message ids after the previous kill

  /// After a kill: every acknowledged command is stored, none twice. Returns what the
  /// killed run left in the outbox.
  outbox_figures require_acks_stored(const std::string& after) {
    check_report report;
    outbox_figures figures;
    auto lines = read_ack_log(acks, report);
    // A kill during the first start() may leave no journal, or one without its schema
    // (a read-only open does not create it): fine while nothing was acknowledged.
    check_report opening;
    auto journal = open_read_only(db, opening);
    if (!journal && !lines.empty())
      report.problems.insert(report.problems.end(), opening.problems.begin(),
                             opening.problems.end());
    if (journal) {
      auto fresh = journal->read_all(cursor, unlimited, std::nullopt);
      if (!fresh)
        report.problem("read_all: " + describe(fresh.error()));
      else
        for (const auto& ev : *fresh) {
          cursor = std::max(cursor, ev.position);
          if (ev.type != crash::added::event_name)
            continue;
          auto a = decode<crash::added>(ev.payload_json);
          if (!a)
            report.problem("undecodable event " + ev.payload_json);
          else if (!stored_adds.insert(a->cmd_id).second)
            report.problem("command " + a->cmd_id + " is stored twice");
        }
      auto outbox = journal->outbox_pending(0, unlimited);
      if (!outbox)
        report.problem("outbox_pending: " + describe(outbox.error()));
      else {
        std::set<std::string> now;
        for (const auto& row : *outbox) {
          figures.carried_over += undelivered.count(row.message_id);
          now.insert(row.message_id);
        }
        figures.left = now.size();
        undelivered = std::move(now);
      }
    }
    for (std::size_t i = acks_checked; i < lines.size(); ++i)
      if (stored_adds.count(lines[i]) == 0)
        report.problem("acknowledged command " + lines[i] + " is not stored");
    acks_checked = lines.size();
    INFO("after " << after << " (dir " << dir.path << ")");
    INFO(report.summary());
    REQUIRE(report.problems.empty());
    return figures;
  }
};

// -- forged observations for the oracle test ---------------------------------------------

event_record make_event(const std::string& instance, sequence_nr seq, const std::string& type,
                        const boost::json::value& payload) {
  event_record ev;
  ev.persistence_id = "counter/" + instance;
  ev.seq = seq;
  ev.type = type;
  ev.payload_json = boost::json::serialize(payload);
  return ev;
}

void store(observation& obs, const std::string& instance, const std::string& type,
           const boost::json::value& payload) {
  auto& r = obs.journal[instance];
  r.events.push_back(make_event(instance, r.events.size() + 1, type, payload));
  r.highest_seq = r.events.size();
}

/// The observation a correct runtime produces when exactly `stored` commands were stored:
/// their events, every hop of their shares, and the states they imply.
observation perfect_world(const std::vector<std::string>& stored) {
  observation obs;
  std::map<std::string, crash::counter_state> states;
  for (const auto& cmd_id : stored) {
    auto amount = crash::amount_of(cmd_id);
    auto kept = amount - crash::share_of(cmd_id, amount);
    auto target = crash::target_of(cmd_id);
    store(obs, target, crash::added::event_name,
          boost::json::value_from(crash::added{cmd_id, amount, kept}));
    crash::counter::apply(states[target], crash::added{cmd_id, amount, kept});
    std::uint32_t hop = 1;
    for (const auto& h : chain_of(cmd_id)) {
      crash::share_received r{cmd_id, hop++, h.amount, h.kept};
      store(obs, h.instance, crash::share_received::event_name, boost::json::value_from(r));
      crash::counter::apply(states[h.instance], r);
    }
  }
  for (std::uint64_t i = 0; i < crash::instance_count; ++i) {
    auto id = crash::instance_id(i);
    obs.states[id] = boost::json::serialize(boost::json::value_from(states[id]));
  }
  return obs;
}

/// The id the child gives command `n` of thread `thread` in run `run`.
std::string command_id(std::uint64_t run, std::uint64_t thread, std::uint64_t n) {
  return "r" + std::to_string(run) + "t" + std::to_string(thread) + "n" + std::to_string(n);
}

}  // namespace

TEST_CASE("the runtime crash model reports lost, doubled, unexpected and misreported effects",
          "[crash][runtime]") {
  // The oracle must be able to fail: forge observations of a correct runtime, then damage
  // them the ways a broken runtime would.
  std::vector<std::string> acked;
  for (std::uint64_t n = 0; n < 40; ++n)
    acked.push_back(command_id(0, n % 4, n / 4));
  auto in_flight = command_id(0, 1, 10);  // thread 1 acked n = 0..9
  auto stored = acked;
  stored.push_back(in_flight);
  auto with_chain = std::find_if(acked.begin(), acked.end(), [](const std::string& id) {
    return chain_of(id).size() == crash::max_hops;
  });
  REQUIRE(with_chain != acked.end());
  auto forged = [&](const std::vector<std::string>& s) {
    auto obs = perfect_world(s);
    obs.ack_lines = acked;
    obs.killed_runs = {0};
    return obs;
  };

  SECTION("a consistent world passes, tolerating the one command in flight at the kill") {
    auto report = check_model(forged(stored));
    INFO(report.summary());
    CHECK(report.problems.empty());
    CHECK(report.acked == 40);
    CHECK(report.stored_unacked == 1);
    CHECK(report.hops > 0);
  }
  SECTION("an unacknowledged command is tolerated only for a killed run") {
    auto obs = forged(stored);
    obs.killed_runs.clear();
    auto report = check_model(obs);
    CHECK(report.reported("command " + in_flight + " is stored"));
  }
  SECTION("a stored command beyond the one in flight is reported") {
    auto s = stored;
    s.push_back(command_id(0, 1, 11));
    auto report = check_model(forged(s));
    CHECK(report.reported("command r0t1n11 is stored"));
    CHECK(report.problems.size() == 1);
  }
  SECTION("a lost acknowledged command is reported") {
    auto s = stored;
    s.erase(std::find(s.begin(), s.end(), acked[7]));
    auto obs = forged(s);
    obs.states = perfect_world(stored).states;
    auto report = check_model(obs);
    CHECK(report.reported("acknowledged command " + acked[7]));
  }
  SECTION("a command applied twice is reported") {
    auto obs = forged(stored);
    auto target = crash::target_of(acked[3]);
    auto amount = crash::amount_of(acked[3]);
    store(obs, target, crash::added::event_name,
          boost::json::value_from(
            crash::added{acked[3], amount, amount - crash::share_of(acked[3], amount)}));
    auto report = check_model(obs);
    CHECK(report.reported("command " + acked[3] + " is applied 2 times"));
  }
  SECTION("a lost, a doubled and a stray share are reported") {
    auto obs = forged(stored);
    auto chain = chain_of(*with_chain);
    // Lose hop 3: drop its event from the receiver's stream (and renumber).
    auto& r3 = obs.journal[chain[2].instance];
    auto it3 = std::find_if(r3.events.begin(), r3.events.end(), [&](const event_record& ev) {
      return ev.type == crash::share_received::event_name
             && ev.payload_json.find("\"" + *with_chain + "\"") != std::string::npos
             && ev.payload_json.find("\"hop\":3") != std::string::npos;
    });
    REQUIRE(it3 != r3.events.end());
    r3.events.erase(it3);
    for (std::size_t i = 0; i < r3.events.size(); ++i)
      r3.events[i].seq = i + 1;
    r3.highest_seq = r3.events.size();
    // Deliver hop 1 twice.
    store(obs, chain[0].instance, crash::share_received::event_name,
          boost::json::value_from(crash::share_received{*with_chain, 1, chain[0].amount,
                                                        chain[0].kept}));
    // A share nobody sent.
    store(obs, "c0007", crash::share_received::event_name,
          boost::json::value_from(crash::share_received{"r9t0n0", 1, 5, 5}));
    auto report = check_model(obs);
    INFO(report.summary());
    CHECK(report.reported("share " + chain[2].key + " (" + std::to_string(chain[2].amount)));
    CHECK(report.reported("is lost"));
    CHECK(report.reported("share " + chain[0].key + " is applied 2 times"));
    CHECK(report.reported("share r9t0n0/1 (c0007"));
  }
  SECTION("a reported state that differs from the journal is reported") {
    auto obs = forged(stored);
    auto target = crash::target_of(acked[0]);
    auto st = decode<crash::counter_state>(obs.states[target]);
    REQUIRE(st);
    st->value += 1;
    obs.states[target] = boost::json::serialize(boost::json::value_from(*st));
    obs.states.erase("c0999");
    auto report = check_model(obs);
    CHECK(report.reported(target + ": reported state"));
    CHECK(report.reported("no state reported for c0999"));
    CHECK(report.problems.size() == 2);
  }
  SECTION("a gap in an instance's sequence numbers and a foreign event are reported") {
    auto obs = forged(stored);
    auto target = crash::target_of(acked[0]);
    obs.journal[target].events.front().seq = 2;
    store(obs, "c0001", "longhaul.incident_opened", boost::json::object{{"error", "boom"}});
    auto report = check_model(obs);
    CHECK(report.reported(target + ": event 0 has seq 2"));
    CHECK(report.reported("unexpected event 'longhaul.incident_opened'"));
  }
}

TEST_CASE("acknowledged commands and the outbox messages they send survive repeated SIGKILLs "
          "of the runtime, applied exactly once",
          "[crash][runtime]") {
  auto seed = env_number("LONGHAUL_CRASH_SEED").value_or(std::random_device{}());
  auto kills = env_number("LONGHAUL_CRASH_KILLS").value_or(default_kills);
  std::cout << "runtime crash test: seed " << seed << ", " << kills
            << " kills (LONGHAUL_CRASH_SEED / LONGHAUL_CRASH_KILLS)" << std::endl;
  auto started = std::chrono::steady_clock::now();
  crash_fixture fx{"runtime_crash"};
  std::mt19937_64 rng{seed};
  std::set<std::uint64_t> killed_runs;
  std::uint64_t kills_before_ready = 0;
  std::uint64_t carried_over_total = 0;
  std::uint64_t outbox_left_total = 0;
  std::uint64_t kills_leaving_outbox = 0;
  for (std::uint64_t i = 0; i < kills; ++i) {
    INFO("kill " << i << " (seed " << seed << ")");
    auto run = fx.runs;
    auto child = fx.start_child(false);
    std::chrono::microseconds delay{0};
    if (rng() % 6 == 0) {
      // Into start() (about 40 ms): opening the journal, the outbox dispatcher's first poll.
      delay = std::chrono::microseconds{rng() % 40000};
    } else {
      REQUIRE(child.wait_for_line("ready", std::chrono::seconds{30}));
      delay = std::chrono::milliseconds{20 + rng() % 700};
    }
    auto status = child.kill_after(delay);
    INFO("child ended by " << status.describe() << "; stdout: " << child.output());
    REQUIRE(status.killed());
    killed_runs.insert(run);
    bool was_ready = child.has_line("ready");
    kills_before_ready += was_ready ? 0 : 1;
    auto outbox = fx.require_acks_stored("kill " + std::to_string(i));
    outbox_left_total += outbox.left;
    kills_leaving_outbox += outbox.left > 0 ? 1 : 0;
    carried_over_total += outbox.carried_over;
    std::cout << "kill " << i << " after " << delay.count() / 1000 << " ms"
              << (was_ready ? "" : " (before ready)") << ": " << fx.acks_checked
              << " commands acked so far; outbox: " << outbox.left << " messages undelivered, "
              << outbox.carried_over << " of them left by the earlier kills" << std::endl;
  }
  // The final run sends nothing new: it drains what the killed runs left in the outbox and
  // reports every instance.
  auto child = fx.start_child(true);
  REQUIRE(child.wait_for_line("ready", std::chrono::seconds{30}));
  // Bounded: the child gives up draining after 60 s; stop() is bounded by stop_timeout.
  bool done = child.wait_for_line("done", std::chrono::seconds{180});
  if (!done)
    child.kill();
  auto status = child.wait();
  INFO("final run ended by " << status.describe());
  REQUIRE(status.exited);
  REQUIRE(status.exit_code == 0);
  REQUIRE(done);
  check_report report;
  observation obs;
  obs.ack_lines = read_ack_log(fx.acks, report);
  obs.killed_runs = killed_runs;
  obs.states = reported_states(child.output(), report);
  read_journal(fx.db, obs, report);
  auto model = check_model(obs);
  report.problems.insert(report.problems.end(), model.problems.begin(), model.problems.end());
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  std::string drained;
  {
    auto pos = child.output().find("drained ");
    if (pos != std::string::npos)
      drained = child.output().substr(pos + 8, child.output().find('\n', pos) - pos - 8);
  }
  std::cout << "runtime crash test: " << kills << " kills (" << kills_before_ready
            << " before ready), " << model.acked << " commands acked, " << model.stored_unacked
            << " stored without ack, " << model.hops << " outbox shares delivered, "
            << model.events << " events; " << outbox_left_total << " outbox messages left by "
            << kills_leaving_outbox << " kills (" << carried_over_total
            << " of them still there at the next kill), drained in " << drained << " ms; total value "
            << model.total_value << "; " << elapsed.count() << " ms" << std::endl;
  INFO("seed " << seed << ", dir " << fx.dir.path);
  INFO(report.summary());
  REQUIRE(report.problems.empty());
  // A chain that acknowledged nothing or forwarded nothing through the outbox checks nothing.
  REQUIRE(model.acked > 0);
  REQUIRE(model.hops > 0);
}
