// Real crash test of the retail sample: the `retail` program runs its demo (1,000 orders
// by default, the realistic mix of paths, accelerated clock, SQLite file) in a child
// process that is SIGKILLed at random moments (start-up and recovery, while orders are
// placed, while payments, picks, shipments and deadlines run) and restarted with
// --resume, the clock running on meanwhile; a final run lets every order end. The parent
// then audits the file (samples/retail/retail_audit.hpp): every order reached exactly one
// end state, no command or e-mail was handled twice, charged - refunded = the totals of
// the completed orders. Env: LONGHAUL_CRASH_KILLS (default 8), LONGHAUL_RETAIL_ORDERS
// (default 1000), LONGHAUL_CRASH_SEED (kill timing; printed).
#include "persistence/sqlite_journal.hpp"
#include "samples/retail/retail_audit.hpp"
#include "tests/crash_harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#ifndef LONGHAUL_RETAIL_PROGRAM
#  error "LONGHAUL_RETAIL_PROGRAM must name the retail executable"
#endif

namespace {

namespace fs = std::filesystem;
namespace lp = longhaul::persistence;
using longhaul::testing::child_process;

/// Clock seconds per real second: the demo's default. The 7-day card deadline comes
/// ~15 s after the orders are placed, the 12-hour goods wait lasts ~1 s: a restart inside
/// that wait may let it time out, which only moves an order to the refund path.
constexpr std::uint64_t speed = 40000;

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

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string order_id(std::uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "order-%05llu", static_cast<unsigned long long>(i));
  return buf;
}

/// The child's last progress line ("[virtual +1.2d] placed 1000 | completed 120 | ..."),
/// or where it was before printing any.
std::string last_progress(const std::string& output) {
  auto begin = output.find_last_of('\r');
  if (begin == std::string::npos)
    return "start-up (no progress line yet)";
  auto line = output.substr(begin + 1);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\n'))
    line.pop_back();
  return line;
}

}  // namespace

TEST_CASE("retail orders SIGKILLed at random moments each reach exactly one end state, "
          "nothing is handled twice and the money balances") {
  auto seed = env_number("LONGHAUL_CRASH_SEED").value_or(std::random_device{}());
  auto kills = env_number("LONGHAUL_CRASH_KILLS").value_or(8);
  auto orders = env_number("LONGHAUL_RETAIL_ORDERS").value_or(1000);
  REQUIRE(orders > 0);
  std::cout << "retail crash test: seed " << seed << ", " << kills << " kills, " << orders
            << " orders (LONGHAUL_CRASH_SEED / LONGHAUL_CRASH_KILLS / LONGHAUL_RETAIL_ORDERS)"
            << std::endl;
  scratch_dir dir{"retail_crash"};
  auto db = (dir.path / "retail.db").string();
  auto epoch = std::to_string(wall_ms());
  auto args = [&](bool resume) {
    std::vector<std::string> a{"demo",    "--db",    db,      "--orders",
                               std::to_string(orders), "--seed",  "42",    "--speed",
                               std::to_string(speed),  "--epoch-real", epoch,
                               "--epoch-virtual",      epoch,  "--timeout", "300"};
    if (resume)
      a.push_back("--resume");
    return a;
  };
  auto started = std::chrono::steady_clock::now();
  auto since_start = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now()
                                                                 - started);
  };
  // Kill moments spread over the orders' life on the shared clock: placing them (the
  // first ~2 s), payments, picks and shipments, up to just before the card deadlines 7
  // virtual days in (15.1 s), which end the last orders. Until then orders are open, so
  // every kill lands while there is work; a later moment could find the orders all ended
  // (the faster the runtime catches up after a restart, the sooner). A child lives at
  // least 150 ms, so kills also land during start-up and recovery.
  constexpr auto last_deadline_ms =
    static_cast<int>(7ll * 24 * 3600 * 1000 / static_cast<std::int64_t>(speed));
  std::mt19937_64 rng{seed};
  std::uniform_int_distribution<int> moment_ms{100, last_deadline_ms - 250};
  std::vector<int> moments;
  for (std::uint64_t k = 0; k < kills; ++k)
    moments.push_back(moment_ms(rng));
  std::sort(moments.begin(), moments.end());
  std::uint64_t landed = 0;
  for (std::uint64_t k = 0; k < kills; ++k) {
    INFO("kill " << k << " (seed " << seed << ")");
    auto child = child_process::spawn(LONGHAUL_RETAIL_PROGRAM, args(k > 0));
    auto life = std::max<std::int64_t>(150, moments[k] - since_start().count());
    auto status = child.kill_after(std::chrono::milliseconds{life});
    if (status.killed()) {
      ++landed;
      std::cout << "  run " << k + 1 << ": SIGKILL after " << life << " ms ("
                << since_start().count() << " ms in), at " << last_progress(child.output())
                << std::endl;
    } else {
      // Only when the orders had all ended before this kill (more kills than the
      // timeline holds): the child ran its own audit, which must have passed.
      std::cout << "  run " << k + 1 << ": ended on its own, " << status.describe() << std::endl;
      CHECK(status.exited);
      CHECK(status.exit_code == 0);
    }
  }
  auto last = child_process::spawn(LONGHAUL_RETAIL_PROGRAM, args(kills > 0));
  auto status = last.wait();
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - started)
                   .count();
  INFO("seed " << seed << ", dir " << dir.path << "\nfinal run: " << status.describe() << "\n"
                << last.output());
  CHECK(status.exited);
  CHECK(status.exit_code == 0);
  CHECK(last.output().find("audit: every order ended exactly once") != std::string::npos);

  // The parent's own audit of the file the children left behind.
  lp::sqlite_journal_config cfg;
  cfg.path = db;
  cfg.read_only = true;
  auto journal = lp::sqlite_journal::open(cfg);
  INFO((journal ? std::string{} : lp::describe(journal.error())));
  REQUIRE(journal);
  std::vector<std::string> expected;
  for (std::uint64_t i = 0; i < orders; ++i)
    expected.push_back(order_id(i));
  auto report = retail::audit_journal(**journal, expected);
  INFO((report ? std::string{} : lp::describe(report.error())));
  REQUIRE(report);
  for (std::size_t i = 0; i < report->problems.size() && i < 30; ++i)
    UNSCOPED_INFO(report->problems[i]);
  CHECK(report->ok());
  CHECK(report->orders_placed == orders);
  CHECK(report->ended.size() == orders);
  std::size_t ends = 0;
  for (const auto& [state, n] : report->end_states)
    ends += n;
  CHECK(ends == orders);
  CHECK(report->net_charged() == report->completed_total);
  CHECK(landed >= std::min<std::uint64_t>(kills, 8));

  std::cout << "retail crash test: " << landed << " kills landed, " << report->ended.size()
            << " orders ended in " << elapsed << " ms:\n";
  for (const auto& [state, n] : report->end_states)
    std::cout << "  " << n << "  " << state << "\n";
  std::cout << "  money: charged - refunded " << report->net_charged() << " = completed total "
            << report->completed_total << " cents; e-mails";
  for (const auto& [kind, n] : report->emails)
    std::cout << " " << kind << " " << n;
  std::cout << std::endl;
}
