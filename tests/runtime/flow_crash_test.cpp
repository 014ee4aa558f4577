// Real crash test of flows: flow_crash_child runs 200 order sagas (shop::order_flow, a mix
// of completed, timed-out, canceled and compensated paths) on SQLite with a real scheduler
// and an accelerated clock, and is SIGKILLed at random moments (during start-up and
// recovery, between a step's journal write and its command's delivery, while timeouts
// fire) and restarted; a final run lets every flow end. Read from the journal afterwards:
// every flow ended exactly once, with the history of an uninterrupted reference run of the
// same inputs and the outcome its inputs imply; every command and every compensation was
// received exactly once. Env: LONGHAUL_CRASH_SEED (kill timing), LONGHAUL_CRASH_KILLS
// (default 20).
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
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
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

  result probe(const fs::path& db, time_ms clock_at_kill, const std::string& what) {
    result out;
    check_report report;
    if (auto journal = open_read_only(db, report)) {
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
          "uninterrupted run; every command and compensation is received exactly once",
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
    auto after = probe.probe(db, clock_ms, "after kill " + std::to_string(k));
    bool ready = child.has_line("ready");
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
