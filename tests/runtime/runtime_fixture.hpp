// Helper verbs for the runtime semantic tests: a bank runtime (bank_entities.hpp) on an
// in-memory journal behind a fault-injecting decorator, deterministic unless asked
// otherwise, so that each test body reads like a specification.
#pragma once

#include "persistence/fault_journal.hpp"
#include "persistence/memory_journal.hpp"
#include "runtime/runtime.hpp"
#include "tests/runtime/bank_entities.hpp"

#include <boost/describe.hpp>
#include <boost/json.hpp>
#include <caf/scoped_actor.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <variant>
#include <vector>

namespace semantics {

using namespace std::chrono_literals;
using longhaul::actors::actor_errc;
using longhaul::persistence::persistence_errc;

// -- a second entity type: sends commands through the outbox to any (type, id) --------

/// Forwards a deposit to `type`/`id` through the outbox (also to types that do not exist).
struct forward {
  static constexpr auto command_name = "forward";
  std::string type;
  std::string id;
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(forward, (), (type, id, amount))

struct forwarded {
  static constexpr auto event_name = "forwarder.forwarded";
  static constexpr std::uint32_t schema_version = 1;
  std::string destination;
};
BOOST_DESCRIBE_STRUCT(forwarded, (), (destination))

struct forwarder_state {
  std::int64_t forwarded = 0;
};
BOOST_DESCRIBE_STRUCT(forwarder_state, (), (forwarded))

struct forwarder {
  static constexpr auto type_name = "forwarder";
  using state = forwarder_state;
  using command = std::variant<forward>;
  using event = std::variant<forwarded>;
  static longhaul::decision<event> decide(const state&, const command& c) {
    const auto& f = std::get<forward>(c);
    longhaul::decision<event> d{forwarded{f.type + "/" + f.id}};
    d.send(f.type, f.id, bank::deposit{f.amount});
    return d;
  }
  static void apply(state& s, const event&) { ++s.forwarded; }
};

// -- error helpers ------------------------------------------------------------------------

/// The stable code name of an actor or persistence error ("rejected", "io_error"), "ok"
/// for no error, or the full description for errors of other categories.
inline std::string code_of(const caf::error& err) {
  if (!err)
    return "ok";
  if (auto c = longhaul::actors::actor_code(err); c != actor_errc::ok)
    return std::string{longhaul::actors::to_string(c)};
  if (auto c = longhaul::persistence::persistence_code(err); c != persistence_errc::ok)
    return std::string{longhaul::persistence::to_string(c)};
  return longhaul::persistence::describe(err);
}

template <class T>
std::string code_of(const caf::expected<T>& r) {
  return r ? std::string{"ok"} : code_of(r.error());
}

/// The full human-readable text of a failed result ("" if it succeeded).
template <class T>
std::string text_of(const caf::expected<T>& r) {
  return r ? std::string{} : longhaul::persistence::describe(r.error());
}

// -- journal helpers ----------------------------------------------------------------------

/// Every stored event of `pid`, in sequence order (deleted ones are gone).
inline std::vector<longhaul::persistence::event_record>
events_of(longhaul::persistence::journal& j, std::string_view pid) {
  auto r = j.replay(pid, 1, longhaul::persistence::max_sequence_nr, 1000000);
  REQUIRE(r);
  return std::move(r->events);
}

/// The stored event names of `pid`, in sequence order.
inline std::vector<std::string> event_names(longhaul::persistence::journal& j,
                                            std::string_view pid) {
  std::vector<std::string> out;
  for (auto& ev : events_of(j, pid))
    out.push_back(ev.type);
  return out;
}

/// Writes one raw event for `pid` directly into the journal (as an older build, another
/// process or a bug would have), bypassing every actor.
inline void write_raw_event(longhaul::persistence::journal& j, std::string pid,
                            std::string type, std::uint32_t version, std::string payload) {
  auto highest = j.highest_seq(pid);
  REQUIRE(highest);
  longhaul::persistence::atomic_write w;
  w.persistence_id = std::move(pid);
  w.expected_seq = *highest + 1;
  w.events.push_back({std::move(type), version, std::move(payload), {"account"}});
  auto r = j.write_and_wait(std::move(w));
  INFO(longhaul::persistence::describe(r ? caf::error{} : r.error()));
  REQUIRE(r);
}

/// All dead letters.
inline std::vector<longhaul::persistence::dead_letter_record>
dead_letters_of(longhaul::persistence::journal& j) {
  auto r = j.dead_letters(0, 100000);
  REQUIRE(r);
  return std::move(*r);
}

/// Outbox messages not delivered yet.
inline std::vector<longhaul::persistence::outbox_record>
outbox_of(longhaul::persistence::journal& j) {
  auto r = j.outbox_pending(0, 100000);
  REQUIRE(r);
  return std::move(*r);
}

/// The newest snapshot of `pid`, if any.
inline std::optional<longhaul::persistence::snapshot_record>
snapshot_of(longhaul::persistence::journal& j, std::string_view pid) {
  auto r = j.load_snapshot(pid, {});
  REQUIRE(r);
  return std::move(*r);
}

/// Field `key` of a JSON object text, as int64 (fails the test if missing).
inline std::int64_t json_int(const std::string& json, std::string_view key) {
  auto v = boost::json::parse(json);
  REQUIRE(v.is_object());
  REQUIRE(v.as_object().contains(key));
  return boost::json::value_to<std::int64_t>(v.at(key));
}

/// Polls `pred` every few milliseconds until it holds or `limit` passes (for the
/// non-deterministic SQLite tests only, where work finishes on other threads).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// A fresh directory for SQLite files, removed with everything in it at scope exit.
class temp_dir {
public:
  temp_dir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path()
            / ("longhaul-semantics-" + std::to_string(::getpid()) + "-"
               + std::to_string(++counter));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  /// A file path inside the directory.
  [[nodiscard]] std::string file(std::string_view name) const { return (path_ / name).string(); }

private:
  std::filesystem::path path_;
};

// -- the bank runtime under test ------------------------------------------------------------

/// A runtime with bank::account, bank::review (subscribed to account.large_deposit,
/// correlated to the instance "all") and the forwarder. By default: deterministic mode,
/// in-memory storage wrapped in a fault journal that survives restart(). Change `cfg`,
/// `account` or `subscribe_review` before start().
class bank_runtime {
public:
  longhaul::runtime_config cfg;
  longhaul::entity_settings account;   ///< settings of bank::account
  bool subscribe_review = true;        ///< subscribe review to account.large_deposit
  bool register_review = true;
  /// Registers further entity types on each new runtime (before start()).
  std::function<void(longhaul::runtime&)> register_more;

  /// The journal the runtime writes to (memory storage), kept across restarts.
  std::shared_ptr<longhaul::persistence::memory_journal> storage;
  /// The fault-injecting decorator in front of `storage` (what the runtime sees).
  std::shared_ptr<longhaul::persistence::fault_journal> faults;

  bank_runtime() {
    cfg.deterministic = true;
    cfg.storage = longhaul::storage_kind::memory;
    cfg.log_level = log_level();
    cfg.passivate_after = 0ms;  // tests of passivation turn it on
    storage = std::make_shared<longhaul::persistence::memory_journal>();
    faults = std::make_shared<longhaul::persistence::fault_journal>(storage);
    cfg.journal_override = faults;
  }

  /// A non-deterministic runtime (real threads) on the SQLite file `path`.
  static std::unique_ptr<bank_runtime> on_sqlite(std::string path) {
    auto b = std::make_unique<bank_runtime>();
    b->cfg.deterministic = false;
    b->cfg.storage = longhaul::storage_kind::sqlite;
    b->cfg.database_path = std::move(path);
    b->cfg.sync = longhaul::persistence::sync_mode::normal;
    b->cfg.worker_threads = 2;
    b->cfg.journal_override = nullptr;
    b->storage = nullptr;
    b->faults = nullptr;
    return b;
  }

  ~bank_runtime() { stop(); }

  /// Builds and starts a runtime from the current settings; fails the test on error.
  void start() {
    auto err = try_start();
    INFO(longhaul::persistence::describe(err));
    REQUIRE(!err);
  }

  /// Builds and starts a runtime, returning the error of start().
  [[nodiscard]] caf::error try_start() {
    rt_ = std::make_unique<longhaul::runtime>(cfg);
    rt_->register_entity<bank::account>(account);
    if (register_review)
      rt_->register_entity<bank::review>();
    rt_->register_entity<forwarder>();
    if (register_more)
      register_more(*rt_);
    if (subscribe_review)
      rt_->subscribe<bank::large_deposit_made>(
        "review", [](const bank::large_deposit_made&) { return std::string{"all"}; });
    return rt_->start();
  }

  /// Stops the runtime (if any) and destroys it.
  void stop() {
    if (rt_)
      rt_->stop();
    rt_.reset();
  }

  /// Stops and starts a new runtime on the same storage (same memory journal, or the
  /// same SQLite file): nothing is live afterwards.
  void restart() {
    stop();
    start();
  }

  [[nodiscard]] longhaul::runtime& rt() {
    REQUIRE(rt_);
    return *rt_;
  }

  /// The journal as the runtime sees it.
  [[nodiscard]] longhaul::persistence::journal& journal() { return rt().journal(); }

  // -- commands ---------------------------------------------------------------------------

  void open(std::string_view id, std::string owner = "ann") {
    auto r = rt().ask("account", id, bank::open_account{std::move(owner)});
    INFO(text_of(r));
    REQUIRE(r);
  }

  [[nodiscard]] caf::expected<std::int64_t> deposit(std::string_view id, std::int64_t amount) {
    return rt().ask<std::int64_t>("account", id, bank::deposit{amount});
  }

  [[nodiscard]] caf::expected<std::int64_t> withdraw(std::string_view id, std::int64_t amount) {
    return rt().ask<std::int64_t>("account", id, bank::withdraw{amount});
  }

  [[nodiscard]] caf::expected<void> transfer(std::string_view from, std::string to,
                                             std::int64_t amount) {
    return rt().ask("account", from, bank::transfer{std::move(to), amount});
  }

  [[nodiscard]] caf::expected<std::int64_t> audit(std::string_view id, bool fail) {
    return rt().ask<std::int64_t>("account", id, bank::audit{fail});
  }

  [[nodiscard]] caf::expected<std::int64_t> ask_balance(std::string_view id) {
    return rt().ask<std::int64_t>("account", id, bank::get_balance{});
  }

  /// The balance (asking get_balance); fails the test if the ask fails.
  [[nodiscard]] std::int64_t balance(std::string_view id) {
    auto r = ask_balance(id);
    INFO(text_of(r));
    REQUIRE(r);
    return *r;
  }

  /// Deposits and fails the test if the deposit fails.
  void deposit_ok(std::string_view id, std::int64_t amount) {
    auto r = deposit(id, amount);
    INFO(text_of(r));
    REQUIRE(r);
  }

  /// Sends `cmd` to account `id` with an explicit message id (as the outbox would).
  [[nodiscard]] caf::expected<longhaul::actors::command_reply>
  deliver(std::string_view id, std::string message_id, const auto& cmd) {
    auto env = longhaul::runtime::envelope("account", id, cmd);
    env.message_id = std::move(message_id);
    return rt().ask_envelope(std::move(env));
  }

  // -- observations -----------------------------------------------------------------------

  /// The status of `type`/`id` (activates the instance); fails the test on error.
  [[nodiscard]] longhaul::actors::instance_status status(std::string_view id,
                                                        std::string_view type = "account") {
    auto r = rt().status(type, id);
    INFO(text_of(r));
    REQUIRE(r);
    return std::move(*r);
  }

  /// The stored event names of account `id`.
  [[nodiscard]] std::vector<std::string> account_events(std::string_view id) {
    return event_names(journal(), "account/" + std::string{id});
  }

  [[nodiscard]] std::uint64_t live() {
    auto r = rt().live_instances();
    INFO(text_of(r));
    REQUIRE(r);
    return *r;
  }

  [[nodiscard]] std::vector<longhaul::incident_info> incidents() {
    auto r = rt().incidents();
    INFO(text_of(r));
    REQUIRE(r);
    return std::move(*r);
  }

  /// Deterministic mode: advances virtual time in steps of `step`, running the work each
  /// step causes (a delayed message armed while handling one step fires in a later one).
  void advance(std::chrono::milliseconds total, std::chrono::milliseconds step = 100ms) {
    for (auto done = 0ms; done < total; done += step)
      rt().advance_time(step);
  }

private:
  static std::string log_level() {
    const char* env = std::getenv("LONGHAUL_TEST_LOG");
    return env != nullptr ? env : "off";
  }

  std::unique_ptr<longhaul::runtime> rt_;
};

/// Asks sent together without running anything in between, so that they arrive while
/// the instance is still recovering or writing (deterministic mode only). collect()
/// runs the pending work and returns the replies in the order the asks were added.
class pending_asks {
public:
  explicit pending_asks(longhaul::runtime& rt) : rt_(rt), self_(rt.system()) {
    REQUIRE(rt.config().deterministic);
  }

  template <class C>
  void add(std::string_view type, std::string_view id, const C& cmd) {
    add_envelope(longhaul::runtime::envelope(type, id, cmd));
  }

  /// Sends `env` straight to the supervisor (bypassing the facade's address checks).
  void add_envelope(longhaul::actors::command_envelope env) {
    handles_.push_back(self_->request(rt_.supervisor(), caf::infinite, std::move(env)));
  }

  /// Runs everything pending; then every ask must have its answer.
  [[nodiscard]] std::vector<caf::expected<longhaul::actors::command_reply>> collect() {
    rt_.run_pending();
    REQUIRE(self_->mailbox().size() >= handles_.size());
    std::vector<caf::expected<longhaul::actors::command_reply>> out;
    for (auto& h : handles_) {
      caf::expected<longhaul::actors::command_reply> r{caf::error{}};
      h.receive([&](longhaul::actors::command_reply& x) { r = std::move(x); },
                [&](caf::error& err) { r = std::move(err); });
      out.push_back(std::move(r));
    }
    handles_.clear();
    return out;
  }

private:
  using handle = decltype(std::declval<caf::scoped_actor&>()->request(
    std::declval<const caf::actor&>(), caf::infinite,
    std::declval<longhaul::actors::command_envelope>()));

  longhaul::runtime& rt_;
  caf::scoped_actor self_;
  std::vector<handle> handles_;
};

/// The int64 reply of a command_reply (fails the test if there is none).
inline std::int64_t reply_int(const caf::expected<longhaul::actors::command_reply>& r) {
  INFO(text_of(r));
  REQUIRE(r);
  REQUIRE(r->reply);
  return boost::json::value_to<std::int64_t>(*r->reply);
}

}  // namespace semantics
