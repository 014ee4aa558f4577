// Semantic tests that need the SQLite journal or real threads: recovery after the runtime
// is stopped and a new one opens the same file (with and without snapshots), incidents
// that survive it, draining on stop(), bounded concurrent recoveries under load; and the
// fault journal these tests rely on (its own promises, and the journal contract suite
// run through it over SQLite, so "no fault scripted" means "the inner journal").
#include "tests/runtime/runtime_fixture.hpp"

#include "persistence/forwarding_journal.hpp"
#include "persistence/sqlite_journal.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <sched.h>

namespace {

/// Opens the SQLite file read-only (after the runtime stopped) to look at what is stored.
std::unique_ptr<longhaul::persistence::sqlite_journal> inspect(const std::string& path) {
  longhaul::persistence::sqlite_journal_config cfg;
  cfg.path = path;
  cfg.read_only = true;
  auto j = longhaul::persistence::sqlite_journal::open(cfg);
  INFO((j ? std::string{} : longhaul::persistence::describe(j.error())));
  REQUIRE(j);
  return std::move(*j);
}

/// A fresh SQLite journal in `dir` (shared: a fault journal wraps it).
std::shared_ptr<longhaul::persistence::journal>
fresh_sqlite(const semantics::temp_dir& dir, const std::string& name,
             std::size_t keep_snapshots = 0,
             std::function<longhaul::persistence::time_ms()> clock = {}) {
  longhaul::persistence::sqlite_journal_config cfg;
  cfg.path = dir.file(name);
  cfg.sync = longhaul::persistence::sync_mode::normal;
  cfg.keep_snapshots = keep_snapshots;
  cfg.clock = std::move(clock);
  auto j = longhaul::persistence::sqlite_journal::open(std::move(cfg));
  INFO((j ? std::string{} : longhaul::persistence::describe(j.error())));
  REQUIRE(j);
  return std::shared_ptr<longhaul::persistence::journal>{std::move(*j)};
}

/// Contract backend: a fault journal with nothing scripted over a fresh SQLite journal.
struct fault_over_sqlite_backend {
  semantics::temp_dir dir;
  int opened = 0;

  std::unique_ptr<longhaul::persistence::journal>
  make_journal(std::size_t keep_snapshots, std::function<longhaul::persistence::time_ms()> clock) {
    return std::make_unique<longhaul::persistence::fault_journal>(
      fresh_sqlite(dir, "contract-" + std::to_string(++opened) + ".db", keep_snapshots,
                   std::move(clock)));
  }
};

}  // namespace

#define LONGHAUL_JOURNAL_BACKEND fault_over_sqlite_backend
#define LONGHAUL_JOURNAL_BACKEND_NAME "fault(sqlite)"
#include "tests/persistence/journal_contract.hpp"

using namespace semantics;

namespace {

using longhaul::persistence::atomic_write;
using longhaul::persistence::fault_journal;
using longhaul::persistence::write_result;

atomic_write one_event(std::string pid, longhaul::persistence::sequence_nr expected_seq) {
  atomic_write w;
  w.persistence_id = std::move(pid);
  w.expected_seq = expected_seq;
  w.events.push_back({"thing.happened", 1, "{}", {}});
  return w;
}

/// An entity whose decision replies the scheduling policy of the thread that decides.
namespace thread_probe {
struct which_policy { static constexpr auto command_name = "which_policy"; };
BOOST_DESCRIBE_STRUCT(which_policy, (), ())
struct probed {
  static constexpr auto event_name = "probe.probed";
  static constexpr std::uint32_t schema_version = 1;
  int policy = 0;
};
BOOST_DESCRIBE_STRUCT(probed, (), (policy))
struct probe_state { int probes = 0; };
BOOST_DESCRIBE_STRUCT(probe_state, (), (probes))

struct probe {
  static constexpr auto type_name = "probe";
  using state = probe_state;
  using command = std::variant<which_policy>;
  using event = std::variant<probed>;
  static longhaul::decision<event> decide(const state&, const command&) {
    longhaul::decision<event> r;
    r.reply(sched_getscheduler(0));
    return r;
  }
  static void apply(state& s, const event&) { ++s.probes; }
};
}  // namespace thread_probe

}  // namespace

// -- the fault journal itself -------------------------------------------------------------

TEST_CASE("fault journal: a fault code of the wrong class is refused with invalid_argument") {
  fault_journal j{std::make_shared<longhaul::persistence::memory_journal>()};
  CHECK(code_of(j.fail_next_writes(1, persistence_errc::sequence_conflict)) == "invalid_argument");
  CHECK(code_of(j.fail_next_writes_after_storing(1, persistence_errc::duplicate_message))
        == "invalid_argument");
  CHECK(code_of(j.reject_next_writes(1, persistence_errc::io_error)) == "invalid_argument");
  CHECK(code_of(j.fail_next_reads(1, persistence_errc::ok)) == "invalid_argument");
  CHECK(j.pending_faults() == 0);
  CHECK_THROWS_AS(fault_journal{nullptr}, std::invalid_argument);
}

TEST_CASE("fault journal: scripted write faults hit the next writes in order, then writes pass through") {
  temp_dir dir;
  auto inner = fresh_sqlite(dir, "faults.db");
  fault_journal j{inner};
  REQUIRE_FALSE(j.reject_next_writes(1, persistence_errc::sequence_conflict));
  REQUIRE_FALSE(j.fail_next_writes(1, persistence_errc::disk_full));
  REQUIRE_FALSE(j.fail_next_writes_after_storing(1, persistence_errc::io_error));
  CHECK(j.pending_faults() == 3);
  CHECK(code_of(j.write_and_wait(one_event("p/1", 1))) == "sequence_conflict");
  CHECK(code_of(j.write_and_wait(one_event("p/1", 1))) == "disk_full");
  CHECK(*inner->highest_seq("p/1") == 0);  // neither was stored
  CHECK(code_of(j.write_and_wait(one_event("p/1", 1))) == "io_error");
  CHECK(*inner->highest_seq("p/1") == 1);  // stored, though reported failed
  auto ok = j.write_and_wait(one_event("p/1", 2));
  REQUIRE(ok);
  CHECK(ok->highest_seq == 2);
  CHECK(j.writes_seen() == 4);
  CHECK(j.pending_faults() == 0);
}

TEST_CASE("fault journal: held acknowledgements of stored writes are delivered in write order on release") {
  temp_dir dir;
  auto inner = fresh_sqlite(dir, "hold.db");
  fault_journal j{inner};
  j.hold_acknowledgements();
  std::mutex mtx;
  std::vector<longhaul::persistence::sequence_nr> acked;
  REQUIRE_FALSE(j.fail_next_writes(1));  // a failure is held like any other outcome
  for (longhaul::persistence::sequence_nr seq = 1; seq <= 6; ++seq)
    j.write(one_event("h/1", seq == 1 ? 1 : seq - 1), [&](caf::expected<write_result> r) {
      std::lock_guard guard{mtx};
      acked.push_back(r ? r->highest_seq : 0);
    });
  inner->flush();  // the writer thread committed everything
  CHECK(*inner->highest_seq("h/1") == 5);
  CHECK(j.held_acknowledgements() == 6);
  {
    std::lock_guard guard{mtx};
    CHECK(acked.empty());
  }
  CHECK(j.release_acknowledgements() == 6);
  CHECK(acked == std::vector<longhaul::persistence::sequence_nr>{0, 1, 2, 3, 4, 5});
  // No longer holding: the next acknowledgement arrives by itself.
  REQUIRE(j.write_and_wait(one_event("h/1", 6)));
  CHECK(j.held_acknowledgements() == 0);
}

TEST_CASE("fault journal: flush() and destruction deliver held acknowledgements") {
  auto inner = std::make_shared<longhaul::persistence::memory_journal>();
  int acked = 0;
  {
    fault_journal j{inner};
    j.hold_acknowledgements();
    j.write(one_event("d/1", 1), [&](auto r) { acked += r ? 1 : 0; });
    CHECK(acked == 0);
    j.flush();
    CHECK(acked == 1);
    j.hold_acknowledgements();
    j.write(one_event("d/1", 2), [&](auto r) { acked += r ? 1 : 0; });
    CHECK(acked == 1);
  }
  CHECK(acked == 2);
}

TEST_CASE("fault journal: scripted read faults fail the next recovery reads, then reads pass through") {
  auto inner = std::make_shared<longhaul::persistence::memory_journal>();
  fault_journal j{inner};
  REQUIRE(j.write_and_wait(one_event("r/1", 1)));
  REQUIRE_FALSE(j.fail_next_reads(2, persistence_errc::corrupt));
  auto snap = j.load_snapshot("r/1", {});
  CHECK(code_of(snap) == "corrupt");
  auto events = j.replay("r/1", 1, longhaul::persistence::max_sequence_nr, 10);
  CHECK(code_of(events) == "corrupt");
  auto again = j.replay("r/1", 1, longhaul::persistence::max_sequence_nr, 10);
  REQUIRE(again);
  CHECK(again->events.size() == 1);
}

TEST_CASE("fault journal: a scripted outbox removal fault removes nothing, the next removal works") {
  auto inner = std::make_shared<longhaul::persistence::memory_journal>();
  fault_journal j{inner};
  auto w = one_event("o/1", 1);
  w.outbox.push_back({"msg-1", "account/a1", R"({"name":"deposit","payload":{"amount":1}})"});
  REQUIRE(j.write_and_wait(std::move(w)));
  auto pending = outbox_of(j);
  REQUIRE(pending.size() == 1);
  j.fail_next_outbox_removals(1);
  CHECK(code_of(j.outbox_delivered({pending[0].outbox_seq})) == "io_error");
  CHECK(outbox_of(j).size() == 1);
  CHECK_FALSE(j.outbox_delivered({pending[0].outbox_seq}));
  CHECK(outbox_of(j).empty());
}

// -- the runtime on SQLite ------------------------------------------------------------------

TEST_CASE("a new runtime on the same SQLite file recovers state and sequence number from the stored events") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  {
    auto b = bank_runtime::on_sqlite(path);
    b->start();
    b->open("a1");
    b->deposit_ok("a1", 100);
    b->deposit_ok("a1", 50);
    CHECK(*b->withdraw("a1", 30) == 120);
    b->open("a2", "bob");
  }
  auto b = bank_runtime::on_sqlite(path);
  b->start();
  CHECK(b->live() == 0);
  CHECK(b->balance("a1") == 120);
  auto st = b->status("a1");
  CHECK(st.highest_seq == 4);
  CHECK(st.mode == "ready");
  CHECK(b->status("a2").highest_seq == 1);
  // The stream continues where it ended.
  CHECK(*b->deposit("a1", 1) == 121);
  CHECK(b->status("a1").highest_seq == 5);
  CHECK(code_of(b->rt().ask("account", "a2", bank::open_account{"eve"})) == "rejected");
}

TEST_CASE("on SQLite a redelivered message whose first delivery was rejected is answered with the same rejection, also by a new runtime") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  std::string first_text;
  {
    auto b = bank_runtime::on_sqlite(path);
    b->start();
    b->open("r1");
    auto first = b->deliver("r1", "ext-r", bank::withdraw{500});
    REQUIRE(code_of(first) == "rejected");
    first_text = text_of(first);
    b->deposit_ok("r1", 1000);
    // Through the reader pool (real threads): the first answer, not a second decision.
    auto again = b->deliver("r1", "ext-r", bank::withdraw{500});
    CHECK(text_of(again) == first_text);
  }
  auto stored = inspect(path)->processed_outcome("account/r1", "ext-r");
  REQUIRE(stored);
  REQUIRE(stored->has_value());
  CHECK((*stored)->rejection == std::optional<std::string>{first_text});
  auto b = bank_runtime::on_sqlite(path);
  b->start();
  auto after_restart = b->deliver("r1", "ext-r", bank::withdraw{500});
  CHECK(text_of(after_restart) == first_text);
  CHECK(b->balance("r1") == 1000);
}

TEST_CASE("recovery from SQLite uses the newest snapshot even when the events it covers were deleted") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  {
    auto b = bank_runtime::on_sqlite(path);
    b->account.snapshot_every = 2;
    b->account.delete_events_on_snapshot = true;
    b->start();
    b->open("s1");
    b->deposit_ok("s1", 100);   // seq 2: snapshot, events 1-2 deleted
    b->deposit_ok("s1", 50);
    CHECK(*b->withdraw("s1", 30) == 120);  // seq 4: snapshot, events 3-4 deleted
    b->deposit_ok("s1", 5);     // seq 5: not covered
    // Snapshots are saved off the actor's path: wait until the one at 4 and its
    // deletions are visible before stopping.
    CHECK(eventually([&] {
      auto snap = b->journal().load_snapshot("account/s1", {});
      auto events = b->journal().replay("account/s1", 1, longhaul::persistence::max_sequence_nr, 100);
      return snap && *snap && (*snap)->seq == 4 && events && events->events.size() == 1;
    }));
  }
  {
    auto j = inspect(path);
    auto left = events_of(*j, "account/s1");
    REQUIRE(left.size() == 1);
    CHECK(left[0].seq == 5);
  }
  auto b = bank_runtime::on_sqlite(path);
  b->account.snapshot_every = 2;
  b->account.delete_events_on_snapshot = true;
  b->start();
  CHECK(b->balance("s1") == 125);
  auto st = b->status("s1");
  CHECK(st.highest_seq == 5);
  CHECK(json_int(st.state_json, "deposits") == 3);
  CHECK(*b->deposit("s1", 1) == 126);
  CHECK(b->status("s1").highest_seq == 6);
}

TEST_CASE("an incident opened on SQLite survives a restart: listed, commands refused until resume") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  {
    auto b = bank_runtime::on_sqlite(path);
    b->account.max_failures = 3;
    b->start();
    b->open("i1");
    b->deposit_ok("i1", 100);
    // Each failure restarts the instance after a real backoff; the asks wait for it.
    for (int i = 0; i < 3; ++i)
      CHECK(code_of(b->audit("i1", true)) == "decide_threw");
    // Queued behind the incident write: refused once the incident is stored.
    CHECK(code_of(b->deposit("i1", 1)) == "incident");
    REQUIRE(b->incidents().size() == 1);
  }
  auto b = bank_runtime::on_sqlite(path);
  b->account.max_failures = 3;
  b->start();
  auto open = b->incidents();  // read from the journal, before any activation
  REQUIRE(open.size() == 1);
  CHECK(open[0].persistence_id == "account/i1");
  CHECK_THAT(open[0].error, Catch::Contains("audit system unavailable"));
  CHECK(b->status("i1").mode == "incident");
  auto refused = b->deposit("i1", 1);
  CHECK(code_of(refused) == "incident");
  CHECK_THAT(text_of(refused), Catch::Contains("audit system unavailable"));

  auto resumed = b->rt().resume("account", "i1");
  INFO(longhaul::persistence::describe(resumed));
  REQUIRE_FALSE(resumed);
  CHECK(*b->deposit("i1", 1) == 101);
  CHECK(b->incidents().empty());
  b->restart();
  CHECK(b->incidents().empty());
  CHECK(b->status("i1").mode == "ready");
  CHECK(b->balance("i1") == 101);
}

TEST_CASE("stop() drains: every command sent with send() before stop() is stored") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  constexpr int accounts = 8;
  constexpr int per_account = 50;
  {
    auto b = bank_runtime::on_sqlite(path);
    b->start();
    for (int n = 0; n < per_account; ++n)
      for (int a = 0; a < accounts; ++a)
        REQUIRE_FALSE(b->rt().send("account", "d" + std::to_string(a), bank::deposit{n + 1}));
    b->rt().stop();
    CHECK_FALSE(b->rt().running());
    b->rt().stop();  // idempotent
  }
  auto j = inspect(path);
  for (int a = 0; a < accounts; ++a) {
    auto events = events_of(*j, "account/d" + std::to_string(a));
    INFO("account d" << a);
    REQUIRE(events.size() == per_account);
    // In the order they were sent.
    for (int n = 0; n < per_account; ++n)
      CHECK(json_int(events[n].payload_json, "amount") == n + 1);
  }
}

TEST_CASE("stop() drains with the in-memory journal on real threads too") {
  bank_runtime b;
  b.cfg.deterministic = false;
  b.cfg.worker_threads = 2;
  b.start();
  for (int n = 0; n < 200; ++n)
    REQUIRE_FALSE(b.rt().send("account", "m" + std::to_string(n % 5), bank::deposit{1}));
  b.stop();
  for (int a = 0; a < 5; ++a)
    CHECK(events_of(*b.storage, "account/m" + std::to_string(a)).size() == 40);
}

TEST_CASE("with max_concurrent_recoveries=1 on SQLite, many instances asked at once all recover their own state") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  constexpr int count = 40;
  {
    auto b = bank_runtime::on_sqlite(path);
    b->start();
    for (int i = 0; i < count; ++i)
      for (int n = 0; n <= i % 4; ++n)
        REQUIRE_FALSE(b->rt().send("account", "k" + std::to_string(i), bank::deposit{i + 1}));
  }
  auto b = bank_runtime::on_sqlite(path);
  b->cfg.max_concurrent_recoveries = 1;
  b->start();
  // Fire-and-forget first so that all instances recover concurrently, then ask each.
  for (int i = 0; i < count; ++i)
    REQUIRE_FALSE(b->rt().send("account", "k" + std::to_string(i), bank::deposit{1}));
  for (int i = 0; i < count; ++i) {
    INFO("instance k" << i);
    CHECK(b->balance("k" + std::to_string(i)) == (i + 1) * (i % 4 + 1) + 1);
    CHECK(b->status("k" + std::to_string(i)).highest_seq
          == static_cast<std::uint64_t>(i % 4 + 2));
  }
}

/// Counts how many recovery reads run at once; each is made to last 2 ms so that
/// recoveries that may overlap do.
class overlap_journal final
  : public longhaul::persistence::forwarding_journal<longhaul::persistence::sqlite_journal> {
public:
  using forwarding_journal::forwarding_journal;

  caf::expected<longhaul::persistence::recovery_start>
  load_recovery_start(std::string_view id, std::uint64_t max_events) override {
    auto now = ++running_;
    auto most = most_.load();
    while (now > most && !most_.compare_exchange_weak(most, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
    auto r = inner().load_recovery_start(id, max_events);
    --running_;
    ++calls_;
    return r;
  }

  int most() const { return most_; }
  int calls() const { return calls_; }

private:
  std::atomic<int> running_{0};
  std::atomic<int> most_{0};
  std::atomic<int> calls_{0};
};

TEST_CASE("with max_concurrent_recoveries=2 and four readers, at most two recoveries read at "
          "once, whether the permit came with the activation or was asked for") {
  temp_dir dir;
  auto path = dir.file("bank.db");
  constexpr int count = 60;
  {
    auto b = bank_runtime::on_sqlite(path);
    b->start();
    for (int i = 0; i < count; ++i)
      REQUIRE_FALSE(b->rt().send("account", "p" + std::to_string(i), bank::deposit{i + 1}));
  }
  longhaul::persistence::sqlite_journal_config jc;
  jc.path = path;
  jc.sync = longhaul::persistence::sync_mode::normal;
  auto opened = longhaul::persistence::sqlite_journal::open(jc);
  REQUIRE(opened);
  auto observed = std::make_shared<overlap_journal>(
    std::shared_ptr<longhaul::persistence::sqlite_journal>{std::move(*opened)});
  bank_runtime b;
  b.cfg.deterministic = false;
  b.cfg.worker_threads = 2;
  b.cfg.reader_threads = 4;
  b.cfg.max_concurrent_recoveries = 2;
  b.cfg.journal_override = observed;
  b.start();
  for (int i = 0; i < count; ++i)
    REQUIRE_FALSE(b.rt().send("account", "p" + std::to_string(i), bank::deposit{1}));
  for (int i = 0; i < count; ++i) {
    INFO("instance p" << i);
    CHECK(b.balance("p" + std::to_string(i)) == i + 2);
  }
  CHECK(observed->calls() == count);
  CHECK(observed->most() <= 2);
  CHECK(observed->most() >= 1);
}

TEST_CASE("a failed write on SQLite restarts the instance, which then works with the stored state") {
  // The SQLite journal behind the fault decorator, on real threads.
  temp_dir dir;
  longhaul::persistence::sqlite_journal_config jc;
  jc.path = dir.file("bank.db");
  jc.sync = longhaul::persistence::sync_mode::normal;
  auto opened = longhaul::persistence::sqlite_journal::open(jc);
  REQUIRE(opened);
  std::shared_ptr<longhaul::persistence::sqlite_journal> sqlite{std::move(*opened)};
  auto faults = std::make_shared<longhaul::persistence::fault_journal>(sqlite);
  bank_runtime b;
  b.cfg.deterministic = false;
  b.cfg.worker_threads = 2;
  b.cfg.journal_override = faults;
  b.start();
  b.open("f1");
  b.deposit_ok("f1", 100);
  REQUIRE_FALSE(faults->fail_next_writes_after_storing(1));
  CHECK(code_of(b.deposit("f1", 50)) == "io_error");
  // The next command waits for the restart (real backoff) and sees the stored deposit.
  CHECK(*b.deposit("f1", 1) == 151);
  CHECK(b.status("f1").highest_seq == 4);
  b.stop();
  sqlite->close();
}

TEST_CASE("ask on real threads gives up with timeout when no reply comes in time, and the command still completes") {
  // ask bounds its wait itself (no CAF request timeout, which CAF 0.17 would keep in its
  // clock until it expired): an unacknowledged write keeps the reply back.
  bank_runtime b;
  b.cfg.deterministic = false;
  b.cfg.worker_threads = 2;
  b.start();
  b.open("t1");
  b.faults->hold_acknowledgements();
  auto r = b.rt().ask<std::int64_t>("account", "t1", bank::deposit{5}, 200ms);
  CHECK(code_of(r) == "timeout");
  for (int i = 0; i < 500 && b.faults->held_acknowledgements() == 0; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(b.faults->release_acknowledgements() == 1);
  CHECK(b.balance("t1") == 5);
  b.stop();
}

TEST_CASE("actor threads run as SCHED_BATCH so that they never preempt the journal writer, unless yield_to_writer is off") {
  if (sched_getscheduler(0) != SCHED_OTHER) {
    WARN("the test process does not run under SCHED_OTHER: nothing to compare against");
    return;
  }
  for (bool yield : {true, false}) {
    CAPTURE(yield);
    longhaul::runtime_config cfg;
    cfg.deterministic = false;
    cfg.storage = longhaul::storage_kind::memory;
    cfg.worker_threads = 2;
    CHECK(cfg.yield_to_writer);  // on by default
    REQUIRE_FALSE(longhaul::set_option(cfg, "yield_to_writer", yield ? "true" : "false"));
    longhaul::runtime rt{cfg};
    rt.register_entity<thread_probe::probe>();
    REQUIRE_FALSE(rt.start());
    auto policy = rt.ask<int>("probe", "p1", thread_probe::which_policy{});
    INFO((policy ? std::string{} : longhaul::persistence::describe(policy.error())));
    REQUIRE(policy);
    CHECK(*policy == (yield ? SCHED_BATCH : SCHED_OTHER));
    CHECK(sched_getscheduler(0) == SCHED_OTHER);  // the caller's thread is left alone
    rt.stop();
  }
  longhaul::runtime_config cfg;
  CHECK(longhaul::persistence::describe(longhaul::set_option(cfg, "yield_to_writer", "maybe"))
          .find("true or false") != std::string::npos);
}
