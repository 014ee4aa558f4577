// Real crash test of flows: flow_crash_child runs 200 order sagas (shop::order_flow, a mix
// of completed, timed-out, canceled and compensated paths) on SQLite with a real scheduler
// and an accelerated clock, and is SIGKILLed at random moments (during start-up and
// recovery, between a step's journal write and its command's delivery, while timeouts
// fire) and restarted; a final run lets every flow end. Read from the journal afterwards:
// every flow ended exactly once, with the history of an uninterrupted reference run of the
// same inputs and the outcome its inputs imply; every command and every compensation was
// received exactly once. Env: LONGHAUL_CRASH_SEED (kill timing), LONGHAUL_CRASH_KILLS
// (default 20). Issue 5, deterministically: one saga per path (completed, goods timeout,
// canceled, timeout compensating two steps, retries exhausted) is SIGKILLed right after
// each of its stored writes in turn (the child's journal decorator raises SIGKILL in the
// write's acknowledgement), restarted, and must end exactly as its uninterrupted run did.
#include "persistence/sqlite_journal.hpp"
#include "tests/crash_harness.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#ifndef LONGHAUL_FLOW_CRASH_CHILD
#  error "LONGHAUL_FLOW_CRASH_CHILD must name the flow_crash_child executable"
#endif

namespace {

using namespace longhaul::persistence;
namespace fs = std::filesystem;
namespace json = boost::json;
using longhaul::testing::child_process;

constexpr std::uint64_t default_kills = 20;
constexpr std::uint64_t unlimited = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t orders = 200;
// One real second is two clock hours: the goods wait (12 h) lasts 6 s of the children's
// life, the payment wait (shortened from 20 days to 14 h) 7 s, so most come due while the
// child is killed again and again; 6 s is also the margin a completing order has between
// its fetch_goods being stored and goods.fetched arriving, restarts included.
constexpr std::uint64_t factor = 7200;
constexpr std::uint64_t goods_timeout_ms = 12ULL * 3600 * 1000;
constexpr std::uint64_t payment_timeout_ms = 14ULL * 3600 * 1000;

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

/// A fresh directory under the system temp dir; kept for inspection if the test fails.
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

time_ms wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// -- the model: what each order's inputs imply (mirrors flow_crash_child.cpp) -----------

std::string order_id(std::uint64_t i) { return "o" + std::to_string(i); }

/// The path order i takes, chosen by the child from i % 8.
enum class path { completed, goods_timeout, canceled, payment_timeout };

path path_of(std::uint64_t i) {
  switch (i % 8) {
    case 4: return path::goods_timeout;
    case 5: return path::canceled;
    case 6: return path::payment_timeout;
    default: return path::completed;
  }
}

/// Everything one order must leave in the journal, derived from its inputs alone.
struct expected_order {
  std::string outcome;
  std::string reason;
  std::vector<std::string> commands;       ///< steps of flow.command_sent, in order
  std::vector<std::string> compensations;  ///< steps of flow.compensation_sent, in order
  std::vector<std::string> payment;        ///< event types of payment/<id>
  std::vector<std::string> warehouse;      ///< event types of warehouse/<id>
  std::vector<std::string> ledger;         ///< event types of ledger/<id>
};

expected_order expected_of(std::uint64_t i) {
  using v = std::vector<std::string>;
  switch (path_of(i)) {
    case path::completed:
      return {"completed", "shipped", v{"retrieve payment", "fetch goods"}, v{},
              v{"payment.received"}, v{"goods.fetched"}, v{"ledger.completion_seen"}};
    case path::goods_timeout:
      return {"failed", "goods not fetched in time", v{"retrieve payment", "fetch goods"},
              v{"retrieve payment"}, v{"payment.received", "payment.refunded"},
              v{"goods.fetched"}, v{}};
    case path::canceled:
      return {"canceled", "customer canceled", v{"retrieve payment", "fetch goods"},
              v{"retrieve payment"}, v{"payment.received", "payment.refunded"},
              v{"goods.fetched"}, v{}};
    case path::payment_timeout:
      return {"canceled", "payment not received in time", v{"retrieve payment"}, v{},
              v{"payment.failed"}, v{}, v{"ledger.payment_failure_seen"}};
  }
  return {};
}

// -- what a journal holds ---------------------------------------------------------------

/// The stored streams (by persistence id) and what is left over.
struct observation {
  std::map<std::string, std::vector<event_record>> streams;
  std::vector<timer_record> timers_left;
  std::vector<dead_letter_record> dead;
  std::vector<outbox_record> outbox_left;
};

struct check_report {
  std::vector<std::string> problems;
  std::map<std::string, std::uint64_t> outcomes;  ///< outcome -> flows
  std::uint64_t commands = 0;
  std::uint64_t compensations = 0;
  std::uint64_t events = 0;

  void problem(std::string text) { problems.push_back(std::move(text)); }

  [[nodiscard]] bool reported(std::string_view text) const {
    return std::any_of(problems.begin(), problems.end(),
                       [&](const std::string& p) { return p.find(text) != std::string::npos; });
  }

  [[nodiscard]] std::string summary() const {
    std::string out = std::to_string(problems.size()) + " problem(s):";
    for (std::size_t i = 0; i < problems.size() && i < 25; ++i)
      out += "\n  " + problems[i];
    return out;
  }
};

std::unique_ptr<sqlite_journal> open_read_only(const fs::path& db, check_report& report) {
  sqlite_journal_config cfg;
  cfg.path = db.string();
  cfg.read_only = true;
  auto opened = sqlite_journal::open(std::move(cfg));
  if (!opened) {
    report.problem("opening " + db.string() + " read-only failed: " + describe(opened.error()));
    return nullptr;
  }
  return std::move(*opened);
}

/// Reads every stored event (grouped by persistence id) and the leftovers of `db`.
observation read_journal(const fs::path& db, check_report& report) {
  observation obs;
  auto journal = open_read_only(db, report);
  if (!journal)
    return obs;
  auto all = journal->read_all(0, unlimited, std::nullopt);
  if (!all)
    report.problem("read_all: " + describe(all.error()));
  else
    for (auto& ev : *all)
      obs.streams[ev.persistence_id].push_back(std::move(ev));
  auto left = journal->timers_due(std::numeric_limits<time_ms>::max(), unlimited);
  auto dead = journal->dead_letters(0, unlimited);
  auto outbox = journal->outbox_pending(0, unlimited);
  if (!left || !dead || !outbox)
    report.problem("reading timers, dead letters or the outbox failed");
  else {
    obs.timers_left = std::move(*left);
    obs.dead = std::move(*dead);
    obs.outbox_left = std::move(*outbox);
  }
  return obs;
}

json::object payload_of(const event_record& ev) {
  json::error_code ec;
  auto v = json::parse(ev.payload_json, ec);
  return !ec && v.is_object() ? v.as_object() : json::object{};
}

std::string text(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string{it->value().as_string()}
                                                  : std::string{};
}

const std::vector<event_record>& stream(const observation& obs, const std::string& pid) {
  static const std::vector<event_record> none;
  auto it = obs.streams.find(pid);
  return it == obs.streams.end() ? none : it->second;
}

std::vector<std::string> types_of(const std::vector<event_record>& events) {
  std::vector<std::string> out;
  for (const auto& ev : events)
    out.push_back(ev.type);
  return out;
}

std::string join(const std::vector<std::string>& xs) {
  std::string out = "[";
  for (const auto& x : xs)
    out += (out.size() > 1 ? ", " : "") + x;
  return out + "]";
}

/// A flow's history without clock values (deadlines and due times depend on when the
/// run happened): one line per event, type and payload.
std::vector<std::string> history_of(const std::vector<event_record>& events) {
  std::vector<std::string> out;
  for (const auto& ev : events) {
    auto p = payload_of(ev);
    p.erase("deadline");
    p.erase("due");
    p.erase("expires_at");
    out.push_back(ev.type + " " + json::serialize(p));
  }
  return out;
}

/// Checks the final journal: per order, exactly one flow.ended and nothing after it; the
/// outcome, reason, commands and compensations its inputs imply; each command received
/// exactly once by its target (one answer event per retrieve_payment, one goods.fetched
/// per fetch_goods), each compensation exactly once (one payment.refunded each), each
/// published event exactly once (ledger); gap-free sequence numbers everywhere; no other
/// instances; no timers, dead letters or outbox messages left. With a reference, each
/// order's flow history must equal the reference's.
check_report check_model(const observation& obs, const observation* reference) {
  check_report report;
  std::set<std::string> known;
  for (std::uint64_t i = 0; i < orders; ++i) {
    auto id = order_id(i);
    auto exp = expected_of(i);
    auto flow_pid = "order/" + id;
    auto payment_pid = "payment/" + id;
    auto warehouse_pid = "warehouse/" + id;
    auto ledger_pid = "ledger/" + id;
    known.insert({flow_pid, payment_pid, warehouse_pid, ledger_pid});
    const auto& flow = stream(obs, flow_pid);
    if (flow.empty()) {
      report.problem(flow_pid + ": no events (never started)");
      continue;
    }
    std::vector<std::string> commands, compensations;
    std::uint64_t ends = 0;
    std::string outcome, reason;
    for (std::size_t k = 0; k < flow.size(); ++k) {
      const auto& ev = flow[k];
      auto p = payload_of(ev);
      if (ev.type == "flow.command_sent") {
        commands.push_back(text(p, "step"));
        if (p.contains("attempt") && !(p.at("attempt") == 1))
          report.problem(flow_pid + ": command sent again (attempt "
                         + json::serialize(p.at("attempt")) + ")");
      } else if (ev.type == "flow.compensation_sent") {
        compensations.push_back(text(p, "step"));
      } else if (ev.type == "flow.ended") {
        ++ends;
        outcome = text(p, "outcome");
        reason = text(p, "reason");
        if (k + 1 != flow.size())
          report.problem(flow_pid + ": " + std::to_string(flow.size() - k - 1)
                         + " events after flow.ended");
      } else if (ev.type == "flow.send_failed") {
        report.problem(flow_pid + ": a command could not be delivered: " + ev.payload_json);
      }
    }
    report.commands += commands.size();
    report.compensations += compensations.size();
    if (ends != 1) {
      report.problem(flow_pid + ": ended " + std::to_string(ends) + " times");
      continue;
    }
    ++report.outcomes[outcome];
    if (outcome != exp.outcome || reason != exp.reason)
      report.problem(flow_pid + ": ended " + outcome + " '" + reason + "', inputs imply "
                     + exp.outcome + " '" + exp.reason + "'");
    if (commands != exp.commands)
      report.problem(flow_pid + ": commands sent " + join(commands) + ", expected "
                     + join(exp.commands));
    if (compensations != exp.compensations)
      report.problem(flow_pid + ": compensations sent " + join(compensations) + ", expected "
                     + join(exp.compensations));
    // Receipt by the targets: exactly once per command and per compensation.
    auto count = [](const std::vector<std::string>& xs, std::string_view x) {
      return static_cast<std::uint64_t>(std::count(xs.begin(), xs.end(), x));
    };
    auto payment = types_of(stream(obs, payment_pid));
    auto warehouse = types_of(stream(obs, warehouse_pid));
    auto ledger = types_of(stream(obs, ledger_pid));
    auto answers = count(payment, "payment.received") + count(payment, "payment.failed");
    if (answers != count(commands, "retrieve payment"))
      report.problem(payment_pid + ": received retrieve_payment " + std::to_string(answers)
                     + " times, sent " + std::to_string(count(commands, "retrieve payment")));
    if (count(warehouse, "goods.fetched") != count(commands, "fetch goods"))
      report.problem(warehouse_pid + ": received fetch_goods "
                     + std::to_string(count(warehouse, "goods.fetched")) + " times, sent "
                     + std::to_string(count(commands, "fetch goods")));
    if (count(payment, "payment.refunded") != compensations.size())
      report.problem(payment_pid + ": received refund_payment "
                     + std::to_string(count(payment, "payment.refunded")) + " times, sent "
                     + std::to_string(compensations.size()));
    if (count(ledger, "ledger.completion_seen") != (outcome == "completed" ? 1U : 0U))
      report.problem(ledger_pid + ": order.completed received "
                     + std::to_string(count(ledger, "ledger.completion_seen")) + " times");
    if (count(ledger, "ledger.payment_failure_seen") != count(payment, "payment.failed"))
      report.problem(ledger_pid + ": payment.failed received "
                     + std::to_string(count(ledger, "ledger.payment_failure_seen"))
                     + " times, published " + std::to_string(count(payment, "payment.failed")));
    if (payment != exp.payment || warehouse != exp.warehouse || ledger != exp.ledger)
      report.problem(id + ": targets hold payment " + join(payment) + ", warehouse "
                     + join(warehouse) + ", ledger " + join(ledger) + "; inputs imply "
                     + join(exp.payment) + ", " + join(exp.warehouse) + ", " + join(exp.ledger));
    if (reference != nullptr) {
      auto got = history_of(flow);
      auto want = history_of(stream(*reference, flow_pid));
      if (got != want) {
        std::size_t k = 0;
        while (k < got.size() && k < want.size() && got[k] == want[k])
          ++k;
        report.problem(flow_pid + ": history differs from the uninterrupted run at event "
                       + std::to_string(k + 1) + ": "
                       + (k < got.size() ? got[k] : std::string{"(none)"}) + " vs "
                       + (k < want.size() ? want[k] : std::string{"(none)"}));
      }
    }
  }
  for (const auto& [pid, events] : obs.streams) {
    report.events += events.size();
    if (known.count(pid) == 0)
      report.problem("unexpected instance " + pid);
    for (std::size_t k = 0; k < events.size(); ++k)
      if (events[k].seq != k + 1) {
        report.problem(pid + ": event " + std::to_string(k + 1) + " has seq "
                       + std::to_string(events[k].seq) + " (gap or reorder)");
        break;
      }
  }
  if (!obs.timers_left.empty())
    report.problem(std::to_string(obs.timers_left.size()) + " timers left (first: "
                   + obs.timers_left.front().persistence_id + " '"
                   + obs.timers_left.front().name + "')");
  if (!obs.dead.empty())
    report.problem(std::to_string(obs.dead.size()) + " dead letters (first: "
                   + obs.dead.front().destination + ": " + obs.dead.front().reason + ")");
  if (!obs.outbox_left.empty())
    report.problem(std::to_string(obs.outbox_left.size()) + " outbox messages left (first: "
                   + obs.outbox_left.front().destination + ")");
  return report;
}

// -- running the child -------------------------------------------------------------------

std::vector<std::string> child_args(const fs::path& db, const std::string& mode,
                                    std::uint64_t upto, std::uint64_t clock_start_ms) {
  return {"--db",
          db.string(),
          "--mode",
          mode,
          "--orders",
          std::to_string(orders),
          "--upto",
          std::to_string(upto),
          "--factor",
          std::to_string(factor),
          "--clock-start-ms",
          std::to_string(clock_start_ms),
          "--goods-timeout-ms",
          std::to_string(goods_timeout_ms),
          "--payment-timeout-ms",
          std::to_string(payment_timeout_ms)};
}

/// Runs the child in reference mode (uninterrupted, deterministic) into `db` and reads it.
observation reference_run(const fs::path& db) {
  auto child = child_process::spawn(LONGHAUL_FLOW_CRASH_CHILD,
                                    child_args(db, "reference", orders, 1767225600000));
  auto status = child.wait();
  INFO("reference run ended by " << status.describe() << "; stdout: " << child.output());
  REQUIRE(status.exited);
  REQUIRE(status.exit_code == 0);
  REQUIRE(child.has_line("done"));
  check_report report;
  auto obs = read_journal(db, report);
  INFO(report.summary());
  REQUIRE(report.problems.empty());
  return obs;
}

/// What the journal holds right after a kill, read incrementally: no flow ended twice,
/// no target received more than its inputs allow.
struct kill_probe {
  std::uint64_t cursor = 0;
  std::map<std::string, std::vector<std::string>> types;  // by persistence id

  struct result {
    std::uint64_t events = 0;        ///< stored so far
    std::uint64_t ended = 0;         ///< flows ended so far
    std::uint64_t outbox = 0;        ///< messages stored but not delivered (kill hit a step)
    std::uint64_t timers_due = 0;    ///< timeouts due at the kill but not handled
    std::uint64_t timed_out = 0;     ///< flow.timed_out stored so far
  };

  bool opened_once = false;  ///< some earlier probe found the journal

  result probe(const fs::path& db, time_ms clock_at_kill, bool killed_during_start,
               const std::string& what) {
    result out;
    check_report report;
    auto journal = open_read_only(db, report);
    // A kill during the first start() may leave no journal, or one without its schema (a
    // read-only open does not create it). Nothing can have been stored then; once a probe
    // has seen the journal, failing to open it is a problem.
    if (!journal && killed_during_start && !opened_once) {
      std::cout << what << ": no journal yet (" << report.problems.front() << ")"
                << std::endl;
      return out;
    }
    opened_once = opened_once || journal != nullptr;
    if (journal) {
      auto fresh = journal->read_all(cursor, unlimited, std::nullopt);
      if (!fresh)
        report.problem("read_all: " + describe(fresh.error()));
      else
        for (const auto& ev : *fresh) {
          cursor = std::max(cursor, ev.position);
          types[ev.persistence_id].push_back(ev.type);
        }
      auto outbox = journal->outbox_pending(0, unlimited);
      auto due = journal->timers_due(clock_at_kill, unlimited);
      if (!outbox || !due)
        report.problem("reading the outbox or the timers failed");
      else {
        out.outbox = outbox->size();
        out.timers_due = due->size();
      }
    }
    for (std::uint64_t i = 0; i < orders; ++i) {
      auto exp = expected_of(i);
      auto id = order_id(i);
      auto count = [&](const std::string& pid, std::string_view type) {
        const auto& xs = types[pid];
        return static_cast<std::size_t>(std::count(xs.begin(), xs.end(), type));
      };
      auto ends = count("order/" + id, "flow.ended");
      out.ended += ends;
      out.timed_out += count("order/" + id, "flow.timed_out");
      if (ends > 1)
        report.problem("order/" + id + " ended " + std::to_string(ends) + " times");
      for (const auto& [pid, allowed] : {std::pair{"payment/" + id, exp.payment},
                                         std::pair{"warehouse/" + id, exp.warehouse},
                                         std::pair{"ledger/" + id, exp.ledger}})
        if (types[pid].size() > allowed.size())
          report.problem(pid + " holds " + join(types[pid]) + ", at most " + join(allowed)
                         + " allowed");
    }
    for (const auto& [pid, xs] : types)
      out.events += xs.size();
    INFO(what);
    INFO(report.summary());
    REQUIRE(report.problems.empty());
    return out;
  }
};

}  // namespace

TEST_CASE("the flow crash checker reports doubled ends, lost or doubled commands and "
          "compensations, leftovers, and histories that differ from the uninterrupted run",
          "[crash][flows]") {
  scratch_dir dir{"flow_crash_checker"};
  auto reference = reference_run(dir.path / "reference.db");
  auto ok = check_model(reference, &reference);
  INFO(ok.summary());
  REQUIRE(ok.problems.empty());
  CHECK(ok.outcomes["completed"] == 125);
  CHECK(ok.outcomes["failed"] == 25);
  CHECK(ok.outcomes["canceled"] == 50);
  CHECK(ok.commands == 125 * 2 + 25 * 2 + 25 * 2 + 25);
  CHECK(ok.compensations == 50);

  auto with = [&](auto&& damage) {
    auto obs = reference;
    damage(obs);
    return check_model(obs, &reference);
  };
  SECTION("a flow that ended twice") {
    auto report = with([](observation& obs) {
      auto& s = obs.streams["order/o3"];
      auto ev = s.back();
      ev.seq = s.size() + 1;
      s.push_back(ev);
    });
    CHECK(report.reported("order/o3: ended 2 times"));
  }
  SECTION("a command its target never received, and one received twice") {
    auto report = with([](observation& obs) {
      obs.streams["warehouse/o1"].clear();
      auto& p = obs.streams["payment/o2"];
      auto ev = p.back();
      ev.seq = p.size() + 1;
      p.push_back(ev);
    });
    CHECK(report.reported("warehouse/o1: received fetch_goods 0 times, sent 1"));
    CHECK(report.reported("payment/o2: received retrieve_payment 2 times, sent 1"));
  }
  SECTION("a compensation received twice") {
    auto report = with([](observation& obs) {
      auto& p = obs.streams["payment/o4"];
      auto ev = p.back();
      REQUIRE(ev.type == "payment.refunded");
      ev.seq = p.size() + 1;
      p.push_back(ev);
    });
    CHECK(report.reported("payment/o4: received refund_payment 2 times, sent 1"));
  }
  SECTION("an outcome its inputs do not imply, and a history that differs") {
    auto report = with([](observation& obs) {
      auto& ended = obs.streams["order/o0"].back();
      REQUIRE(ended.type == "flow.ended");
      ended.payload_json = R"({"outcome":"failed","reason":"goods not fetched in time"})";
    });
    CHECK(report.reported("order/o0: ended failed 'goods not fetched in time', inputs imply "
                          "completed 'shipped'"));
    CHECK(report.reported("order/o0: history differs from the uninterrupted run"));
  }
  SECTION("leftover timers, dead letters and outbox messages") {
    auto report = with([](observation& obs) {
      obs.timers_left.push_back({"order/o6", "timeout", 1, "{}"});
      obs.dead.push_back({1, "m", "order/o1", "payment/o1", "{}", "rejected", 0});
      obs.outbox_left.push_back({1, "m2", "order/o1", "payment/o1", "{}", 0});
    });
    CHECK(report.reported("1 timers left"));
    CHECK(report.reported("1 dead letters"));
    CHECK(report.reported("1 outbox messages left"));
  }
}

TEST_CASE("order sagas SIGKILLed at random points end exactly once with the history of an "
          "uninterrupted run, every command and compensation is received exactly once",
          "[crash][flows]") {
  auto seed = env_number("LONGHAUL_CRASH_SEED").value_or(std::random_device{}());
  auto kills = env_number("LONGHAUL_CRASH_KILLS").value_or(default_kills);
  REQUIRE(kills > 0);
  std::cout << "flow crash test: seed " << seed << ", " << kills
            << " kills (LONGHAUL_CRASH_SEED / LONGHAUL_CRASH_KILLS)" << std::endl;
  auto started = std::chrono::steady_clock::now();
  scratch_dir dir{"flow_crash"};
  auto db = dir.path / "journal.db";
  auto reference = reference_run(dir.path / "reference.db");
  std::mt19937_64 rng{seed};
  kill_probe probe;
  // The child's clock continues where the previous run's stopped: time stands still while
  // no child runs (restarts are not timeouts).
  time_ms clock_ms = wall_ms();
  // Orders are introduced over the first third of the runs; later runs recover them while
  // they wait, time out, get canceled and compensate.
  auto ramp = std::max<std::uint64_t>(1, kills / 3);
  std::uint64_t kills_before_ready = 0, kills_with_outbox = 0, kills_with_due = 0;
  std::uint64_t timed_out_before_final = 0;
  for (std::uint64_t k = 0; k < kills; ++k) {
    INFO("kill " << k << " (seed " << seed << ")");
    auto upto = std::min(orders, orders * (k + 1) / ramp);
    auto spawned = std::chrono::steady_clock::now();
    auto child = child_process::spawn(LONGHAUL_FLOW_CRASH_CHILD,
                                      child_args(db, "crash", upto, clock_ms));
    auto choice = rng() % 6;
    std::chrono::milliseconds delay{0};
    if (choice == 0) {
      delay = std::chrono::milliseconds{rng() % 300};  // during start-up and recovery
    } else {
      REQUIRE(child.wait_for_line("ready", std::chrono::seconds{60}));
      delay = choice <= 2 ? std::chrono::milliseconds{rng() % 150}  // while flows start
                          : std::chrono::milliseconds{150 + rng() % 1850};
    }
    std::this_thread::sleep_for(delay);
    child.kill();
    auto killed = std::chrono::steady_clock::now();
    auto status = child.wait();
    INFO("child ended by " << status.describe() << "; stdout: " << child.output());
    REQUIRE(status.killed());
    clock_ms += static_cast<time_ms>(
      std::chrono::duration_cast<std::chrono::milliseconds>(killed - spawned).count() * factor);
    bool ready = child.has_line("ready");
    auto after = probe.probe(db, clock_ms, !ready, "after kill " + std::to_string(k));
    kills_before_ready += ready ? 0 : 1;
    kills_with_outbox += after.outbox > 0 ? 1 : 0;
    kills_with_due += after.timers_due > 0 ? 1 : 0;
    timed_out_before_final = after.timed_out;
    std::cout << "kill " << k << " (orders < " << upto << ") after " << delay.count() << " ms"
              << (ready ? "" : " before ready")
              << (child.has_line("started") ? ", all started" : "")
              << (child.has_line("canceled") ? ", cancels done" : "") << ": " << after.events
              << " events, " << after.ended << " flows ended (" << after.timed_out
              << " by a timeout), " << after.outbox
              << " outbox messages undelivered, " << after.timers_due << " timers due"
              << std::endl;
  }
  auto child = child_process::spawn(LONGHAUL_FLOW_CRASH_CHILD,
                                    child_args(db, "final", orders, clock_ms));
  auto status = child.wait();
  INFO("final run ended by " << status.describe() << "; stdout: " << child.output());
  REQUIRE(status.exited);
  REQUIRE(status.exit_code == 0);
  REQUIRE(child.has_line("done"));
  check_report read_report;
  auto obs = read_journal(db, read_report);
  auto report = check_model(obs, &reference);
  report.problems.insert(report.problems.begin(), read_report.problems.begin(),
                         read_report.problems.end());
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  std::string drained;
  if (auto pos = child.output().find("drained "); pos != std::string::npos)
    drained = child.output().substr(pos + 8, child.output().find('\n', pos) - pos - 8);
  std::cout << "flow crash test: " << kills << " kills (" << kills_before_ready
            << " before ready, " << kills_with_outbox << " with commands stored but undelivered, "
            << kills_with_due << " with timeouts due but not handled, " << timed_out_before_final
            << " timeouts handled before the final run); " << orders << " flows: "
            << report.outcomes["completed"] << " completed, " << report.outcomes["failed"]
            << " failed, " << report.outcomes["canceled"] << " canceled; " << report.commands
            << " commands, " << report.compensations << " compensations, " << report.events
            << " events; final run drained in " << drained << " ms; " << elapsed.count()
            << " ms" << std::endl;
  INFO("seed " << seed << ", dir " << dir.path);
  INFO(report.summary());
  REQUIRE(report.problems.empty());
}

// -- issue 5: one saga per path, SIGKILLed at every step boundary --------------------------

namespace {

/// One saga of a boundary run (flow_crash_child --mode boundary --saga <name>) and what its
/// uninterrupted run must store.
struct boundary_case {
  std::string saga;
  std::string flow_pid;
  std::string outcome;
  std::string reason;
  std::vector<std::string> commands;       ///< "step#attempt" of flow.command_sent, in order
  std::vector<std::string> compensations;  ///< steps of flow.compensation_sent, in order
  std::map<std::string, std::vector<std::string>> targets;  ///< event types per target
  std::size_t dead_letters = 0;            ///< rejected attempts (each dead-lettered once)
};

const std::vector<boundary_case>& boundary_cases() {
  using v = std::vector<std::string>;
  static const std::vector<boundary_case> cases{
    {"completed", "order/o0", "completed", "shipped", v{"retrieve payment#1", "fetch goods#1"},
     v{},
     {{"payment/o0", v{"payment.received"}},
      {"warehouse/o0", v{"goods.fetched"}},
      {"ledger/o0", v{"ledger.completion_seen"}}},
     0},
    {"goods-timeout", "order/o4", "failed", "goods not fetched in time",
     v{"retrieve payment#1", "fetch goods#1"}, v{"retrieve payment"},
     {{"payment/o4", v{"payment.received", "payment.refunded"}},
      {"warehouse/o4", v{"goods.fetched"}}},
     0},
    {"canceled", "order/o5", "canceled", "customer canceled",
     v{"retrieve payment#1", "fetch goods#1"}, v{"retrieve payment"},
     {{"payment/o5", v{"payment.received", "payment.refunded"}},
      {"warehouse/o5", v{"goods.fetched"}}},
     0},
    {"compensation-timeout", "saga/s1", "failed", "no shipment in time",
     v{"charge#1", "reserve#1"}, v{"reserve", "charge"},
     {{"payment/s1", v{"payment.received", "payment.refunded"}},
      {"stock/s1", v{"stock.reserved", "stock.released"}}},
     0},
    {"retry-exhausted", "saga/s2", "failed", "no shipment in time",
     v{"charge#1", "reserve#1", "reserve#2", "reserve#3"}, v{"charge"},
     {{"payment/s2", v{"payment.received", "payment.refunded"}}},
     3},
  };
  return cases;
}

const boundary_case& boundary_case_of(std::string_view saga) {
  for (const auto& c : boundary_cases())
    if (c.saga == saga)
      return c;
  throw std::invalid_argument{"no boundary case " + std::string{saga}};
}

/// The persistence ids of the stored writes a child announced ("write <n> <id>"), in order.
std::vector<std::string> stored_writes(const std::string& output) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < output.size()) {
    auto end = output.find('\n', pos);
    if (end == std::string::npos)
      end = output.size();
    std::string_view line{output.data() + pos, end - pos};
    if (line.rfind("write ", 0) == 0)
      if (auto space = line.find(' ', 6); space != std::string_view::npos)
        out.emplace_back(line.substr(space + 1));
    pos = end + 1;
  }
  return out;
}

std::vector<std::string> boundary_args(const fs::path& db, const std::string& saga,
                                       std::size_t kill_at) {
  return {"--db",      db.string(), "--mode", "boundary", "--saga", saga, "--kill-at",
          std::to_string(kill_at), "--clock-start-ms", "1767225600000", "--drain-timeout-ms",
          "20000"};
}

/// Runs the child with no kill (a reference, or the restart after a kill) and requires a
/// clean end. Returns its stored writes.
std::vector<std::string> run_to_end(const fs::path& db, const std::string& saga,
                                    const std::string& what) {
  auto child = child_process::spawn(LONGHAUL_FLOW_CRASH_CHILD, boundary_args(db, saga, 0));
  auto status = child.wait();
  INFO(what << " ended by " << status.describe() << "; stdout: " << child.output());
  REQUIRE(status.exited);
  REQUIRE(status.exit_code == 0);
  REQUIRE(child.has_line("done"));
  return stored_writes(child.output());
}

/// Dead letters without their journal-made ids and times: destination, payload, reason.
std::vector<std::string> dead_letter_lines(const observation& obs) {
  std::vector<std::string> out;
  for (const auto& d : obs.dead)
    out.push_back(d.destination + " " + d.payload_json + " " + d.reason);
  std::sort(out.begin(), out.end());
  return out;
}

/// Checks what a saga's uninterrupted run stored against its case: outcome, commands and
/// compensations (in order), the targets' events, dead letters, no leftovers.
check_report check_boundary_reference(const observation& obs, const boundary_case& c) {
  check_report report;
  std::vector<std::string> commands, compensations;
  std::string outcome, reason;
  for (const auto& ev : stream(obs, c.flow_pid)) {
    auto p = payload_of(ev);
    if (ev.type == "flow.command_sent")
      commands.push_back(text(p, "step") + "#" + json::serialize(p["attempt"]));
    else if (ev.type == "flow.compensation_sent")
      compensations.push_back(text(p, "step"));
    else if (ev.type == "flow.ended") {
      outcome = text(p, "outcome");
      reason = text(p, "reason");
    }
  }
  if (outcome != c.outcome || reason != c.reason)
    report.problem(c.flow_pid + ": ended " + outcome + " '" + reason + "', expected "
                   + c.outcome + " '" + c.reason + "'");
  if (commands != c.commands)
    report.problem(c.flow_pid + ": commands " + join(commands) + ", expected "
                   + join(c.commands));
  if (compensations != c.compensations)
    report.problem(c.flow_pid + ": compensations " + join(compensations) + ", expected "
                   + join(c.compensations));
  for (const auto& [pid, events] : obs.streams)
    if (pid != c.flow_pid && c.targets.count(pid) == 0)
      report.problem(pid + ": unexpected instance holding " + join(types_of(events)));
  for (const auto& [pid, types] : c.targets)
    if (types_of(stream(obs, pid)) != types)
      report.problem(pid + ": holds " + join(types_of(stream(obs, pid))) + ", expected "
                     + join(types));
  if (obs.dead.size() != c.dead_letters)
    report.problem(std::to_string(obs.dead.size()) + " dead letters, expected "
                   + std::to_string(c.dead_letters));
  if (!obs.timers_left.empty() || !obs.outbox_left.empty())
    report.problem("timers or outbox messages left");
  return report;
}

/// Checks a restarted run against the uninterrupted one: every stream (the flow's history
/// without clock values, each target's events: one per command and compensation received)
/// equal; the same dead letters, each message id once and processed by its target; no
/// leftovers.
check_report check_against_reference(const fs::path& db, const observation& obs,
                                      const observation& reference) {
  check_report report;
  std::set<std::string> pids;
  for (const auto* o : {&obs, &reference})
    for (const auto& [pid, events] : o->streams)
      pids.insert(pid);
  for (const auto& pid : pids) {
    auto got = history_of(stream(obs, pid));
    auto want = history_of(stream(reference, pid));
    if (got == want)
      continue;
    std::size_t k = 0;
    while (k < got.size() && k < want.size() && got[k] == want[k])
      ++k;
    report.problem(pid + ": holds " + join(types_of(stream(obs, pid)))
                   + ", the uninterrupted run " + join(types_of(stream(reference, pid)))
                   + "; first difference at event " + std::to_string(k + 1) + ": "
                   + (k < got.size() ? got[k] : std::string{"(none)"}) + " vs "
                   + (k < want.size() ? want[k] : std::string{"(none)"}));
  }
  if (dead_letter_lines(obs) != dead_letter_lines(reference))
    report.problem("dead letters " + join(dead_letter_lines(obs)) + ", the uninterrupted run "
                   + join(dead_letter_lines(reference)));
  std::set<std::string> dead_ids;
  auto journal = open_read_only(db, report);
  for (const auto& d : obs.dead) {
    if (!dead_ids.insert(d.message_id).second)
      report.problem("message " + d.message_id + " dead-lettered twice");
    auto processed = journal ? journal->is_processed(d.destination, d.message_id)
                             : caf::expected<bool>{false};
    if (!processed || !*processed)
      report.problem(d.destination + " never consumed rejected message " + d.message_id);
  }
  if (!obs.timers_left.empty())
    report.problem(std::to_string(obs.timers_left.size()) + " timers left");
  if (!obs.outbox_left.empty())
    report.problem(std::to_string(obs.outbox_left.size()) + " outbox messages left");
  return report;
}

/// What the boundary runs of one saga did (for the summary line).
struct boundary_summary {
  std::size_t boundaries = 0;      ///< kills, one per selected boundary
  std::size_t flow_side = 0;       ///< after a flow's write (its messages undelivered)
  std::size_t target_side = 0;     ///< after a target's write (its answer unseen)
  std::size_t pending = 0;         ///< kills that left outbox messages to redeliver
  std::size_t child_runs = 0;
};

/// For each boundary k of `saga` (the k-th stored write of its uninterrupted run) that
/// `select` accepts: a child SIGKILLs itself right after write k is stored, a restart lets
/// the saga end, and the journal must equal the uninterrupted run's.
boundary_summary kill_at_every_boundary(
  const std::string& saga, const std::function<bool(const std::string& pid)>& select) {
  auto started = std::chrono::steady_clock::now();
  boundary_summary sum;
  const auto& c = boundary_case_of(saga);
  scratch_dir dir{"flow_boundary_" + saga};
  auto ref_db = dir.path / "reference.db";
  auto ref_writes = run_to_end(ref_db, saga, "reference run");
  ++sum.child_runs;
  check_report ref_report;
  auto reference = read_journal(ref_db, ref_report);
  auto checked = check_boundary_reference(reference, c);
  checked.problems.insert(checked.problems.end(), ref_report.problems.begin(),
                          ref_report.problems.end());
  INFO(saga << ": the uninterrupted run: " << checked.summary());
  REQUIRE(checked.problems.empty());
  REQUIRE(!ref_writes.empty());
  for (std::size_t k = 1; k <= ref_writes.size(); ++k) {
    if (!select(ref_writes[k - 1]))
      continue;
    auto db = dir.path / ("kill_at_" + std::to_string(k) + ".db");
    auto child = child_process::spawn(LONGHAUL_FLOW_CRASH_CHILD, boundary_args(db, saga, k));
    auto status = child.wait();
    ++sum.child_runs;
    auto writes = stored_writes(child.output());
    INFO(saga << ", kill at boundary " << k << " of " << ref_writes.size() << " (after write "
              << k << " of " << ref_writes[k - 1] << " in the uninterrupted run); the child "
              << "ended by " << status.describe() << "; stdout: " << child.output());
    REQUIRE(status.killed());
    REQUIRE(writes.size() == k);
    ++(writes.back() == c.flow_pid ? sum.flow_side : sum.target_side);
    check_report probe_report;
    auto at_kill = read_journal(db, probe_report);
    sum.pending += at_kill.outbox_left.empty() ? 0 : 1;
    auto restart_writes = run_to_end(db, saga, "the restart");
    ++sum.child_runs;
    check_report read_report;
    auto obs = read_journal(db, read_report);
    auto report = check_against_reference(db, obs, reference);
    report.problems.insert(report.problems.begin(), read_report.problems.begin(),
                           read_report.problems.end());
    INFO("killed after write " << k << " of " << writes.back() << "; the restart stored "
                               << join(restart_writes) << "; dir " << dir.path);
    INFO(report.summary());
    CHECK(report.problems.empty());
    ++sum.boundaries;
  }
  std::cout << "flow boundaries, " << saga << ": " << ref_writes.size() << " stored writes, "
            << sum.boundaries << " kills (" << sum.flow_side << " after a flow write, "
            << sum.target_side << " after a target write; " << sum.pending
            << " left outbox messages to redeliver), " << sum.child_runs << " child runs, "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - started)
                 .count()
            << " ms" << std::endl;
  return sum;
}

}  // namespace

TEST_CASE("issue 5: a saga SIGKILLed at every step boundary and restarted ends as the "
          "uninterrupted run did, with every command and compensation received exactly once",
          "[crash][flows]") {
  // A boundary is the moment right after a stored write: a flow's transition (its
  // commands and compensations not yet delivered) or a target's handling of a command
  // (the flow has not seen the answer). Every path is killed at each of its boundaries.
  for (const auto& c : boundary_cases()) {
    DYNAMIC_SECTION(c.saga) {
      auto sum = kill_at_every_boundary(c.saga, [](const std::string&) { return true; });
      CHECK(sum.boundaries > 0);
    }
  }
}

// The target stores a rejected command's message id (so a redelivery is a duplicate), then
// the process dies before the outbox dispatcher dead-letters it and tells the flow. The
// redelivery after the restart used to be acknowledged as a duplicate *success*, so the
// flow never learned of the failure: no retry was sent, the shipment wait timed out, and
// the reservation that never took effect was compensated. Now the rejection's text is
// stored with the message id and a duplicate is answered with it (JOURNAL.md I7, §6).
TEST_CASE("issue 5: a retried command's rejection stored by its target just before a "
          "SIGKILL still reaches the flow after the restart",
          "[crash][flows]") {
  auto sum = kill_at_every_boundary(
    "retry-exhausted", [](const std::string& pid) { return pid.rfind("stock/", 0) == 0; });
  CHECK(sum.boundaries == 3);
  CHECK(sum.target_side == 3);
}
