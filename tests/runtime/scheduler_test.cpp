// Deterministic tests of durable timers (scheduler_actor + persistent_entity_actor) on the
// virtual clock: due order, replace, cancel, lateness after downtime, long chains, waking
// passivated instances, 100,000 timers, spans beyond 32 bits, bad input and restarts.

// GCC 12 with -fsanitize=address reports a false -Wmaybe-uninitialized inside
// boost::json::value_to for described structs holding vectors (alarm_state, billing_state).
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "tests/runtime/runtime_fixture.hpp"
#include "tests/runtime/timer_entities.hpp"

#include "actors/clock.hpp"
#include "actors/persistent_entity_actor.hpp"
#include "persistence/fault_journal.hpp"
#include "persistence/memory_journal.hpp"
#include "persistence/forwarding_journal.hpp"
#include "persistence/sqlite_journal.hpp"

#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <set>

using namespace semantics;
using longhaul::persistence::time_ms;

namespace alarms {

// -- alarm: any number of named timers, each recorded when it rings ---------------------

struct alarm_at {
  std::string name;
  std::int64_t due_ms = 0;
};
BOOST_DESCRIBE_STRUCT(alarm_at, (), (name, due_ms))

/// Sets (or replaces) every listed timer at its absolute due time.
struct set_alarms {
  static constexpr auto command_name = "set_alarms";
  std::vector<alarm_at> alarms;
};
/// Sets (or replaces) one timer `delay_ms` after the decision is stored.
struct set_alarm_after {
  static constexpr auto command_name = "set_alarm_after";
  std::string name;
  std::int64_t delay_ms = 0;
};
struct cancel_alarm {
  static constexpr auto command_name = "cancel_alarm";
  std::string name;
};
/// The timer command. Names starting with "refuse" are rejected by decide().
struct ring {
  static constexpr auto command_name = "ring";
  std::string name;
  std::int64_t late_by_ms = 0;  // filled in by the scheduler
};
BOOST_DESCRIBE_STRUCT(set_alarms, (), (alarms))
BOOST_DESCRIBE_STRUCT(set_alarm_after, (), (name, delay_ms))
BOOST_DESCRIBE_STRUCT(cancel_alarm, (), (name))
BOOST_DESCRIBE_STRUCT(ring, (), (name, late_by_ms))

struct alarms_set {
  static constexpr auto event_name = "alarm.set";
  static constexpr std::uint32_t schema_version = 1;
  std::vector<std::string> names;
};
struct alarm_cancelled {
  static constexpr auto event_name = "alarm.cancelled";
  static constexpr std::uint32_t schema_version = 1;
  std::string name;
};
struct alarm_rang {
  static constexpr auto event_name = "alarm.rang";
  static constexpr std::uint32_t schema_version = 1;
  std::string name;
  std::int64_t late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(alarms_set, (), (names))
BOOST_DESCRIBE_STRUCT(alarm_cancelled, (), (name))
BOOST_DESCRIBE_STRUCT(alarm_rang, (), (name, late_by_ms))

struct alarm_state {
  std::vector<std::string> rang;  ///< names in the order they rang
  std::int64_t cancels = 0;
};
BOOST_DESCRIBE_STRUCT(alarm_state, (), (rang, cancels))

struct alarm {
  static constexpr auto type_name = "alarm";
  using state = alarm_state;
  using command = std::variant<set_alarms, set_alarm_after, cancel_alarm, ring>;
  using event = std::variant<alarms_set, alarm_cancelled, alarm_rang>;

  static longhaul::decision<event> decide(const state&, const command& c) {
    using result = longhaul::decision<event>;
    if (auto* set = std::get_if<set_alarms>(&c)) {
      alarms_set ev;
      for (const auto& a : set->alarms)
        ev.names.push_back(a.name);
      result d{std::move(ev)};
      for (const auto& a : set->alarms)
        d.set_timer(a.name, a.due_ms, ring{a.name, 0});
      return d;
    }
    if (auto* after = std::get_if<set_alarm_after>(&c)) {
      result d{alarms_set{{after->name}}};
      d.set_timer_after(after->name, std::chrono::milliseconds{after->delay_ms},
                        ring{after->name, 0});
      return d;
    }
    if (auto* cancel = std::get_if<cancel_alarm>(&c)) {
      result d{alarm_cancelled{cancel->name}};
      d.cancel_timer(cancel->name);
      return d;
    }
    const auto& r = std::get<ring>(c);
    if (r.name.rfind("refuse", 0) == 0)
      return longhaul::reject("alarm '" + r.name + "' refuses to ring");
    return alarm_rang{r.name, r.late_by_ms};
  }

  static void apply(state& s, const event& e) {
    if (auto* rang = std::get_if<alarm_rang>(&e))
      s.rang.push_back(rang->name);
    else if (std::holds_alternative<alarm_cancelled>(e))
      ++s.cancels;
  }
};

}  // namespace alarms

namespace {

namespace lp = longhaul::persistence;

constexpr time_ms day_ms = 86400000;
constexpr time_ms hour_ms = 3600000;
constexpr time_ms t0 = 1767225600000;  // 2026-01-01T00:00:00Z, the virtual clock's default

/// A SQLite journal whose writes complete on the calling thread, as the in-memory
/// journal's do: deterministic mode runs every actor on the test thread, so the
/// acknowledgement must not arrive from the SQLite writer thread.
class inline_sqlite_journal final : public lp::forwarding_journal<lp::sqlite_journal> {
public:
  using forwarding_journal::forwarding_journal;

  void write(lp::atomic_write w, lp::write_callback done) override {
    done(inner().write_and_wait(std::move(w)));
  }

};

/// One stored "alarm.rang" event, as read from the journal in position order.
struct firing {
  std::string persistence_id;
  std::string name;
  std::int64_t late_by_ms = 0;
  time_ms written_at_ms = 0;  ///< the virtual time at which it was stored
  std::uint64_t position = 0;
};

/// A deterministic runtime with the alarm, reminder and billing entities on a virtual
/// clock, over an in-memory journal kept across restarts or over a SQLite file.
class timer_runtime {
public:
  longhaul::runtime_config cfg;
  std::shared_ptr<longhaul::actors::virtual_clock> clock;

  /// In-memory storage; the clock starts at `start`.
  explicit timer_runtime(time_ms start = t0) {
    cfg.deterministic = true;
    cfg.storage = longhaul::storage_kind::memory;
    const char* env = std::getenv("LONGHAUL_TEST_LOG");
    cfg.log_level = env != nullptr ? env : "off";
    cfg.passivate_after = 0ms;
    set_clock(start);
    lp::memory_journal_config mc;
    mc.clock = [this] { return clock->now(); };  // follows set_clock() across restarts
    cfg.journal_override = std::make_shared<lp::memory_journal>(mc);
  }

  /// SQLite storage at `path` (written through inline_sqlite_journal).
  static std::unique_ptr<timer_runtime> on_sqlite(std::string path, time_ms start = t0) {
    auto t = std::make_unique<timer_runtime>(start);
    t->sqlite_path_ = std::move(path);
    t->cfg.journal_override = nullptr;
    return t;
  }

  ~timer_runtime() { stop(); }

  /// A fresh virtual clock starting at `start` (takes effect at the next start()).
  void set_clock(time_ms start) {
    clock = std::make_shared<longhaul::actors::virtual_clock>(start);
    cfg.clock = clock;
  }

  void start() {
    if (!sqlite_path_.empty()) {
      lp::sqlite_journal_config sc;
      sc.path = sqlite_path_;
      sc.sync = lp::sync_mode::normal;
      sc.clock = [c = clock] { return c->now(); };
      auto j = lp::sqlite_journal::open(sc);
      INFO((j ? std::string{} : lp::describe(j.error())));
      REQUIRE(j);
      cfg.journal_override = std::make_shared<inline_sqlite_journal>(std::move(*j));
    }
    rt_ = std::make_unique<longhaul::runtime>(cfg);
    rt_->register_entity<alarms::alarm>()
      .register_entity<timers::reminder>()
      .register_entity<timers::billing>();
    auto err = rt_->start();
    INFO(lp::describe(err));
    REQUIRE(!err);
  }

  /// Stops the runtime; a SQLite journal is closed (its file lock released).
  void stop() {
    if (rt_)
      rt_->stop();
    rt_.reset();
    if (!sqlite_path_.empty())
      cfg.journal_override = nullptr;
  }

  [[nodiscard]] longhaul::runtime& rt() {
    REQUIRE(rt_);
    return *rt_;
  }
  [[nodiscard]] lp::journal& journal() { return rt().journal(); }
  [[nodiscard]] time_ms now() { return rt().now(); }

  /// Moves virtual time forward by `d` (firing everything that comes due, in order).
  void advance(std::chrono::milliseconds d) { rt().advance_time(d); }
  /// Moves virtual time to `t` (>= now).
  void advance_to(time_ms t) {
    REQUIRE(t >= now());
    advance(std::chrono::milliseconds{t - now()});
  }

  template <class C>
  void ask_ok(std::string_view type, std::string_view id, const C& cmd) {
    auto r = rt().ask(type, id, cmd);
    INFO(C::command_name << " to " << type << "/" << id << ": " << text_of(r));
    REQUIRE(r);
  }

  void set(std::string_view id, std::vector<alarms::alarm_at> list) {
    ask_ok("alarm", id, alarms::set_alarms{std::move(list)});
  }

  /// Names of the alarms of `id` that rang, in order (from its state).
  [[nodiscard]] std::vector<std::string> rang(std::string_view id) {
    auto st = rt().status("alarm", id);
    INFO(text_of(st));
    REQUIRE(st);
    return boost::json::value_to<alarms::alarm_state>(boost::json::parse(st->state_json)).rang;
  }

  /// Every alarm.rang event in the journal, in position order.
  [[nodiscard]] std::vector<firing> firings() {
    std::vector<firing> out;
    std::uint64_t after = 0;
    for (;;) {
      auto page = journal().read_all(after, 20000, std::string{"alarm"});
      REQUIRE(page);
      if (page->empty())
        return out;
      for (auto& ev : *page) {
        after = ev.position;
        if (ev.type != alarms::alarm_rang::event_name)
          continue;
        auto r = boost::json::value_to<alarms::alarm_rang>(boost::json::parse(ev.payload_json));
        out.push_back({ev.persistence_id, r.name, r.late_by_ms, ev.written_at_ms, ev.position});
      }
    }
  }

  /// Every stored timer, whatever its due time.
  [[nodiscard]] std::vector<lp::timer_record> stored_timers() {
    auto r = journal().timers_due(std::numeric_limits<time_ms>::max(), 1000000);
    REQUIRE(r);
    return std::move(*r);
  }

  [[nodiscard]] std::int64_t reminders(std::string_view id) {
    auto st = rt().status("reminder", id);
    INFO(text_of(st));
    REQUIRE(st);
    return json_int(st->state_json, "reminders");
  }

private:
  std::string sqlite_path_;
  std::unique_ptr<longhaul::runtime> rt_;
};

std::vector<std::string> names_of(const std::vector<firing>& fs) {
  std::vector<std::string> out;
  for (const auto& f : fs)
    out.push_back(f.persistence_id + "#" + f.name);
  return out;
}

/// A positive integer from the environment, or `fallback` when unset.
std::uint64_t env_count(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0')
    return fallback;
  std::uint64_t value = 0;
  std::string_view sv{text};
  auto [end, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), value);
  if (ec != std::errc{} || end != sv.data() + sv.size() || value == 0)
    FAIL(name << " must be a positive integer, got '" << text << "'");
  return value;
}

}  // namespace

TEST_CASE("timers with different due times fire in due order, each exactly at its due time") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  // Set out of order, across two instances and two decisions.
  t.set("a", {{"third", base + 3000}, {"first", base + 1000}, {"fourth", base + 4000}});
  t.set("b", {{"second", base + 2000}, {"fifth", base + 5000}});
  t.advance(999ms);
  CHECK(t.firings().empty());
  t.advance(10s);
  auto fs = t.firings();
  CHECK(names_of(fs)
        == std::vector<std::string>{"alarm/a#first", "alarm/b#second", "alarm/a#third",
                                    "alarm/a#fourth", "alarm/b#fifth"});
  std::map<std::string, time_ms> due{{"first", base + 1000}, {"second", base + 2000},
                                     {"third", base + 3000}, {"fourth", base + 4000},
                                     {"fifth", base + 5000}};
  for (const auto& f : fs) {
    INFO(f.name);
    CHECK(f.written_at_ms == due[f.name]);
    CHECK(f.late_by_ms == 0);
  }
  CHECK(t.rang("a") == std::vector<std::string>{"first", "third", "fourth"});
  CHECK(t.rang("b") == std::vector<std::string>{"second", "fifth"});
  CHECK(t.stored_timers().empty());
}

TEST_CASE("setting a timer with the same name again replaces it: only the new due time fires, "
          "once") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  SECTION("replaced by an earlier due time (both within the scheduler's window)") {
    t.set("a", {{"x", base + 30 * 60000}});
    t.set("a", {{"x", base + 10 * 60000}});
    REQUIRE(t.stored_timers().size() == 1);
    CHECK(t.stored_timers()[0].due_ms == base + 10 * 60000);
    t.advance(10min - 1ms);
    CHECK(t.firings().empty());
    t.advance(1ms);
    REQUIRE(t.firings().size() == 1);
    CHECK(t.firings()[0].written_at_ms == base + 10 * 60000);
    t.advance(1h);
  }
  SECTION("replaced by a later due time (the old one was in the window)") {
    t.set("a", {{"x", base + 10 * 60000}});
    t.set("a", {{"x", base + 3 * day_ms}});
    t.advance(3 * 24h - 1ms);
    CHECK(t.firings().empty());
    t.advance(1ms);
    REQUIRE(t.firings().size() == 1);
    CHECK(t.firings()[0].written_at_ms == base + 3 * day_ms);
    t.advance(10 * 24h);
  }
  SECTION("a reminder's 7-day deadline replaced by a 3-day one") {
    t.ask_ok("reminder", "r", timers::set_deadline{base + 7 * day_ms});
    t.ask_ok("reminder", "r", timers::set_deadline{base + 3 * day_ms});
    t.advance(3 * 24h - 1ms);
    CHECK(t.reminders("r") == 0);
    t.advance(1ms);
    CHECK(t.reminders("r") == 1);
    t.advance(8 * 24h);
    CHECK(t.reminders("r") == 1);
    CHECK(event_names(t.journal(), "reminder/r")
          == std::vector<std::string>{"reminder.deadline_set", "reminder.deadline_set",
                                      "reminder.reminded"});
  }
  auto fs = t.firings();
  CHECK(fs.size() <= 1);
  CHECK(t.stored_timers().empty());
}

TEST_CASE("a cancelled timer never fires") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  // "soon" is within the scheduler's window (1 h), "later" beyond it.
  t.set("a", {{"soon", base + 5 * 60000}, {"later", base + 2 * day_ms}, {"kept", base + day_ms}});
  t.ask_ok("alarm", "a", alarms::cancel_alarm{"soon"});
  t.ask_ok("alarm", "a", alarms::cancel_alarm{"later"});
  t.ask_ok("reminder", "r", timers::set_deadline{base + day_ms});
  t.ask_ok("reminder", "r", timers::cancel_deadline{});
  t.advance(30 * 24h);
  CHECK(t.rang("a") == std::vector<std::string>{"kept"});
  CHECK(t.reminders("r") == 0);
  CHECK(t.stored_timers().empty());
}

TEST_CASE("cancelling a timer that already fired is a no-op, not an error") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  t.ask_ok("reminder", "r", timers::set_deadline{base + day_ms});
  t.advance(2 * 24h);
  CHECK(t.reminders("r") == 1);
  CHECK(t.stored_timers().empty());
  auto r = t.rt().ask("reminder", "r", timers::cancel_deadline{});
  INFO(text_of(r));
  CHECK(r);
  t.ask_ok("alarm", "a", alarms::cancel_alarm{"never-set"});
  t.advance(2 * 24h);
  CHECK(t.reminders("r") == 1);
  CHECK(event_names(t.journal(), "reminder/r")
        == std::vector<std::string>{"reminder.deadline_set", "reminder.reminded",
                                    "reminder.deadline_cancelled"});
  CHECK(t.stored_timers().empty());
}

TEST_CASE("timers overdue at start-up fire at start-up with late_by_ms = now - due, each "
          "instance's in due order") {
  temp_dir dir;
  auto path = dir.file("timers.db");
  {
    auto t = timer_runtime::on_sqlite(path, t0);
    t->start();
    t->set("a", {{"h3", t0 + 3 * hour_ms}, {"h1", t0 + hour_ms}, {"h5", t0 + 5 * hour_ms}});
    t->set("b", {{"h4", t0 + 4 * hour_ms}, {"h2", t0 + 2 * hour_ms}, {"h12", t0 + 12 * hour_ms}});
    t->advance(30min);
    CHECK(t->firings().empty());
  }
  // Down for ten hours: the next runtime's clock starts at t0 + 10 h.
  auto t = timer_runtime::on_sqlite(path, t0 + 10 * hour_ms);
  t->start();  // no advance: start() alone fires what is overdue
  auto fs = t->firings();
  REQUIRE(fs.size() == 5);
  for (const auto& f : fs) {
    INFO(f.name);
    auto due_hour = std::stoll(f.name.substr(1));
    CHECK(f.late_by_ms == (10 - due_hour) * hour_ms);
    CHECK(f.written_at_ms == t0 + 10 * hour_ms);
  }
  CHECK(t->rang("a") == std::vector<std::string>{"h1", "h3", "h5"});
  CHECK(t->rang("b") == std::vector<std::string>{"h2", "h4"});
  // The one not yet due still waits, and fires on time.
  auto left = t->stored_timers();
  REQUIRE(left.size() == 1);
  CHECK(left[0].name == "h12");
  t->advance(2h - 1ms);
  CHECK(t->firings().size() == 5);
  t->advance(1ms);
  fs = t->firings();
  REQUIRE(fs.size() == 6);
  CHECK(fs[5].name == "h12");
  CHECK(fs[5].late_by_ms == 0);
  CHECK(t->stored_timers().empty());
}

TEST_CASE("more timers overdue at start-up than the scheduler's window holds all fire at "
          "start-up, once each, with their lateness") {
  timer_runtime t;
  std::uint64_t count = 0;
  std::uint64_t instances = 0;
  SECTION("a window smaller than the scheduler's in-flight limit (1000)") {
    t.cfg.timer_window = 500;
    count = 3000;
    instances = 50;
  }
  SECTION("the default window (10,000) and a backlog three times its size") {
    count = 30000;
    instances = 300;
  }
  t.start();
  std::vector<std::vector<alarms::alarm_at>> plan(instances);
  for (std::uint64_t g = 0; g < count; ++g)
    plan[g % instances].push_back({"n" + std::to_string(g), t0 + 1000 + static_cast<time_ms>(g)});
  for (std::uint64_t i = 0; i < instances; ++i)
    t.set("i" + std::to_string(i), std::move(plan[i]));
  t.stop();
  t.set_clock(t0 + day_ms);
  auto started = std::chrono::steady_clock::now();
  t.start();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  std::cout << "scheduler_test: " << count << " overdue timers (window " << t.cfg.timer_window
            << ") fired at start-up in " << took.count() << " ms" << std::endl;
  auto fs = t.firings();
  REQUIRE(fs.size() == count);
  std::set<std::string> seen;
  std::map<std::string, time_ms> last_due;  // per instance
  for (const auto& f : fs) {
    auto g = std::stoll(f.name.substr(1));
    auto due = t0 + 1000 + g;
    INFO(f.persistence_id << "#" << f.name);
    CHECK(seen.insert(f.name).second);
    CHECK(f.late_by_ms == t0 + day_ms - due);
    CHECK(due > last_due[f.persistence_id]);
    last_due[f.persistence_id] = due;
  }
  CHECK(t.stored_timers().empty());
}

TEST_CASE("a chain of daily timers runs 30 virtual days in order and leaves no timer behind") {
  timer_runtime t;
  t.start();
  t.ask_ok("billing", "b", timers::start_billing{30});
  auto billed = [&] {
    auto st = t.rt().status("billing", "b");
    REQUIRE(st);
    return boost::json::value_to<timers::billing_state>(boost::json::parse(st->state_json));
  };
  REQUIRE(t.journal().timers_of("billing/b")->size() == 1);
  t.advance(15 * 24h);
  std::vector<std::int64_t> want;
  for (std::int64_t d = 1; d <= 15; ++d)
    want.push_back(d);
  CHECK(billed().billed == want);
  REQUIRE(t.journal().timers_of("billing/b")->size() == 1);
  CHECK(t.journal().timers_of("billing/b")->front().due_ms == t0 + 16 * day_ms);
  t.advance(15 * 24h);
  for (std::int64_t d = 16; d <= 30; ++d)
    want.push_back(d);
  auto st = billed();
  CHECK(st.billed == want);
  CHECK(st.max_late_by_ms == 0);
  CHECK(t.journal().timers_of("billing/b")->empty());
  t.advance(30 * 24h);
  CHECK(billed().billed.size() == 30);
  // Each day was billed exactly at its due time.
  auto events = events_of(t.journal(), "billing/b");
  REQUIRE(events.size() == 31);
  for (std::size_t i = 1; i < events.size(); ++i)
    CHECK(events[i].written_at_ms == t0 + static_cast<time_ms>(i) * day_ms);
}

TEST_CASE("a passivated instance is woken by its timer") {
  timer_runtime t;
  t.cfg.passivate_after = 1s;
  t.start();
  auto base = t.now();
  t.ask_ok("reminder", "r", timers::set_deadline{base + hour_ms});
  CHECK(*t.rt().live_instances() == 1);
  t.advance(10s);
  CHECK(*t.rt().live_instances() == 0);
  t.advance(1h);
  CHECK(event_names(t.journal(), "reminder/r")
        == std::vector<std::string>{"reminder.deadline_set", "reminder.reminded"});
  CHECK(events_of(t.journal(), "reminder/r").back().written_at_ms == base + hour_ms);
  CHECK(t.reminders("r") == 1);
  CHECK(t.stored_timers().empty());
  // It passivates again afterwards.
  t.advance(10s);
  CHECK(*t.rt().live_instances() == 0);
}

TEST_CASE("an instance whose stored decision finished it is passivated as soon as it is idle, "
          "not after passivate_after, and a later command finds its state") {
  timer_runtime t;
  t.cfg.passivate_after = 1h;
  t.start();
  auto live = [&] { return *t.rt().live_instances(); };
  t.ask_ok("billing", "b", timers::start_billing{2});
  CHECK(live() == 1);
  t.advance(24h);  // day 1 is billed by its timer: not finished, so it stays for an hour
  CHECK(live() == 1);
  t.advance(24h);  // day 2 is billed and finishes the billing: it leaves at once
  CHECK(live() == 0);
  CHECK(event_names(t.journal(), "billing/b")
        == std::vector<std::string>{"billing.started", "billing.day_billed",
                                    "billing.day_billed"});
  auto again = t.rt().ask("billing", "b", timers::start_billing{5});
  CHECK(code_of(again) == "rejected");  // decided against the stored state
  CHECK(live() == 1);  // a rejection finishes nothing: the usual idle timeout applies
  t.advance(2h);
  CHECK(live() == 0);
}

TEST_CASE("with passivation off (passivate_after 0) a finished instance stays live") {
  timer_runtime t;
  t.cfg.passivate_after = 0ms;
  t.start();
  t.ask_ok("billing", "b", timers::start_billing{1});
  t.advance(24h);
  REQUIRE(t.journal().timers_of("billing/b")->empty());  // finished
  CHECK(*t.rt().live_instances() == 1);
}

TEST_CASE("100,000 timers fire exactly once each, in due order, through the virtual clock",
          "[scale]") {
  auto count = env_count("LONGHAUL_TIMER_COUNT", 100000);
  const std::uint64_t instances = std::min<std::uint64_t>(1000, count);
  const std::uint64_t ties = 4;  // timers sharing each due time
  timer_runtime t;
  t.start();
  auto base = t.now() + 1000;
  auto due_of = [&](std::uint64_t g) { return base + static_cast<time_ms>(g / ties); };
  auto started = std::chrono::steady_clock::now();
  // Timer g belongs to instance g % instances: consecutive due times hop between instances.
  std::vector<std::vector<alarms::alarm_at>> plan(instances);
  for (std::uint64_t g = 0; g < count; ++g)
    plan[g % instances].push_back({"n" + std::to_string(g), due_of(g)});
  for (std::uint64_t i = 0; i < instances; ++i)
    t.set("i" + std::to_string(i), std::move(plan[i]));
  REQUIRE(t.stored_timers().size() == count);
  auto set_done = std::chrono::steady_clock::now();
  t.advance_to(due_of(count - 1) + 1000);
  auto fired_done = std::chrono::steady_clock::now();
  auto fs = t.firings();
  auto ms = [](auto d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  std::cout << "scheduler_test: " << count << " timers on " << instances << " instances: set in "
            << ms(set_done - started) << " ms, fired in " << ms(fired_done - set_done)
            << " ms (LONGHAUL_TIMER_COUNT)" << std::endl;
  REQUIRE(fs.size() == count);
  std::vector<bool> seen(count, false);
  time_ms last_due = 0;
  std::uint64_t problems = 0;
  for (const auto& f : fs) {
    auto g = std::stoull(f.name.substr(1));
    bool ok = g < count && !seen[g] && f.persistence_id == "alarm/i" + std::to_string(g % instances)
              && due_of(g) >= last_due && f.written_at_ms == due_of(g) && f.late_by_ms == 0;
    if (!ok && ++problems <= 10)
      FAIL_CHECK("firing " << f.persistence_id << "#" << f.name << " at position " << f.position
                           << ": seen before " << (g < count && seen[g]) << ", due "
                           << due_of(g) << " after " << last_due << ", written at "
                           << f.written_at_ms << ", late by " << f.late_by_ms);
    if (g < count) {
      seen[g] = true;
      last_due = std::max(last_due, due_of(g));
    }
  }
  CHECK(problems == 0);
  CHECK(std::count(seen.begin(), seen.end(), true) == static_cast<std::ptrdiff_t>(count));
  CHECK(t.stored_timers().empty());
  CHECK(dead_letters_of(t.journal()).empty());
}

TEST_CASE("timers 7 days, 20 days, 30 days, 60 days and a year away fire at their due time and "
          "not before (no 32-bit limits)") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  const std::vector<std::pair<std::string, time_ms>> spans{
    {"d7", 7 * day_ms}, {"d20", 20 * day_ms}, {"d30", 30 * day_ms},  // 30 d > 2^31 ms
    {"d60", 60 * day_ms}, {"y1", 365 * day_ms}};                    // 60 d > 2^32 ms
  for (const auto& [name, delay] : spans)
    t.ask_ok("alarm", "long", alarms::set_alarm_after{name, delay});
  for (const auto& [name, delay] : spans) {
    auto stored = t.journal().timers_of("alarm/long");
    REQUIRE(stored);
    auto it = std::find_if(stored->begin(), stored->end(),
                           [&, n = name](const lp::timer_record& r) { return r.name == n; });
    REQUIRE(it != stored->end());
    CHECK(it->due_ms == base + delay);
  }
  std::size_t fired = 0;
  for (const auto& [name, delay] : spans) {
    INFO(name);
    t.advance_to(base + delay - 1);
    CHECK(t.firings().size() == fired);
    t.advance(1ms);
    auto fs = t.firings();
    REQUIRE(fs.size() == fired + 1);
    CHECK(fs.back().name == name);
    CHECK(fs.back().written_at_ms == base + delay);
    CHECK(fs.back().late_by_ms == 0);
    ++fired;
  }
  CHECK(t.stored_timers().empty());
}

TEST_CASE("a timer with an empty name, a due time before the epoch or a command the type does "
          "not accept is refused when the decision is stored, and nothing is stored") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  struct bad_case {
    std::string what;
    std::function<caf::expected<void>()> ask;
    std::string pid;
    std::string message;
  };
  std::vector<bad_case> cases{
    {"empty name",
     [&] {
       return t.rt().ask("alarm", "e", alarms::set_alarms{{{"ok", base + 1000}, {"", base + 2000}}});
     },
     "alarm/e", "a timer needs a name"},
    {"before the epoch",
     [&] { return t.rt().ask("alarm", "p", alarms::set_alarms{{{"past", -1}}}); }, "alarm/p",
     "is due before the epoch"},
    {"unknown command",
     [&] { return t.rt().ask("reminder", "u", timers::set_bad_timer{"x", base + 1000}); },
     "reminder/u", "would deliver 'bill_day'"},
  };
  for (auto& c : cases) {
    INFO(c.what);
    auto r = c.ask();
    REQUIRE_FALSE(r);
    CHECK(code_of(r) == "rejected");
    CHECK_THAT(text_of(r), Catch::Contains(c.message));
    CHECK(*t.journal().highest_seq(c.pid) == 0);
    CHECK(t.journal().timers_of(c.pid)->empty());
  }
  // The instances keep working, and the valid timer of the refused decision never fires.
  t.set("e", {{"good", base + 5000}});
  t.advance(1h);
  CHECK(t.rang("e") == std::vector<std::string>{"good"});
  CHECK(t.reminders("u") == 0);
  CHECK(t.stored_timers().empty());
}

TEST_CASE("a timer survives a restart on the SQLite file and fires once") {
  temp_dir dir;
  auto path = dir.file("timers.db");
  {
    auto t = timer_runtime::on_sqlite(path);
    t->start();
    t->ask_ok("reminder", "r", timers::set_deadline{t0 + day_ms});
    t->advance(1h);
  }
  {
    auto t = timer_runtime::on_sqlite(path, t0 + 2 * hour_ms);
    t->start();
    CHECK(t->stored_timers().size() == 1);
    t->advance_to(t0 + day_ms - 1);
    CHECK(event_names(t->journal(), "reminder/r").size() == 1);
    t->advance(1ms);
    CHECK(event_names(t->journal(), "reminder/r")
          == std::vector<std::string>{"reminder.deadline_set", "reminder.reminded"});
    CHECK(events_of(t->journal(), "reminder/r").back().written_at_ms == t0 + day_ms);
    t->advance(3 * 24h);
    CHECK(t->reminders("r") == 1);
  }
  // A third runtime, later still: nothing is left to fire.
  auto t = timer_runtime::on_sqlite(path, t0 + 5 * day_ms);
  t->start();
  t->advance(24h);
  CHECK(t->stored_timers().empty());
  CHECK(t->reminders("r") == 1);
  CHECK(event_names(t->journal(), "reminder/r").size() == 2);
}

TEST_CASE("an instance whose only stored write set a timer is not taken for a new one: its "
          "first command after a restart keeps the timer, which fires") {
  // The activation for a command presumes a new id and decides against the initial state;
  // the journal must refuse that write for a stream without events too, else the
  // instance would not know its stored timer and would drop the firing as stale (S3).
  auto check = [](timer_runtime& t, bool restart) {
    auto due = t.now() + day_ms;
    lp::atomic_write w;
    w.persistence_id = "reminder/only-timer";
    w.timers_to_set.push_back(
      {"deadline", due, R"({"name":"deadline_reached","payload":{"late_by_ms":0}})"});
    REQUIRE(t.journal().write_and_wait(std::move(w)));
    if (restart) {
      t.stop();
      t.start();
    }
    // A command that sets no timer, sent before the stored one is due.
    t.ask_ok("reminder", "only-timer", timers::deadline_reached{0});
    CHECK(t.reminders("only-timer") == 1);
    t.advance(24h);
    CHECK(t.reminders("only-timer") == 2);  // the stored timer fired and was not stale
    CHECK(t.stored_timers().empty());
  };
  SECTION("in memory") {
    timer_runtime t;
    t.start();
    check(t, false);
  }
  SECTION("on a SQLite file, across a restart") {
    temp_dir dir;
    auto t = timer_runtime::on_sqlite(dir.file("timer-only.db"));
    t->start();
    check(*t, true);
  }
}

TEST_CASE("a firing whose due time differs from the stored timer is stale: acknowledged as a "
          "duplicate, nothing stored") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  t.set("a", {{"x", base + day_ms}});
  auto fire = [&](std::string name, time_ms due) {
    auto env = longhaul::runtime::envelope("alarm", "a", alarms::ring{name, 0});
    env.timer_name = std::move(name);
    env.timer_due_ms = due;
    env.message_id = "timer:alarm/a#" + env.timer_name + "@" + std::to_string(due);
    return t.rt().ask_envelope(std::move(env));
  };
  auto stale = fire("x", base + 2 * day_ms);  // a replaced due time
  INFO(text_of(stale));
  REQUIRE(stale);
  CHECK(stale->duplicate);
  auto unknown = fire("y", base + day_ms);  // cancelled or never set
  REQUIRE(unknown);
  CHECK(unknown->duplicate);
  CHECK(*t.journal().highest_seq("alarm/a") == 1);
  REQUIRE(t.stored_timers().size() == 1);
  t.advance(2 * 24h);
  CHECK(t.rang("a") == std::vector<std::string>{"x"});
}

TEST_CASE("a timer whose command decide() rejects is consumed: it fires once and is not "
          "retried") {
  timer_runtime t;
  t.start();
  auto base = t.now();
  t.set("a", {{"refuse-me", base + 1000}, {"after", base + 2000}});
  t.advance(1h);
  CHECK(t.rang("a") == std::vector<std::string>{"after"});
  CHECK(t.stored_timers().empty());
  CHECK(dead_letters_of(t.journal()).empty());
  CHECK(event_names(t.journal(), "alarm/a")
        == std::vector<std::string>{"alarm.set", "alarm.rang"});
}

// The instance hands its stored timers to the scheduler when it recovers from a write
// with an unknown outcome.
TEST_CASE("a timer stored by a write whose acknowledgement was lost fires on time") {
  timer_runtime t;
  auto faults = std::make_shared<lp::fault_journal>(t.cfg.journal_override);
  t.cfg.journal_override = faults;
  t.start();
  auto base = t.now();
  t.set("a", {{"known", base + 60'000}});
  // The next write commits, but its caller hears io_error: the instance never reported
  // this timer change, and restarts from the journal.
  REQUIRE_FALSE(faults->fail_next_writes_after_storing(1));
  auto lost = t.rt().ask("alarm", "a", alarms::set_alarms{{{"unreported", base + 5'000}}});
  REQUIRE_FALSE(lost);
  REQUIRE(t.stored_timers().size() == 2);
  // The instance restarts after its backoff (100 ms), well before the timer is due.
  t.advance(1s);
  CHECK(t.firings().empty());
  t.advance(1h);
  auto fs = t.firings();
  REQUIRE(fs.size() == 2);
  CHECK(fs[0].name == "unreported");
  CHECK(fs[0].written_at_ms == base + 5'000);
  CHECK(fs[1].name == "known");
  CHECK(fs[1].written_at_ms == base + 60'000);
  CHECK(t.stored_timers().empty());
}

TEST_CASE("a passivated instance's actor leaves memory when it stops, not when a pending "
          "timer of its fires later") {
  timer_runtime t;
  t.cfg.passivate_after = 1h;
  t.start();
  using longhaul::actors::instance_memory;
  auto before = instance_memory::in_use();
  for (int i = 0; i < 50; ++i)
    t.ask_ok("billing", "m" + std::to_string(i), timers::start_billing{1});
  CHECK(*t.rt().live_instances() == 50);
  CHECK(instance_memory::in_use() == before + 50);
  // Passivated after their idle hour, woken by their billing timer a day later, finished
  // and passivated at once: each actor's memory is released as it stops. (A timer message
  // to the instance itself, pending for passivate_after, held it for another hour.)
  t.advance(24h);
  CHECK(*t.rt().live_instances() == 0);
  CHECK(instance_memory::in_use() == before);
}
