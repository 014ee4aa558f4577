// The `retail` program: the order-fulfilment sample on an embedded SQLite file.
//   retail demo         ~1,000 orders on an accelerated clock, live progress, summary,
//                       money check (what scripts/demo.sh runs)
//   retail place-order  / update-card <order> / status <order>   against an existing file
//   retail crash-demo   runs the demo in a child, SIGKILLs it several times, checks
// Uses only the public API (runtime/).
#include "runtime/runtime.hpp"
#include "samples/retail/retail_audit.hpp"
#include "samples/retail/retail_domain.hpp"
#include "samples/retail/retail_order_flow.hpp"
#include "samples/retail/retail_setup.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using longhaul::persistence::describe;

constexpr std::int64_t day_ms = 24ll * 3600 * 1000;

struct options {
  std::string db = "retail.db";
  int orders = 1000;
  int customers = 200;
  std::uint64_t seed = 42;
  double speed = 40000;  ///< clock seconds per real second (40000: 7 days in ~15 s)
  bool resume = false;   ///< keep the database and continue (crash-demo children)
  std::int64_t epoch_real_ms = 0;     ///< shared clock origin across restarts
  std::int64_t epoch_virtual_ms = 0;
  int timeout_s = 180;
  std::string customer;
  std::vector<retail::item> items;
  std::vector<std::string> positional;
};

int fail_usage(const std::string& text) {
  std::fprintf(stderr, "retail: %s (see retail --help)\n", text.c_str());
  return 2;
}

const char* usage_text =
  "usage: retail <command> [options]\n"
  "commands:\n"
  "  demo                 run ~1,000 orders on an accelerated clock, then summarize\n"
  "  place-order          place one order: --customer C --item article:cents [--item ...]\n"
  "  update-card <order>  the customer updates the card for <order>\n"
  "  status <order>       where an order stands: step, waits, deadlines, history\n"
  "  crash-demo           run orders in a child process, SIGKILL it several times, check\n"
  "options:\n"
  "  --db FILE            database file (default retail.db)\n"
  "  --orders N           orders for demo/crash-demo (default 1000 / 300)\n"
  "  --seed S             simulation seed (default 42)\n"
  "  --speed F            clock seconds per real second (default 40000)\n"
  "  --help               this text\n";

std::int64_t real_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// Parses options after the command name; returns an error text or "".
std::string parse(int argc, char** argv, int first, options& o) {
  auto number = [](const std::string& flag, const char* text, auto& out) -> std::string {
    try {
      std::size_t used = 0;
      auto v = std::stod(text, &used);
      if (used != std::string{text}.size() || v < 0)
        throw std::invalid_argument{"x"};
      out = static_cast<std::decay_t<decltype(out)>>(v);
      return {};
    } catch (...) {
      return flag + " needs a non-negative number, got '" + text + "'";
    }
  };
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--resume") {
      o.resume = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) {
      o.positional.push_back(a);
      continue;
    }
    const char* v = value();
    if (v == nullptr)
      return a + " needs a value";
    std::string err;
    if (a == "--db")
      o.db = v;
    else if (a == "--orders")
      err = number(a, v, o.orders);
    else if (a == "--seed")
      err = number(a, v, o.seed);
    else if (a == "--speed")
      err = number(a, v, o.speed);
    else if (a == "--epoch-real")
      err = number(a, v, o.epoch_real_ms);
    else if (a == "--epoch-virtual")
      err = number(a, v, o.epoch_virtual_ms);
    else if (a == "--timeout")
      err = number(a, v, o.timeout_s);
    else if (a == "--customer")
      o.customer = v;
    else if (a == "--item") {
      std::string s = v;
      auto colon = s.find(':');
      std::int64_t cents = 0;
      if (colon == std::string::npos || colon == 0
          || !number(a, s.substr(colon + 1).c_str(), cents).empty() || cents <= 0)
        return "--item needs article:cents with positive cents, got '" + s + "'";
      o.items.push_back({s.substr(0, colon), cents});
    } else
      return "unknown option " + a;
    if (!err.empty())
      return err;
  }
  if (o.speed < 1)
    return "--speed must be at least 1";
  return {};
}

/// Registers every context, the subscriptions and the order flow.
caf::error set_up(longhaul::runtime& rt) { return retail::register_retail(rt); }

longhaul::runtime_config config_for(const options& o, bool accelerated) {
  longhaul::runtime_config cfg;
  cfg.database_path = o.db;
  cfg.log_level = "error";
  if (accelerated) {
    auto epoch_real = o.epoch_real_ms != 0 ? o.epoch_real_ms : real_now_ms();
    auto epoch_virtual = o.epoch_virtual_ms != 0 ? o.epoch_virtual_ms : epoch_real;
    auto start = epoch_virtual
                 + static_cast<std::int64_t>(static_cast<double>(real_now_ms() - epoch_real) * o.speed);
    cfg.clock = std::make_shared<longhaul::actors::accelerated_clock>(o.speed, start);
  }
  return cfg;
}

std::string human(std::int64_t ms) {
  char buf[64];
  if (ms >= day_ms)
    std::snprintf(buf, sizeof buf, "%.1fd", static_cast<double>(ms) / day_ms);
  else if (ms >= 3600000)
    std::snprintf(buf, sizeof buf, "%.1fh", static_cast<double>(ms) / 3600000);
  else
    std::snprintf(buf, sizeof buf, "%.0fs", static_cast<double>(ms) / 1000);
  return buf;
}

/// What the journal says about the orders (a projection over the "order" tag).
struct order_projection {
  std::uint64_t cursor = 0;
  std::map<std::string, std::pair<std::string, std::int64_t>> ended;  ///< outcome/reason, at
  std::uint64_t payment_cursor = 0;
  std::vector<std::pair<std::string, std::int64_t>> expired_cards;  ///< order, when

  void read(longhaul::persistence::journal& j) {
    for (;;) {
      auto page = j.read_all(cursor, 2000, std::string{"order"});
      if (!page || page->empty())
        break;
      for (const auto& ev : *page) {
        cursor = ev.position;
        auto id = ev.persistence_id.substr(ev.persistence_id.find('/') + 1);
        if (ev.type == "flow.ended") {
          auto v = boost::json::parse(ev.payload_json).as_object();
          std::string outcome{v.at("outcome").as_string()};
          std::string reason{v.at("reason").as_string()};
          ended[id] = {outcome + ": " + reason, ev.written_at_ms};
        }
      }
    }
    for (;;) {
      auto page = j.read_all(payment_cursor, 2000, std::string{"payment"});
      if (!page || page->empty())
        break;
      for (const auto& ev : *page) {
        payment_cursor = ev.position;
        if (ev.type == "payment.card_expired")
          expired_cards.emplace_back(ev.persistence_id.substr(ev.persistence_id.find('/') + 1),
                                     ev.written_at_ms);
      }
    }
  }
};

std::string order_id(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "order-%05d", i);
  return buf;
}

std::string customer_id(int i) { return "customer-" + std::to_string(i); }

/// The orders of a demo run: a deterministic mix of customers, articles and amounts.
retail::place_order make_order(const options& o, int i) {
  std::mt19937_64 rng{o.seed * 7919 + static_cast<std::uint64_t>(i)};
  retail::place_order cmd;
  cmd.order_id = order_id(i);
  cmd.customer = customer_id(static_cast<int>(rng() % static_cast<std::uint64_t>(o.customers)));
  auto n = 1 + rng() % 3;
  for (std::uint64_t k = 0; k < n; ++k) {
    retail::item it{"article-" + std::to_string(1 + rng() % 40),
                    static_cast<std::int64_t>(500 + rng() % 4500)};
    cmd.total += it.amount;
    cmd.items.push_back(std::move(it));
  }
  return cmd;
}

int run_demo(const options& o) {
  if (!o.resume)
    for (auto suffix : {"", "-wal", "-shm", ".writer-lock"})
      std::filesystem::remove(o.db + suffix);
  retail::settings().seed = o.seed;
  longhaul::runtime rt{config_for(o, true)};
  if (auto err = set_up(rt); err || (err = rt.start())) {
    std::fprintf(stderr, "retail: %s\n", describe(err).c_str());
    return 1;
  }
  auto t0 = rt.now();
  std::printf("retail demo: %d orders, %d customers, seed %llu, clock x%.0f, database %s\n",
              o.orders, o.customers, static_cast<unsigned long long>(o.seed), o.speed,
              o.db.c_str());
  // Customers start with a mix of credit: none, some, or plenty.
  for (int c = 0; c < o.customers; ++c) {
    std::int64_t credit = (c % 5 == 0) ? 0 : (c % 5) * 1500;
    if (credit > 0 && !o.resume)
      (void) rt.send("customer", customer_id(c), retail::grant_credit{credit});
  }
  // Orders arrive over the first virtual half day.
  std::mt19937_64 rng{o.seed};
  for (int i = 0; i < o.orders; ++i) {
    auto r = rt.ask<std::string>("checkout", order_id(i), make_order(o, i));
    if (!r && longhaul::actors::actor_code(r.error()) != longhaul::actors::actor_errc::rejected)
      std::fprintf(stderr, "\nretail: placing %s: %s\n", order_id(i).c_str(),
                   describe(r.error()).c_str());
  }
  // Drive: customers whose card expired update it 1-6 days later, 70% of them; the rest
  // never do (payment fails after 7 days). Decided by a hash: the same on every run.
  order_projection proj;
  std::set<std::string> updated;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{o.timeout_s};
  for (;;) {
    proj.read(rt.journal());
    for (const auto& [order, at] : proj.expired_cards) {
      if (updated.count(order) > 0)
        continue;
      auto u = retail::unit(order, 9);
      if (u >= 0.7) {
        updated.insert(order);  // this customer never updates the card
        continue;
      }
      auto when = at + static_cast<std::int64_t>((1.0 + 5.0 * u / 0.7) * day_ms);
      if (rt.now() >= when) {
        auto st = rt.status("payment", order);
        std::string cust = customer_id(0);
        if (st)
          cust = std::string{boost::json::parse(st->state_json).at("customer").as_string()};
        (void) rt.send("customer", cust, retail::update_card{order, cust});
        updated.insert(order);
      }
    }
    auto done = static_cast<int>(proj.ended.size());
    std::map<std::string, int> by_outcome;
    for (const auto& [id, e] : proj.ended)
      ++by_outcome[e.first.substr(0, e.first.find(':'))];
    std::printf("\r[virtual +%-6s] placed %d | completed %d | canceled %d | failed %d | running %d   ",
                human(rt.now() - t0).c_str(), o.orders, by_outcome["completed"],
                by_outcome["canceled"], by_outcome["failed"], o.orders - done);
    std::fflush(stdout);
    if (done >= o.orders)
      break;
    if (std::chrono::steady_clock::now() > deadline) {
      std::printf("\nretail: timed out with %d orders still running\n", o.orders - done);
      rt.stop();
      return 1;
    }
    std::this_thread::sleep_for(250ms);
  }
  std::printf("\n\n");
  // Every flow ended; the last messages (refunds, restored credit, e-mails) may still be
  // in the outbox. The audit reads a quiet journal, so wait for them first.
  for (;;) {
    auto pending = rt.journal().outbox_pending(0, 1);
    if (pending && pending->empty())
      break;
    if (std::chrono::steady_clock::now() > deadline) {
      std::printf("retail: timed out waiting for the outbox to drain\n");
      rt.stop();
      return 1;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::vector<std::string> expected;
  for (int i = 0; i < o.orders; ++i)
    expected.push_back(order_id(i));
  auto report = retail::audit_journal(rt.journal(), expected);
  if (!report) {
    std::fprintf(stderr, "retail: reading the journal: %s\n", describe(report.error()).c_str());
    rt.stop();
    return 1;
  }
  // Summary per end state with virtual durations.
  std::map<std::string, std::vector<std::int64_t>> durations;
  for (const auto& [id, e] : report->ended)
    durations[e.outcome + ": " + e.reason].push_back(e.ended_at_ms - e.started_at_ms);
  std::printf("%-58s %6s %9s %9s %9s\n", "end state", "orders", "min", "median", "max");
  for (auto& [state, d] : durations) {
    std::sort(d.begin(), d.end());
    std::printf("%-58s %6zu %9s %9s %9s\n", state.c_str(), d.size(), human(d.front()).c_str(),
                human(d[d.size() / 2]).c_str(), human(d.back()).c_str());
  }
  // Money check: card charges kept + credit still taken = totals of completed orders.
  auto money = [](std::int64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld.%02lld", static_cast<long long>(v / 100),
                  static_cast<long long>(v % 100));
    return std::string{buf};
  };
  auto card_net = report->card_charged - report->card_refunded;
  auto credit_held = report->credit_taken - report->credit_restored;
  auto charged = report->net_charged();
  std::printf("\nmoney: charged - refunded = %s (card %s + credit %s); completed orders total %s: "
              "%s\n",
              money(charged).c_str(), money(card_net).c_str(), money(credit_held).c_str(),
              money(report->completed_total).c_str(),
              charged == report->completed_total ? "BALANCED" : "MISMATCH");
  std::printf("e-mails:");
  for (const auto& [kind, n] : report->emails)
    std::printf(" %s %lld,", kind.c_str(), static_cast<long long>(n));
  std::printf(" late card updates %lld\n", static_cast<long long>(report->late_card_updates));
  if (report->ok()) {
    std::printf("audit: every order ended exactly once, no command or e-mail handled twice, "
                "money balanced\n");
  } else {
    std::printf("audit FAILED, %zu problems:\n", report->problems.size());
    for (std::size_t i = 0; i < report->problems.size() && i < 20; ++i)
      std::printf("  %s\n", report->problems[i].c_str());
  }
  rt.stop();
  std::printf("\nthe journal is in %s; look inside with sqlite3 -readonly %s:\n", o.db.c_str(),
              o.db.c_str());
  std::printf("  SELECT json_extract(e.payload, '$.outcome') AS outcome, json_extract(e.payload, "
              "'$.reason') AS reason, count(*) FROM events e WHERE e.type = 'flow.ended' GROUP BY "
              "1, 2;\n");
  std::printf("  SELECT e.seq, e.type, e.payload FROM events e JOIN streams s USING (stream_id) "
              "WHERE s.persistence_id = 'order/order-00007' ORDER BY e.seq;\n");
  std::printf("  SELECT persistence_id, name, datetime(due_at / 1000, 'unixepoch') FROM timers "
              "ORDER BY due_at LIMIT 10;\n");
  return report->ok() ? 0 : 1;
}

int run_status(const options& o) {
  if (o.positional.size() != 1)
    return fail_usage("status needs exactly one order id");
  if (!std::filesystem::exists(o.db))
    return fail_usage("no database '" + o.db + "' (run retail demo first, or pass --db)");
  longhaul::runtime rt{config_for(o, false)};
  if (auto err = set_up(rt); err || (err = rt.start())) {
    std::fprintf(stderr, "retail: %s\n", describe(err).c_str());
    return 1;
  }
  const auto& id = o.positional[0];
  auto fs = rt.flow_status_of("order", id);
  if (!fs) {
    std::fprintf(stderr, "retail: %s\n", describe(fs.error()).c_str());
    return 1;
  }
  if (fs->status == "not_started") {
    std::fprintf(stderr, "retail: no order '%s'\n", id.c_str());
    return 1;
  }
  std::printf("order %s: %s\n", id.c_str(), fs->status.c_str());
  if (!fs->current_step.empty())
    std::printf("  current step: %s\n", fs->current_step.c_str());
  if (!fs->waiting_for.empty()) {
    std::printf("  waiting for:  %s", fs->waiting_for.c_str());
    if (fs->deadline_ms > 0)
      std::printf(" (times out in %s)", human(fs->deadline_ms - rt.now()).c_str());
    std::printf("\n");
  }
  if (!fs->reason.empty())
    std::printf("  reason:       %s\n", fs->reason.c_str());
  std::printf("  history:     ");
  for (const auto& s : fs->executed)
    std::printf(" > %s", s.c_str());
  std::printf("\n");
  for (const auto& c : fs->pending_compensations)
    std::printf("  would compensate: %s\n", c.c_str());
  if (auto p = rt.status("payment", id); p && !p->state_json.empty())
    std::printf("  payment: %s\n", p->state_json.c_str());
  rt.stop();
  return 0;
}

int run_place_order(const options& o) {
  if (o.customer.empty() || o.items.empty())
    return fail_usage("place-order needs --customer C and at least one --item article:cents");
  longhaul::runtime rt{config_for(o, false)};
  if (auto err = set_up(rt); err || (err = rt.start())) {
    std::fprintf(stderr, "retail: %s\n", describe(err).c_str());
    return 1;
  }
  retail::place_order cmd;
  cmd.order_id = "order-cli-" + std::to_string(real_now_ms());
  cmd.customer = o.customer;
  cmd.items = o.items;
  for (const auto& i : o.items)
    cmd.total += i.amount;
  auto r = rt.ask<std::string>("checkout", cmd.order_id, cmd);
  if (!r) {
    std::fprintf(stderr, "retail: %s\n", describe(r.error()).c_str());
    return 1;
  }
  std::this_thread::sleep_for(500ms);  // let the flow take its first steps
  std::printf("placed %s (total %lld cents); see: retail status %s --db %s\n", r->c_str(),
              static_cast<long long>(cmd.total), r->c_str(), o.db.c_str());
  rt.stop();
  return 0;
}

int run_update_card(const options& o) {
  if (o.positional.size() != 1)
    return fail_usage("update-card needs exactly one order id");
  longhaul::runtime rt{config_for(o, false)};
  if (auto err = set_up(rt); err || (err = rt.start())) {
    std::fprintf(stderr, "retail: %s\n", describe(err).c_str());
    return 1;
  }
  const auto& id = o.positional[0];
  auto st = rt.status("payment", id);
  if (!st || st->state_json.empty()) {
    std::fprintf(stderr, "retail: no payment for order '%s'\n", id.c_str());
    return 1;
  }
  auto p = boost::json::parse(st->state_json).as_object();
  std::string cust{p.at("customer").as_string()};
  if (cust.empty()) {
    std::fprintf(stderr, "retail: no payment for order '%s'\n", id.c_str());
    return 1;
  }
  auto r = rt.ask("customer", cust, retail::update_card{id, cust});
  if (!r) {
    std::fprintf(stderr, "retail: %s\n", describe(r.error()).c_str());
    return 1;
  }
  std::this_thread::sleep_for(500ms);
  std::printf("card of %s updated for %s (payment was %s)\n", cust.c_str(), id.c_str(),
              std::string{p.at("status").as_string()}.c_str());
  rt.stop();
  return 0;
}

int run_crash_demo(int argc, char** argv, options o) {
  (void) argc;
  if (o.orders == 1000)
    o.orders = 300;
  for (auto suffix : {"", "-wal", "-shm", ".writer-lock"})
    std::filesystem::remove(o.db + suffix);
  auto epoch = real_now_ms();
  std::mt19937_64 rng{o.seed};
  const int kills = 4;
  std::printf("crash demo: %d orders in a child process, SIGKILLed %d times\n", o.orders, kills);
  auto spawn = [&](bool quiet) {
    auto pid = ::fork();
    if (pid == 0) {
      if (quiet) {
        std::freopen("/dev/null", "w", stdout);
      }
      auto orders = std::to_string(o.orders);
      auto seed = std::to_string(o.seed);
      auto speed = std::to_string(static_cast<long long>(o.speed));
      auto er = std::to_string(epoch);
      std::vector<const char*> args{argv[0], "demo",          "--resume",   "--db",
                                    o.db.c_str(), "--orders", orders.c_str(), "--seed",
                                    seed.c_str(), "--speed",  speed.c_str(), "--epoch-real",
                                    er.c_str(),   "--epoch-virtual", er.c_str(), nullptr};
      ::execv("/proc/self/exe", const_cast<char* const*>(args.data()));
      _exit(127);
    }
    return pid;
  };
  for (int k = 1; k <= kills; ++k) {
    auto pid = spawn(true);
    auto wait_ms = 1500 + static_cast<int>(rng() % 2500);
    std::this_thread::sleep_for(std::chrono::milliseconds{wait_ms});
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::printf("  run %d: killed with SIGKILL after %d ms\n", k, wait_ms);
  }
  std::printf("  final run, to the end:\n\n");
  std::fflush(stdout);
  auto pid = spawn(false);
  int status = 0;
  ::waitpid(pid, &status, 0);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("\ncrash demo: %s\n", ok ? "every order ended exactly once and the money balances"
                                      : "CHECK FAILED (see above)");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string{argv[1]} == "--help" || std::string{argv[1]} == "-h") {
    std::fputs(usage_text, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  options o;
  for (int i = 2; i < argc; ++i)
    if (std::string{argv[i]} == "--help") {
      std::fputs(usage_text, stdout);
      return 0;
    }
  if (auto err = parse(argc, argv, 2, o); !err.empty())
    return fail_usage(err);
  if (cmd == "demo")
    return o.positional.empty() ? run_demo(o) : fail_usage("demo takes no arguments");
  if (cmd == "status")
    return run_status(o);
  if (cmd == "place-order")
    return run_place_order(o);
  if (cmd == "update-card")
    return run_update_card(o);
  if (cmd == "crash-demo")
    return run_crash_demo(argc, argv, o);
  return fail_usage("unknown command '" + cmd + "'");
}
