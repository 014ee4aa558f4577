// The journal contract: every promise of persistence/journal.hpp written once as Catch2
// test cases and instantiated by each backend's test file (memory, SQLite).
// Use: define a backend type, LONGHAUL_JOURNAL_BACKEND and LONGHAUL_JOURNAL_BACKEND_NAME, include.
//
// A backend type is default-constructible (it owns its storage, e.g. a temp directory,
// and cleans it up when destroyed) and provides
//
//   std::unique_ptr<longhaul::persistence::journal>
//   make_journal(std::size_t keep_snapshots, std::function<longhaul::persistence::time_ms()> clock);
//
// which opens a fresh, empty journal with default write_limits each time it is called.
// Test names read "<backend> journal: <claim>", so they stay unique in CTest.
#pragma once

#include "persistence/journal.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#if !defined(LONGHAUL_JOURNAL_BACKEND) || !defined(LONGHAUL_JOURNAL_BACKEND_NAME)
#  error "define LONGHAUL_JOURNAL_BACKEND (a type) and LONGHAUL_JOURNAL_BACKEND_NAME (a string literal) before including journal_contract.hpp"
#endif

namespace Catch {

/// Prints error codes by name in assertion output ("sequence_conflict", not 4).
template <>
struct StringMaker<longhaul::persistence::persistence_errc> {
  static std::string convert(longhaul::persistence::persistence_errc code) {
    return std::string{longhaul::persistence::to_string(code)};
  }
};

} // namespace Catch

namespace longhaul::persistence::contract {

/// "No limit" for the `max` arguments of reads.
inline constexpr std::uint64_t all = std::numeric_limits<std::uint64_t>::max();

/// Where the injected clock of every contract journal starts (2023-11-14T22:13:20Z).
inline constexpr time_ms start_ms = 1'700'000'000'000;

/// The fixture of every contract test: one fresh journal of `Backend` driven by a manual
/// clock, plus helper verbs so that each test body reads like the promise it checks.
template <class Backend>
class journal_contract {
public:
  journal_contract()
    : now_(std::make_shared<std::atomic<time_ms>>(start_ms)), j(open_journal()) {
    // nop
  }

  /// Opens another fresh journal of the same backend sharing the manual clock.
  std::unique_ptr<journal> open_journal(std::size_t keep_snapshots = 0) {
    auto now = now_;
    auto result = backend.make_journal(keep_snapshots, [now] { return now->load(); });
    REQUIRE(result != nullptr);
    return result;
  }

  time_ms now() const {
    return now_->load();
  }

  void advance_clock(time_ms delta_ms) {
    *now_ += delta_ms;
  }

  static new_event event(std::string type, std::string payload = R"({"n":1})",
                         std::vector<std::string> tags = {}) {
    new_event ev;
    ev.type = std::move(type);
    ev.payload_json = std::move(payload);
    ev.tags = std::move(tags);
    return ev;
  }

  static atomic_write write_for(std::string id, sequence_nr expected_seq,
                                std::vector<new_event> events = {}) {
    atomic_write w;
    w.persistence_id = std::move(id);
    w.expected_seq = expected_seq;
    w.events = std::move(events);
    return w;
  }

  static timer_set timer(std::string name, time_ms due_ms,
                         std::string payload = R"({"cmd":"fire"})") {
    return timer_set{std::move(name), due_ms, std::move(payload)};
  }

  static outbox_message message(std::string id, std::string destination,
                                std::string payload = R"({"cmd":"notify"})") {
    return outbox_message{std::move(id), std::move(destination), std::move(payload)};
  }

  template <class T>
  static T value_of(caf::expected<T> r, const char* what) {
    if (!r)
      FAIL(what << " failed: " << describe(r.error()));
    return std::move(*r);
  }

  static void succeeds(const caf::error& err, const char* what) {
    if (err)
      FAIL(what << " failed: " << describe(err));
  }

  /// Writes `w` and requires it to be stored.
  write_result store(atomic_write w, journal* target = nullptr) {
    return value_of((target ? target : j.get())->write_and_wait(std::move(w)), "write");
  }

  /// Appends `events` at `expected_seq` and requires it to be stored.
  write_result append(std::string id, sequence_nr expected_seq, std::vector<new_event> events) {
    return store(write_for(std::move(id), expected_seq, std::move(events)));
  }

  /// Appends `count` events to `id`, one write each, continuing after its highest.
  void append_singly(const std::string& id, std::size_t count) {
    auto next = highest(id) + 1;
    for (std::size_t i = 0; i < count; ++i, ++next)
      append(id, next, {event("counter.incremented", R"({"by":)" + std::to_string(next) + "}")});
  }

  /// Appends `count` events to `id` in one write, continuing after its highest.
  void append_batch(const std::string& id, std::size_t count, journal* target = nullptr) {
    auto* jr = target ? target : j.get();
    auto next = value_of(jr->highest_seq(id), "highest_seq") + 1;
    auto w = write_for(id, next);
    for (std::size_t i = 0; i < count; ++i)
      w.events.push_back(event("counter.incremented"));
    store(std::move(w), jr);
  }

  /// Writes `w` and requires it to be refused; returns the refusal.
  caf::error refuse(atomic_write w, journal* target = nullptr) {
    auto r = (target ? target : j.get())->write_and_wait(std::move(w));
    if (r)
      FAIL("write was stored (highest " << r->highest_seq << ") but should have failed");
    return std::move(r.error());
  }

  replay_result replay(std::string_view id, sequence_nr from = 1,
                       sequence_nr to = max_sequence_nr, std::uint64_t max = all) {
    return value_of(j->replay(id, from, to, max), "replay");
  }

  sequence_nr highest(std::string_view id) {
    return value_of(j->highest_seq(id), "highest_seq");
  }

  std::vector<event_record> read_all(std::uint64_t after = 0, std::uint64_t max = all,
                                     std::optional<std::string> tag = std::nullopt) {
    return value_of(j->read_all(after, max, tag), "read_all");
  }

  std::vector<timer_record> timers_of(std::string_view id) {
    return value_of(j->timers_of(id), "timers_of");
  }

  std::vector<timer_record> timers_due(time_ms until, std::uint64_t max = all) {
    return value_of(j->timers_due(until, max), "timers_due");
  }

  /// Stores the first write of `id`: no events, just `timers`.
  void set_timers(std::string id, std::vector<timer_set> timers) {
    auto w = write_for(std::move(id), 1);
    w.timers_to_set = std::move(timers);
    store(std::move(w));
  }

  std::vector<timer_record> timers_due_after(timer_position after, time_ms until,
                                             std::uint64_t max = all) {
    return value_of(j->timers_due_after(after, until, max), "timers_due_after");
  }

  std::vector<outbox_record> outbox_pending(std::uint64_t after = 0, std::uint64_t max = all) {
    return value_of(j->outbox_pending(after, max), "outbox_pending");
  }

  bool is_processed(std::string_view id, std::string_view message_id) {
    return value_of(j->is_processed(id, message_id), "is_processed");
  }

  std::optional<processed_message> processed_outcome(std::string_view id,
                                                     std::string_view message_id) {
    return value_of(j->processed_outcome(id, message_id), "processed_outcome");
  }

  void save_snapshot(std::string id, sequence_nr seq, std::string state_json,
                     journal* target = nullptr) {
    snapshot_record snap;
    snap.persistence_id = std::move(id);
    snap.seq = seq;
    snap.state_json = std::move(state_json);
    succeeds((target ? target : j.get())->save_snapshot(std::move(snap)), "save_snapshot");
  }

  std::optional<snapshot_record> load_snapshot(std::string_view id,
                                               const snapshot_selection& sel = {},
                                               journal* target = nullptr) {
    return value_of((target ? target : j.get())->load_snapshot(id, sel), "load_snapshot");
  }

  /// Sequence number of a loaded snapshot, 0 when none was found.
  static sequence_nr seq_of(const std::optional<snapshot_record>& snap) {
    return snap ? snap->seq : 0;
  }

  static std::vector<sequence_nr> seqs(const std::vector<event_record>& events) {
    std::vector<sequence_nr> result;
    for (const auto& ev : events)
      result.push_back(ev.seq);
    return result;
  }

  static std::vector<sequence_nr> range(sequence_nr first, sequence_nr last) {
    std::vector<sequence_nr> result;
    for (auto i = first; i <= last; ++i)
      result.push_back(i);
    return result;
  }

  static std::vector<std::string> names(const std::vector<timer_record>& timers) {
    std::vector<std::string> result;
    for (const auto& t : timers)
      result.push_back(t.persistence_id + "/" + t.name);
    return result;
  }

  /// Requires that the journal holds no event, timer, outbox message or processed id.
  void require_nothing_stored(std::string_view id, std::string_view message_id) {
    CHECK(highest(id) == 0);
    CHECK(read_all().empty());
    CHECK(timers_due(std::numeric_limits<time_ms>::max()).empty());
    CHECK(outbox_pending().empty());
    CHECK_FALSE(is_processed(id, message_id));
  }

  Backend backend;

private:
  std::shared_ptr<std::atomic<time_ms>> now_;

public:
  std::unique_ptr<journal> j;  // declared last: closed before the backend cleans up
};

} // namespace longhaul::persistence::contract

/// Stamps one contract test case for the configured backend.
#define LONGHAUL_CONTRACT_CASE(claim)                                                     \
  TEST_CASE_METHOD(                                                                      \
    longhaul::persistence::contract::journal_contract<LONGHAUL_JOURNAL_BACKEND>,          \
    LONGHAUL_JOURNAL_BACKEND_NAME " journal: " claim,                                    \
    "[journal][contract][" LONGHAUL_JOURNAL_BACKEND_NAME "]")

namespace longhaul::persistence::contract {

using errc = persistence_errc;

// --- replay ------------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("replay selects events by from, to and max and always reports the "
                       "highest sequence number") {
  // Events 1, 2, 3 written singly, 4 and 5 as one atomic write; another id interleaved.
  append("replay-1", 1, {event("opened")});
  append("replay-other", 1, {event("opened")});
  append("replay-1", 2, {event("deposited")});
  append("replay-1", 3, {event("deposited")});
  auto both = append("replay-1", 4, {event("withdrawn"), event("closed")});
  CHECK(both.highest_seq == 5);
  struct row {
    const char* id;
    sequence_nr from, to;
    std::uint64_t max;
    std::vector<sequence_nr> expected;
    sequence_nr expected_highest;
  };
  const sequence_nr inf = max_sequence_nr;
  const std::vector<row> table{
    {"replay-1", 1, inf, all, {1, 2, 3, 4, 5}, 5},
    {"replay-1", 3, inf, all, {3, 4, 5}, 5},
    {"replay-1", 1, 3, all, {1, 2, 3}, 5},
    {"replay-1", 1, inf, 3, {1, 2, 3}, 5},
    {"replay-1", 2, 5, 2, {2, 3}, 5},
    {"replay-1", 2, 2, all, {2}, 5},
    {"replay-1", 1, inf, 0, {}, 5},
    {"replay-1", 4, 3, all, {}, 5},
    {"replay-unknown", 1, inf, all, {}, 0},
  };
  for (const auto& r : table) {
    CAPTURE(r.id, r.from, r.to, r.max);
    auto result = replay(r.id, r.from, r.to, r.max);
    CHECK(seqs(result.events) == r.expected);
    CHECK(result.highest_seq == r.expected_highest);
    for (const auto& ev : result.events)
      CHECK(ev.persistence_id == r.id);
  }
  CHECK(highest("replay-1") == 5);
  CHECK(highest("replay-other") == 1);
  CHECK(highest("replay-unknown") == 0);
}

// --- sequence numbers and atomicity ---------------------------------------------------------

LONGHAUL_CONTRACT_CASE("append with a gap in sequence numbers fails with sequence_conflict "
                       "and stores nothing") {
  append_singly("gap", 2);
  auto err = refuse(write_for("gap", 4, {event("skipped.ahead")}));
  CHECK(persistence_code(err) == errc::sequence_conflict);
  CHECK(is_rejection(err));
  CHECK(highest("gap") == 2);
  CHECK(seqs(replay("gap").events) == range(1, 2));
  // A new id must start at 1.
  auto fresh = refuse(write_for("gap-fresh", 2, {event("skipped.ahead")}));
  CHECK(persistence_code(fresh) == errc::sequence_conflict);
  CHECK(highest("gap-fresh") == 0);
  CHECK(read_all().size() == 2);
}

LONGHAUL_CONTRACT_CASE("a write for a new stream is stored only if the id has no stream, "
                       "not even one without events") {
  auto fresh = [](std::string id, std::vector<new_event> events) {
    auto w = write_for(std::move(id), 1, std::move(events));
    w.new_stream = true;
    return w;
  };
  // A new id: stored like any first write.
  auto first = store(fresh("new-1", {event("opened"), event("deposited")}));
  CHECK(first.highest_seq == 2);
  CHECK(seqs(replay("new-1").events) == range(1, 2));
  // An id with events: refused, nothing stored.
  auto again = refuse(fresh("new-1", {event("opened")}));
  CHECK(persistence_code(again) == errc::sequence_conflict);
  CHECK(is_rejection(again));
  CHECK(highest("new-1") == 2);
  // An id whose only write stored a timer has a stream with no events: a plain write at
  // sequence number 1 passes, one for a new stream does not (its timer would be unknown
  // to a state presumed initial).
  set_timers("new-timer", {timer("reminder", start_ms + 5)});
  auto timer_only = refuse(fresh("new-timer", {event("opened")}));
  CHECK(persistence_code(timer_only) == errc::sequence_conflict);
  CHECK(highest("new-timer") == 0);
  CHECK(timers_of("new-timer").size() == 1);
  // The same after a write that only recorded a processed message.
  auto processed = write_for("new-processed", 1);
  processed.processed_message_id = "m-1";
  store(std::move(processed));
  auto processed_only = fresh("new-processed", {event("opened")});
  processed_only.processed_message_id = "m-2";
  CHECK(persistence_code(refuse(std::move(processed_only))) == errc::sequence_conflict);
  CHECK(highest("new-processed") == 0);
  // Only sequence number 1 can start a new stream.
  auto late = fresh("new-2", {event("opened")});
  late.expected_seq = 2;
  CHECK(persistence_code(refuse(std::move(late))) == errc::invalid_argument);
  CHECK(highest("new-2") == 0);
  CHECK(read_all().size() == 2);
}

LONGHAUL_CONTRACT_CASE("append at an already used sequence number fails with "
                       "sequence_conflict and stores nothing") {
  append_singly("dup-seq", 3);
  auto err = refuse(write_for("dup-seq", 3, {event("again"), event("again")}));
  CHECK(persistence_code(err) == errc::sequence_conflict);
  CHECK(is_rejection(err));
  auto err1 = refuse(write_for("dup-seq", 1, {event("again")}));
  CHECK(persistence_code(err1) == errc::sequence_conflict);
  auto result = replay("dup-seq");
  CHECK(seqs(result.events) == range(1, 3));
  for (const auto& ev : result.events)
    CHECK(ev.type == "counter.incremented");
  CHECK(read_all().size() == 3);
}

LONGHAUL_CONTRACT_CASE("a multi-event write with one invalid payload fails with "
                       "invalid_payload and stores none of its events") {
  append_singly("all-or-nothing", 1);
  auto w = write_for("all-or-nothing", 2,
                     {event("a.happened"), event("b.happened", "{not json"),
                      event("c.happened")});
  w.timers_to_set.push_back(timer("reminder", start_ms + 10));
  w.outbox.push_back(message("m-1", "mailer/1"));
  w.processed_message_id = "cmd-1";
  auto err = refuse(std::move(w));
  CHECK(persistence_code(err) == errc::invalid_payload);
  CHECK(is_rejection(err));
  CHECK(highest("all-or-nothing") == 1);
  CHECK(seqs(replay("all-or-nothing").events) == std::vector<sequence_nr>{1});
  CHECK(timers_of("all-or-nothing").empty());
  CHECK(outbox_pending().empty());
  CHECK_FALSE(is_processed("all-or-nothing", "cmd-1"));
  // The same write, repaired, is stored whole at the same sequence numbers.
  auto ok = append("all-or-nothing", 2,
                   {event("a.happened"), event("b.happened"), event("c.happened")});
  CHECK(ok.highest_seq == 4);
}

LONGHAUL_CONTRACT_CASE("a write whose sequence check fails stores none of its timers, "
                       "outbox messages or processed message id") {
  append_singly("atomic", 2);
  auto w = write_for("atomic", 7, {event("late")});
  w.timers_to_set.push_back(timer("reminder", start_ms + 1000));
  w.outbox.push_back(message("out-1", "mailer/1"));
  w.processed_message_id = "cmd-7";
  auto err = refuse(std::move(w));
  CHECK(persistence_code(err) == errc::sequence_conflict);
  CHECK(highest("atomic") == 2);
  CHECK(timers_of("atomic").empty());
  CHECK(timers_due(std::numeric_limits<time_ms>::max()).empty());
  CHECK(outbox_pending().empty());
  CHECK_FALSE(is_processed("atomic", "cmd-7"));
  // Also when the write carries no events at all.
  auto bare = write_for("atomic", 1);
  bare.timers_to_set.push_back(timer("reminder", start_ms + 1000));
  bare.outbox.push_back(message("out-2", "mailer/1"));
  bare.processed_message_id = "cmd-8";
  CHECK(persistence_code(refuse(std::move(bare))) == errc::sequence_conflict);
  CHECK(timers_of("atomic").empty());
  CHECK(outbox_pending().empty());
  CHECK_FALSE(is_processed("atomic", "cmd-8"));
}

LONGHAUL_CONTRACT_CASE("a write without events passes the sequence check at highest+1 and "
                       "leaves the highest sequence number unchanged") {
  append_singly("no-events", 2);
  auto w = write_for("no-events", 3);
  w.timers_to_set.push_back(timer("reminder", start_ms + 5));
  auto result = store(std::move(w));
  CHECK(result.highest_seq == 2);
  CHECK(result.last_position == 0);
  CHECK(highest("no-events") == 2);
  CHECK(timers_of("no-events").size() == 1);
  // The next event still takes sequence number 3.
  CHECK(append("no-events", 3, {event("after.timer")}).highest_seq == 3);
}

LONGHAUL_CONTRACT_CASE("write_result reports the highest sequence number, the position of "
                       "the last event and the write time") {
  auto first = append("result", 1, {event("one"), event("two"), event("three")});
  CHECK(first.highest_seq == 3);
  CHECK(first.written_at_ms == now());
  auto events = read_all();
  REQUIRE(events.size() == 3);
  CHECK(first.last_position == events.back().position);
  advance_clock(250);
  auto second = append("result", 4, {event("four")});
  CHECK(second.highest_seq == 4);
  CHECK(second.last_position > first.last_position);
  CHECK(second.written_at_ms == start_ms + 250);
}

// --- delete_up_to --------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("after delete_up_to(n), replay from 1 starts at n+1") {
  append_singly("trim", 6);
  append_singly("trim-other", 2);
  succeeds(j->delete_up_to("trim", 4), "delete_up_to");
  auto result = replay("trim");
  CHECK(seqs(result.events) == range(5, 6));
  CHECK(result.highest_seq == 6);
  CHECK(seqs(replay("trim-other").events) == range(1, 2));
  // Deleted events are gone from the global stream as well.
  auto everything = read_all();
  CHECK(everything.size() == 4);
  for (const auto& ev : everything)
    CHECK((ev.persistence_id != "trim" || ev.seq > 4));
}

LONGHAUL_CONTRACT_CASE("delete_up_to never decreases the highest sequence number, even when "
                       "it deletes every event and more") {
  append_singly("trim-all", 5);
  succeeds(j->delete_up_to("trim-all", 5), "delete_up_to");
  auto result = replay("trim-all");
  CHECK(result.events.empty());
  CHECK(result.highest_seq == 5);
  CHECK(highest("trim-all") == 5);
  succeeds(j->delete_up_to("trim-all", 1000), "delete_up_to beyond the highest");
  CHECK(highest("trim-all") == 5);
  CHECK(replay("trim-all").highest_seq == 5);
}

LONGHAUL_CONTRACT_CASE("after every event is deleted, the next append continues at highest+1") {
  append_singly("trim-continue", 3);
  succeeds(j->delete_up_to("trim-continue", max_sequence_nr), "delete_up_to");
  CHECK(persistence_code(refuse(write_for("trim-continue", 1, {event("restart")})))
        == errc::sequence_conflict);
  CHECK(append("trim-continue", 4, {event("continued")}).highest_seq == 4);
  CHECK(seqs(replay("trim-continue").events) == std::vector<sequence_nr>{4});
}

// --- event records and the global stream -----------------------------------------------------

LONGHAUL_CONTRACT_CASE("event records carry id, seq, type, schema version, payload, tags and "
                       "the journal clock's write time") {
  auto ev = event("payment.received", R"({"amount":125,"currency":"EUR"})", {"eu", "payments"});
  ev.schema_version = 3;
  append("payment-7", 1, {ev});
  advance_clock(1000);
  append("payment-7", 2, {event("payment.refunded", R"([1,2,3])")});
  auto events = replay("payment-7").events;
  REQUIRE(events.size() == 2);
  const auto& first = events[0];
  CHECK(first.persistence_id == "payment-7");
  CHECK(first.seq == 1);
  CHECK(first.type == "payment.received");
  CHECK(first.schema_version == 3);
  CHECK(first.payload_json == R"({"amount":125,"currency":"EUR"})");
  CHECK(first.tags == std::vector<std::string>{"eu", "payments"});
  CHECK(first.written_at_ms == start_ms);
  CHECK(first.position > 0);
  const auto& second = events[1];
  CHECK(second.seq == 2);
  CHECK(second.type == "payment.refunded");
  CHECK(second.schema_version == 1);
  CHECK(second.payload_json == "[1,2,3]");
  CHECK(second.tags.empty());
  CHECK(second.written_at_ms == start_ms + 1000);
}

LONGHAUL_CONTRACT_CASE("global positions strictly increase across ids in write order") {
  append("pos-a", 1, {event("a1"), event("a2")});
  append("pos-b", 1, {event("b1")});
  append("pos-a", 3, {event("a3")});
  append("pos-c", 1, {event("c1"), event("c2"), event("c3")});
  auto events = read_all();
  REQUIRE(events.size() == 7);
  std::vector<std::string> order;
  for (std::size_t i = 0; i < events.size(); ++i) {
    order.push_back(events[i].type);
    CHECK(events[i].position > 0);
    if (i > 0)
      CHECK(events[i].position > events[i - 1].position);
  }
  CHECK(order == std::vector<std::string>{"a1", "a2", "b1", "a3", "c1", "c2", "c3"});
  // replay and read_all agree on each event's position.
  auto a = replay("pos-a").events;
  REQUIRE(a.size() == 3);
  CHECK(a[2].position == events[3].position);
}

LONGHAUL_CONTRACT_CASE("read_all returns the events after a position in position order, at "
                       "most max") {
  append_singly("all-a", 3);
  append_singly("all-b", 3);
  auto everything = read_all();
  REQUIRE(everything.size() == 6);
  auto tail = read_all(everything[1].position, all);
  REQUIRE(tail.size() == 4);
  CHECK(tail.front().position == everything[2].position);
  auto page = read_all(everything[1].position, 2);
  REQUIRE(page.size() == 2);
  CHECK(page[0].position == everything[2].position);
  CHECK(page[1].position == everything[3].position);
  CHECK(read_all(everything.back().position, all).empty());
  CHECK(read_all(0, 0).empty());
}

LONGHAUL_CONTRACT_CASE("read_all with a tag returns only the events carrying that tag") {
  append("tag-a", 1, {event("x", "{}", {"blue"}), event("y", "{}", {"red"})});
  append("tag-b", 1, {event("z", "{}", {"blue", "red"}), event("w")});
  append("tag-a", 3, {event("v", "{}", {"blue"})});
  auto blue = read_all(0, all, "blue");
  std::vector<std::string> types;
  for (const auto& ev : blue)
    types.push_back(ev.type);
  CHECK(types == std::vector<std::string>{"x", "z", "v"});
  for (std::size_t i = 1; i < blue.size(); ++i)
    CHECK(blue[i].position > blue[i - 1].position);
  REQUIRE(blue.size() == 3);
  auto after_first = read_all(blue[0].position, 1, "blue");
  REQUIRE(after_first.size() == 1);
  CHECK(after_first[0].type == "z");
  CHECK(read_all(0, all, "green").empty());
}

LONGHAUL_CONTRACT_CASE("a write with more events and tags than one insert statement holds "
                       "stores every event in order with consecutive positions and its tags") {
  // The SQLite journal inserts events and tags in statements of up to 8 rows: 21 events
  // with 0 to 3 tags each cross several statement boundaries of both.
  std::vector<new_event> events;
  std::size_t blue_expected = 0;
  for (int i = 0; i < 21; ++i) {
    std::vector<std::string> tags;
    for (int t = 0; t < i % 4; ++t)
      tags.push_back(t == 0 ? "blue" : "tag-" + std::to_string(i) + "-" + std::to_string(t));
    blue_expected += tags.empty() ? 0 : 1;
    events.push_back(event("e" + std::to_string(i), R"({"i":)" + std::to_string(i) + "}", tags));
  }
  append("many", 1, {event("first")});
  auto r = append("many", 2, events);
  CHECK(r.highest_seq == 22);
  auto stored = replay("many").events;
  REQUIRE(stored.size() == 22);
  for (std::size_t k = 1; k < stored.size(); ++k) {
    INFO(k);
    const auto& ev = stored[k];
    CHECK(ev.seq == k + 1);
    CHECK(ev.type == events[k - 1].type);
    CHECK(ev.payload_json == events[k - 1].payload_json);
    CHECK(ev.tags == events[k - 1].tags);
    CHECK(ev.position == stored[k - 1].position + 1);
  }
  CHECK(r.last_position == stored.back().position);
  auto blue = read_all(0, all, "blue");
  REQUIRE(blue.size() == blue_expected);
  for (const auto& ev : blue)
    CHECK(ev.tags.front() == "blue");
  auto one = read_all(0, all, "tag-19-2");
  REQUIRE(one.size() == 1);
  CHECK(one[0].type == "e19");
  CHECK(one[0].seq == 21);
}

// --- snapshots ---------------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("a saved snapshot loads back with the journal clock's save time") {
  append_batch("snap", 7);
  advance_clock(42);
  save_snapshot("snap", 7, R"({"balance":10})");
  auto snap = load_snapshot("snap");
  REQUIRE(snap.has_value());
  CHECK(snap->persistence_id == "snap");
  CHECK(snap->seq == 7);
  CHECK(snap->state_json == R"({"balance":10})");
  CHECK(snap->saved_at_ms == start_ms + 42);
  CHECK_FALSE(load_snapshot("snap-unknown").has_value());
}

LONGHAUL_CONTRACT_CASE("load_snapshot returns the newest snapshot within the selection") {
  append_batch("snaps", 30);
  append_batch("snaps-other", 99);
  save_snapshot("snaps", 10, R"({"v":10})");
  advance_clock(1000);
  save_snapshot("snaps", 20, R"({"v":20})");
  advance_clock(1000);
  save_snapshot("snaps", 30, R"({"v":30})");
  save_snapshot("snaps-other", 99, "{}");
  CHECK(seq_of(load_snapshot("snaps")) == 30);
  CHECK(load_snapshot("snaps")->state_json == R"({"v":30})");
  snapshot_selection up_to_25;
  up_to_25.max_seq = 25;
  CHECK(seq_of(load_snapshot("snaps", up_to_25)) == 20);
  snapshot_selection up_to_20;
  up_to_20.max_seq = 20;
  CHECK(seq_of(load_snapshot("snaps", up_to_20)) == 20);
  snapshot_selection early;
  early.max_saved_at_ms = start_ms + 1500;
  CHECK(seq_of(load_snapshot("snaps", early)) == 20);
  early.max_saved_at_ms = start_ms;
  CHECK(seq_of(load_snapshot("snaps", early)) == 10);
  early.max_saved_at_ms = start_ms - 1;
  CHECK_FALSE(load_snapshot("snaps", early).has_value());
  snapshot_selection from_15;
  from_15.min_seq = 15;
  from_15.max_seq = 25;
  CHECK(seq_of(load_snapshot("snaps", from_15)) == 20);
  from_15.max_seq = 12;
  CHECK_FALSE(load_snapshot("snaps", from_15).has_value());
}

LONGHAUL_CONTRACT_CASE("saving a snapshot at the same seq replaces it") {
  append_batch("snap-replace", 5);
  save_snapshot("snap-replace", 5, R"({"v":"old"})");
  advance_clock(10);
  save_snapshot("snap-replace", 5, R"({"v":"new"})");
  auto snap = load_snapshot("snap-replace");
  REQUIRE(snap.has_value());
  CHECK(snap->state_json == R"({"v":"new"})");
  CHECK(snap->saved_at_ms == start_ms + 10);
  snapshot_selection only_5;
  only_5.min_seq = 5;
  only_5.max_seq = 5;
  succeeds(j->delete_snapshots("snap-replace", only_5), "delete_snapshots");
  CHECK_FALSE(load_snapshot("snap-replace").has_value());
}

LONGHAUL_CONTRACT_CASE("delete_snapshots deletes one snapshot or a range and nothing else") {
  append_batch("snap-del", 50);
  append_batch("snap-del-other", 30);
  for (sequence_nr seq : {10, 20, 30, 40, 50})
    save_snapshot("snap-del", seq, "{}");
  save_snapshot("snap-del-other", 30, "{}");
  snapshot_selection one;
  one.min_seq = 50;
  one.max_seq = 50;
  succeeds(j->delete_snapshots("snap-del", one), "delete one snapshot");
  CHECK(seq_of(load_snapshot("snap-del")) == 40);
  snapshot_selection middle;
  middle.min_seq = 15;
  middle.max_seq = 35;
  succeeds(j->delete_snapshots("snap-del", middle), "delete a range");
  CHECK(seq_of(load_snapshot("snap-del")) == 40);
  snapshot_selection below_35;
  below_35.max_seq = 35;
  CHECK(seq_of(load_snapshot("snap-del", below_35)) == 10);
  CHECK(seq_of(load_snapshot("snap-del-other")) == 30);
  succeeds(j->delete_snapshots("snap-del", snapshot_selection{}), "delete all");
  CHECK_FALSE(load_snapshot("snap-del").has_value());
  CHECK(seq_of(load_snapshot("snap-del-other")) == 30);
}

LONGHAUL_CONTRACT_CASE("snapshots survive delete_up_to") {
  append_batch("snap-trim", 5);
  save_snapshot("snap-trim", 5, R"({"v":5})");
  succeeds(j->delete_up_to("snap-trim", 5), "delete_up_to");
  auto snap = load_snapshot("snap-trim");
  REQUIRE(snap.has_value());
  CHECK(snap->seq == 5);
  CHECK(snap->state_json == R"({"v":5})");
}

LONGHAUL_CONTRACT_CASE("with keep_snapshots = 2 only the two newest snapshots per id remain") {
  auto keeping = open_journal(2);
  append_batch("keep", 4, keeping.get());
  append_batch("keep-other", 1, keeping.get());
  for (sequence_nr seq : {1, 2, 3, 4})
    save_snapshot("keep", seq, R"({"v":)" + std::to_string(seq) + "}", keeping.get());
  save_snapshot("keep-other", 1, "{}", keeping.get());
  CHECK(seq_of(load_snapshot("keep", {}, keeping.get())) == 4);
  snapshot_selection up_to_3;
  up_to_3.max_seq = 3;
  CHECK(seq_of(load_snapshot("keep", up_to_3, keeping.get())) == 3);
  snapshot_selection up_to_2;
  up_to_2.max_seq = 2;
  CHECK_FALSE(load_snapshot("keep", up_to_2, keeping.get()).has_value());
  CHECK(seq_of(load_snapshot("keep-other", {}, keeping.get())) == 1);
  // keep_snapshots = 0 (the default journal) keeps every snapshot.
  append_batch("keep", 3);
  for (sequence_nr seq : {1, 2, 3})
    save_snapshot("keep", seq, "{}");
  snapshot_selection only_1;
  only_1.max_seq = 1;
  CHECK(seq_of(load_snapshot("keep", only_1)) == 1);
}

LONGHAUL_CONTRACT_CASE("save_snapshot refuses sequence 0, a sequence beyond the highest, "
                       "an empty id and state that is not JSON, and stores nothing") {
  append_batch("snap-bad", 3);
  auto refuse_snapshot = [this](std::string id, sequence_nr seq, std::string state) {
    auto err = j->save_snapshot(snapshot_record{std::move(id), seq, std::move(state), 0});
    CHECK(is_rejection(err));
    return persistence_code(err);
  };
  CHECK(refuse_snapshot("snap-bad", 0, "{}") == errc::invalid_argument);
  CHECK(refuse_snapshot("snap-bad", 4, "{}") == errc::invalid_argument);
  CHECK(refuse_snapshot("snap-unknown", 1, "{}") == errc::invalid_argument);
  CHECK(refuse_snapshot("", 1, "{}") == errc::invalid_argument);
  CHECK(refuse_snapshot("snap-bad", 2, "{broken") == errc::invalid_payload);
  CHECK_FALSE(load_snapshot("snap-bad").has_value());
  CHECK_FALSE(load_snapshot("snap-unknown").has_value());
  // At the highest sequence number it is accepted.
  save_snapshot("snap-bad", 3, "{}");
  CHECK(seq_of(load_snapshot("snap-bad")) == 3);
}

// --- timers --------------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("a set timer is stored with its due time and payload") {
  auto w = write_for("timer-1", 1, {event("order.placed")});
  w.timers_to_set.push_back(timer("payment-timeout", start_ms + 60'000, R"({"cmd":"expire"})"));
  store(std::move(w));
  auto timers = timers_of("timer-1");
  REQUIRE(timers.size() == 1);
  CHECK(timers[0].persistence_id == "timer-1");
  CHECK(timers[0].name == "payment-timeout");
  CHECK(timers[0].due_ms == start_ms + 60'000);
  CHECK(timers[0].payload_json == R"({"cmd":"expire"})");
  CHECK(timers_of("timer-unknown").empty());
}

LONGHAUL_CONTRACT_CASE("setting a timer with the same name replaces it") {
  auto w = write_for("timer-replace", 1);
  w.timers_to_set.push_back(timer("retry", 1000, R"({"attempt":1})"));
  store(std::move(w));
  auto again = write_for("timer-replace", 1);
  again.timers_to_set.push_back(timer("retry", 5000, R"({"attempt":2})"));
  store(std::move(again));
  auto timers = timers_of("timer-replace");
  REQUIRE(timers.size() == 1);
  CHECK(timers[0].due_ms == 5000);
  CHECK(timers[0].payload_json == R"({"attempt":2})");
  CHECK(timers_due(4999).empty());
  CHECK(timers_due(5000).size() == 1);
}

LONGHAUL_CONTRACT_CASE("a cancelled timer is removed and cancelling an absent timer is a "
                       "no-op") {
  auto w = write_for("timer-cancel", 1);
  w.timers_to_set.push_back(timer("a", 100));
  w.timers_to_set.push_back(timer("b", 200));
  store(std::move(w));
  auto cancel = write_for("timer-cancel", 1);
  cancel.timers_to_cancel.push_back(timer_cancel{"a"});
  store(std::move(cancel));
  CHECK(names(timers_of("timer-cancel")) == std::vector<std::string>{"timer-cancel/b"});
  auto absent = write_for("timer-cancel", 1);
  absent.timers_to_cancel.push_back(timer_cancel{"never-set"});
  absent.timers_to_cancel.push_back(timer_cancel{"a"});
  store(std::move(absent));
  CHECK(names(timers_of("timer-cancel")) == std::vector<std::string>{"timer-cancel/b"});
  CHECK(names(timers_due(1000)) == std::vector<std::string>{"timer-cancel/b"});
}

LONGHAUL_CONTRACT_CASE("cancels are applied before sets, so cancel and set of one name in one "
                       "write leaves the new timer") {
  auto w = write_for("timer-order", 1);
  w.timers_to_set.push_back(timer("t", 100, R"({"v":1})"));
  store(std::move(w));
  auto both = write_for("timer-order", 1);
  both.timers_to_set.push_back(timer("t", 300, R"({"v":2})"));
  both.timers_to_cancel.push_back(timer_cancel{"t"});
  store(std::move(both));
  auto timers = timers_of("timer-order");
  REQUIRE(timers.size() == 1);
  CHECK(timers[0].due_ms == 300);
  CHECK(timers[0].payload_json == R"({"v":2})");
}

LONGHAUL_CONTRACT_CASE("cancel_all_timers removes every timer of the id before the write's "
                       "own sets and leaves other ids' timers alone") {
  auto w = write_for("finishing", 1);
  w.timers_to_set = {timer("a", 100), timer("b", 200), timer("c", 300)};
  store(std::move(w));
  auto other = write_for("bystander", 1);
  other.timers_to_set = {timer("a", 100)};
  store(std::move(other));
  // A write whose sequence check fails cancels nothing.
  auto stale = write_for("finishing", 5);
  stale.cancel_all_timers = true;
  CHECK(persistence_code(refuse(std::move(stale))) == errc::sequence_conflict);
  CHECK(timers_of("finishing").size() == 3);
  auto reset = write_for("finishing", 1);
  reset.cancel_all_timers = true;
  reset.timers_to_set = {timer("b", 900)};
  store(std::move(reset));
  auto timers = timers_of("finishing");
  REQUIRE(timers.size() == 1);
  CHECK(timers[0].name == "b");
  CHECK(timers[0].due_ms == 900);
  // cancel_all_timers alone is a write that stores something.
  auto finish = write_for("finishing", 1);
  finish.cancel_all_timers = true;
  store(std::move(finish));
  CHECK(timers_of("finishing").empty());
  CHECK(names(timers_due(1000)) == std::vector<std::string>{"bystander/a"});
}

LONGHAUL_CONTRACT_CASE("timers_due returns timers due at or before until, ordered by due time, "
                       "id and name, at most max") {
  set_timers("due-b", {timer("t1", 100)});
  set_timers("due-a", {timer("t2", 100), timer("t1", 100), timer("late", 300)});
  set_timers("due-c", {timer("early", 50)});
  set_timers("due-d", {timer("epoch", 0)});
  CHECK(names(timers_due(100))
        == std::vector<std::string>{"due-d/epoch", "due-c/early", "due-a/t1", "due-a/t2",
                                    "due-b/t1"});
  CHECK(names(timers_due(99)) == std::vector<std::string>{"due-d/epoch", "due-c/early"});
  CHECK(names(timers_due(100, 3))
        == std::vector<std::string>{"due-d/epoch", "due-c/early", "due-a/t1"});
  CHECK(timers_due(1000).size() == 6);
  CHECK(timers_due(1000, 0).empty());
  CHECK(timers_due(-1).empty());
  auto due = timers_due(50);
  REQUIRE(due.size() == 2);
  CHECK(due[1].due_ms == 50);
  CHECK(due[1].payload_json == R"({"cmd":"fire"})");
}

LONGHAUL_CONTRACT_CASE("timers_due_after continues the due order strictly after a position") {
  set_timers("page-b", {timer("t1", 100)});
  set_timers("page-a", {timer("t2", 100), timer("t1", 100), timer("late", 300)});
  set_timers("page-c", {timer("early", 50)});
  // Paging with the last row of each page visits every timer once, in due order.
  std::vector<std::string> paged;
  timer_position after{-1, "", ""};
  for (;;) {
    auto page = timers_due_after(after, 1000, 2);
    if (page.empty())
      break;
    for (const auto& t : page)
      paged.push_back(t.persistence_id + "/" + t.name);
    after = {page.back().due_ms, page.back().persistence_id, page.back().name};
  }
  CHECK(paged
        == std::vector<std::string>{"page-c/early", "page-a/t1", "page-a/t2", "page-b/t1",
                                    "page-a/late"});
  // Strictly after: same due time, then id, then name decide.
  CHECK(names(timers_due_after({100, "page-a", "t1"}, 1000))
        == std::vector<std::string>{"page-a/t2", "page-b/t1", "page-a/late"});
  CHECK(names(timers_due_after({100, "page-a", "t2"}, 1000))
        == std::vector<std::string>{"page-b/t1", "page-a/late"});
  CHECK(names(timers_due_after({100, "page-b", "t1"}, 1000))
        == std::vector<std::string>{"page-a/late"});
  // {t, "", ""} starts at due time t; until bounds the due time.
  CHECK(names(timers_due_after({100, "", ""}, 1000))
        == std::vector<std::string>{"page-a/t1", "page-a/t2", "page-b/t1", "page-a/late"});
  CHECK(names(timers_due_after({51, "", ""}, 299))
        == std::vector<std::string>{"page-a/t1", "page-a/t2", "page-b/t1"});
  CHECK(timers_due_after({300, "page-a", "late"}, 1000).empty());
  CHECK(timers_due_after({-1, "", ""}, 1000, 0).empty());
  auto first = timers_due_after({-1, "", ""}, 49);
  CHECK(first.empty());
  // A timer set after a page was read shows up in the next page if it sorts after it.
  set_timers("page-d", {timer("t0", 100)});
  CHECK(names(timers_due_after({100, "page-b", "t1"}, 1000))
        == std::vector<std::string>{"page-d/t0", "page-a/late"});
}

LONGHAUL_CONTRACT_CASE("timers_of returns the timers of one id ordered by name") {
  auto w = write_for("timers-of", 1);
  w.timers_to_set = {timer("zeta", 10), timer("alpha", 30), timer("mid", 20)};
  store(std::move(w));
  auto other = write_for("timers-of-other", 1);
  other.timers_to_set = {timer("beta", 5)};
  store(std::move(other));
  CHECK(names(timers_of("timers-of"))
        == std::vector<std::string>{"timers-of/alpha", "timers-of/mid", "timers-of/zeta"});
}

LONGHAUL_CONTRACT_CASE("load_recovery_start returns the newest snapshot, the events after "
                       "it up to max and the timers of the id") {
  auto w = write_for("start", 1);
  for (int i = 0; i < 12; ++i)
    w.events.push_back(event("counter.incremented"));
  w.timers_to_set = {timer("late", 30), timer("early", 10)};
  store(std::move(w));
  set_timers("start-other", {timer("other", 5)});
  save_snapshot("start", 4, R"({"v":4})");
  save_snapshot("start", 8, R"({"v":8})");

  auto start = value_of(j->load_recovery_start("start", 3), "load_recovery_start");
  REQUIRE(start.snapshot.has_value());
  CHECK(start.snapshot->seq == 8);
  CHECK(start.snapshot->state_json == R"({"v":8})");
  std::vector<sequence_nr> seqs;
  for (const auto& ev : start.events.events)
    seqs.push_back(ev.seq);
  CHECK(seqs == std::vector<sequence_nr>{9, 10, 11});
  CHECK(start.events.highest_seq == 12);
  CHECK(names(start.timers) == std::vector<std::string>{"start/early", "start/late"});

  // Without a snapshot the events start at 1; an unknown id has nothing at all.
  auto fresh = value_of(j->load_recovery_start("start-other", 10), "load_recovery_start");
  CHECK_FALSE(fresh.snapshot.has_value());
  CHECK(fresh.events.events.empty());
  CHECK(fresh.events.highest_seq == 0);
  CHECK(names(fresh.timers) == std::vector<std::string>{"start-other/other"});
  auto unknown = value_of(j->load_recovery_start("start-unknown", 10), "load_recovery_start");
  CHECK_FALSE(unknown.snapshot.has_value());
  CHECK(unknown.events.events.empty());
  CHECK(unknown.timers.empty());
}

// --- outbox --------------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("outbox_delivered with many numbers, in any order, removes exactly "
                       "those rows") {
  // The SQLite journal removes each run of consecutive numbers with one range delete:
  // 47 of 70 rows in runs of two with gaps between, unsorted, with a repeat and an
  // unknown number.
  auto w = write_for("bulk", 1, {event("bulk.sent")});
  for (int i = 0; i < 70; ++i)
    w.outbox.push_back(message("bulk-" + std::to_string(i), "mailer/" + std::to_string(i)));
  store(std::move(w));
  auto pending = outbox_pending();
  REQUIRE(pending.size() == 70);
  std::vector<std::uint64_t> remove;
  std::set<std::string> kept;
  for (int i = 69; i >= 0; --i) {
    if (i % 3 == 1)
      kept.insert(pending[static_cast<std::size_t>(i)].message_id);
    else
      remove.push_back(pending[static_cast<std::size_t>(i)].outbox_seq);
  }
  remove.push_back(remove.front());
  remove.push_back(pending.back().outbox_seq + 1000);
  REQUIRE(remove.size() == 49);
  succeeds(j->outbox_delivered(remove), "outbox_delivered");
  std::set<std::string> left;
  for (const auto& m : outbox_pending())
    left.insert(m.message_id);
  CHECK(left == kept);
  CHECK(left.size() == 23);
}

LONGHAUL_CONTRACT_CASE("outbox messages are pending in write order with increasing "
                       "outbox_seq until delivered") {
  auto w = write_for("order-1", 1, {event("order.placed")});
  w.outbox = {message("msg-1", "mailer/1", R"({"to":"a"})"), message("msg-2", "stock/9")};
  store(std::move(w));
  advance_clock(5);
  auto w2 = write_for("order-2", 1);
  w2.outbox = {message("msg-3", "mailer/1", R"({"to":"b"})")};
  store(std::move(w2));
  auto pending = outbox_pending();
  REQUIRE(pending.size() == 3);
  CHECK(pending[0].message_id == "msg-1");
  CHECK(pending[0].source_persistence_id == "order-1");
  CHECK(pending[0].destination == "mailer/1");
  CHECK(pending[0].payload_json == R"({"to":"a"})");
  CHECK(pending[0].created_at_ms == start_ms);
  CHECK(pending[1].message_id == "msg-2");
  CHECK(pending[2].message_id == "msg-3");
  CHECK(pending[2].source_persistence_id == "order-2");
  CHECK(pending[2].created_at_ms == start_ms + 5);
  CHECK(pending[0].outbox_seq < pending[1].outbox_seq);
  CHECK(pending[1].outbox_seq < pending[2].outbox_seq);
  auto page = outbox_pending(pending[0].outbox_seq, 1);
  REQUIRE(page.size() == 1);
  CHECK(page[0].message_id == "msg-2");
  CHECK(outbox_pending(0, 0).empty());
  succeeds(j->outbox_delivered({pending[0].outbox_seq, pending[2].outbox_seq + 1000}),
           "outbox_delivered");
  auto left = outbox_pending();
  REQUIRE(left.size() == 2);
  CHECK(left[0].message_id == "msg-2");
  CHECK(left[1].message_id == "msg-3");
  succeeds(j->outbox_delivered({pending[1].outbox_seq, pending[2].outbox_seq}),
           "outbox_delivered");
  CHECK(outbox_pending().empty());
  succeeds(j->outbox_delivered({}), "outbox_delivered of nothing");
}

/// A ticket that records how often, and with what, the journal called it back.
struct recording_ticket final : write_ticket {
  std::promise<caf::expected<write_result>> outcome;
  std::atomic<int> calls{0};
  void done(caf::expected<write_result> r) override {
    if (++calls == 1)
      outcome.set_value(std::move(r));
  }
};

LONGHAUL_CONTRACT_CASE("submit stores a ticket's write, calls done once and keeps no "
                       "reference, and refuses an invalid or conflicting ticket through done") {
  // Submits `w` in a fresh ticket; returns the ticket and the outcome done received.
  auto submit = [this](atomic_write w) {
    auto t = std::make_shared<recording_ticket>();
    t->w = std::move(w);
    auto outcome = t->outcome.get_future();
    j->submit(t);
    return std::pair{t, outcome.get()};
  };
  auto [t, r] = submit(write_for("ticketed", 1, {event("a"), event("b")}));
  REQUIRE(r);
  CHECK(r->highest_seq == 2);
  CHECK(highest("ticketed") == 2);
  auto [bad, rb] = submit(write_for("", 1, {event("a")}));
  REQUIRE_FALSE(rb);
  CHECK(persistence_code(rb.error()) == errc::invalid_argument);
  auto [stale, rc] = submit(write_for("ticketed", 2, {event("c")}));
  REQUIRE_FALSE(rc);
  CHECK(persistence_code(rc.error()) == errc::sequence_conflict);
  CHECK(highest("ticketed") == 2);
  j->flush();
  for (const auto& ticket : {t, bad, stale}) {
    CHECK(ticket->calls == 1);
    CHECK(ticket.use_count() == 2);  // ours and the list's: the journal dropped its own
  }
}

LONGHAUL_CONTRACT_CASE("outbox_delivered_async removes the rows, reports once, and a flush "
                       "covers it") {
  auto w = write_for("async-out", 1);
  w.outbox = {message("amsg-1", "mailer/1"), message("amsg-2", "mailer/2")};
  store(std::move(w));
  auto pending = outbox_pending();
  REQUIRE(pending.size() == 2);
  std::promise<caf::error> first;
  std::atomic<int> calls{0};
  j->outbox_delivered_async({pending[0].outbox_seq}, [&](caf::error err) {
    ++calls;
    first.set_value(std::move(err));
  });
  j->flush();
  auto err = first.get_future().get();
  CHECK_FALSE(err);
  CHECK(calls == 1);
  auto left = outbox_pending();
  REQUIRE(left.size() == 1);
  CHECK(left[0].message_id == "amsg-2");
  std::promise<caf::error> nothing;
  j->outbox_delivered_async({}, [&](caf::error e) { nothing.set_value(std::move(e)); });
  CHECK_FALSE(nothing.get_future().get());
}

LONGHAUL_CONTRACT_CASE("an outbox message id that is already pending is refused with "
                       "invalid_argument and nothing of its write is stored") {
  auto w = write_for("sender", 1, {event("order.placed")});
  w.outbox = {message("msg-1", "mailer/1")};
  store(std::move(w));
  auto again = write_for("sender-2", 1, {event("order.placed")});
  again.outbox = {message("msg-1", "mailer/2")};
  again.processed_message_id = "cmd-2";
  auto err = refuse(std::move(again));
  CHECK(persistence_code(err) == errc::invalid_argument);
  CHECK(is_rejection(err));
  CHECK(highest("sender-2") == 0);
  CHECK_FALSE(is_processed("sender-2", "cmd-2"));
  auto twice = write_for("sender-3", 1);
  twice.outbox = {message("msg-3", "mailer/1"), message("msg-3", "mailer/1")};
  CHECK(persistence_code(refuse(std::move(twice))) == errc::invalid_argument);
  auto pending = outbox_pending();
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].destination == "mailer/1");
  // Once delivered, the id may be used again (receivers deduplicate).
  succeeds(j->outbox_delivered({pending[0].outbox_seq}), "outbox_delivered");
  auto reuse = write_for("sender-2", 1);
  reuse.outbox = {message("msg-1", "mailer/2")};
  store(std::move(reuse));
  CHECK(outbox_pending().size() == 1);
}

LONGHAUL_CONTRACT_CASE("a pending outbox id among many messages refuses the whole write, "
                       "whichever row holds it") {
  auto first = write_for("holder", 1, {event("order.placed")});
  first.outbox = {message("dup-9", "mailer/1")};
  store(std::move(first));
  auto many = [](std::string prefix, std::size_t n) {
    std::vector<outbox_message> out;
    for (std::size_t i = 0; i < n; ++i)
      out.push_back(message(prefix + std::to_string(i), "mailer/" + std::to_string(i)));
    return out;
  };
  // A new stream, a processed id and three events; the tenth of ten messages (past the
  // first multi-row statement) reuses a pending id.
  auto w = write_for("multi", 1, {event("a"), event("b"), event("c")});
  w.processed_message_id = "cmd-b";
  w.outbox = many("b-", 9);
  w.outbox.push_back(message("dup-9", "mailer/9"));
  auto err = refuse(std::move(w));
  CHECK(persistence_code(err) == errc::invalid_argument);
  CHECK(is_rejection(err));
  CHECK(describe(err).find("dup-9") != std::string::npos);
  CHECK(highest("multi") == 0);
  CHECK_FALSE(is_processed("multi", "cmd-b"));
  CHECK(outbox_pending().size() == 1);
  // The same write without the reused id is stored whole.
  auto retry = write_for("multi", 1, {event("a"), event("b"), event("c")});
  retry.processed_message_id = "cmd-b";
  retry.outbox = many("b-", 9);
  store(std::move(retry));
  CHECK(highest("multi") == 3);
  CHECK(is_processed("multi", "cmd-b"));
  auto pending = outbox_pending();
  REQUIRE(pending.size() == 10);
  for (std::size_t i = 1; i < pending.size(); ++i) {
    CHECK(pending[i].message_id == "b-" + std::to_string(i - 1));
    CHECK(pending[i].source_persistence_id == "multi");
  }
  // An existing stream, the reused id in the first statement: nothing stored either.
  auto again = write_for("multi", 4, {event("d")});
  again.processed_message_id = "cmd-d";
  again.outbox = {message("d-0", "mailer/0"), message("b-3", "mailer/3")};
  CHECK(persistence_code(refuse(std::move(again))) == errc::invalid_argument);
  CHECK(highest("multi") == 3);
  CHECK_FALSE(is_processed("multi", "cmd-d"));
  CHECK(outbox_pending().size() == 10);
}

LONGHAUL_CONTRACT_CASE("positions and outbox numbers are never reused, even after the newest "
                       "rows are deleted") {
  append_batch("reuse-a", 3);
  auto newest = read_all().back().position;
  succeeds(j->delete_up_to("reuse-a", 3), "delete_up_to");
  auto next = append("reuse-b", 1, {event("after.delete")});
  CHECK(next.last_position > newest);
  auto w = write_for("reuse-b", 2);
  w.outbox = {message("m-1", "mailer/1"), message("m-2", "mailer/1")};
  store(std::move(w));
  auto pending = outbox_pending();
  REQUIRE(pending.size() == 2);
  succeeds(j->outbox_delivered({pending[0].outbox_seq, pending[1].outbox_seq}),
           "outbox_delivered");
  auto w2 = write_for("reuse-b", 2);
  w2.outbox = {message("m-3", "mailer/1")};
  store(std::move(w2));
  auto later = outbox_pending();
  REQUIRE(later.size() == 1);
  CHECK(later[0].outbox_seq > pending[1].outbox_seq);
}

// --- dead letters ----------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("dead letters are kept in order with increasing dead_letter_seq and "
                       "the journal clock's time") {
  auto letter = [](std::string id, std::string reason) {
    dead_letter_record rec;
    rec.message_id = std::move(id);
    rec.source_persistence_id = "order-1";
    rec.destination = "mailer/1";
    rec.payload_json = R"({"to":"a"})";
    rec.reason = std::move(reason);
    rec.dead_letter_seq = 999;    // set by the journal
    rec.recorded_at_ms = 1;       // set by the journal
    return rec;
  };
  succeeds(j->record_dead_letter(letter("msg-1", "unknown entity type")), "record_dead_letter");
  advance_clock(7);
  succeeds(j->record_dead_letter(letter("msg-2", "handler rejected")), "record_dead_letter");
  succeeds(j->record_dead_letter(letter("msg-3", "handler rejected")), "record_dead_letter");
  auto letters = value_of(j->dead_letters(0, all), "dead_letters");
  REQUIRE(letters.size() == 3);
  CHECK(letters[0].message_id == "msg-1");
  CHECK(letters[0].source_persistence_id == "order-1");
  CHECK(letters[0].destination == "mailer/1");
  CHECK(letters[0].payload_json == R"({"to":"a"})");
  CHECK(letters[0].reason == "unknown entity type");
  CHECK(letters[0].recorded_at_ms == start_ms);
  CHECK(letters[1].recorded_at_ms == start_ms + 7);
  CHECK(letters[0].dead_letter_seq < letters[1].dead_letter_seq);
  CHECK(letters[1].dead_letter_seq < letters[2].dead_letter_seq);
  auto page = value_of(j->dead_letters(letters[0].dead_letter_seq, 1), "dead_letters");
  REQUIRE(page.size() == 1);
  CHECK(page[0].message_id == "msg-2");
  CHECK(value_of(j->dead_letters(letters[2].dead_letter_seq, all), "dead_letters").empty());
  CHECK(value_of(j->dead_letters(0, 0), "dead_letters").empty());
}

LONGHAUL_CONTRACT_CASE("a dead letter identical to a stored one (same message id, destination "
                       "and reason) is stored once, one that differs in any of them is stored") {
  auto letter = [](std::string id, std::string destination, std::string reason) {
    dead_letter_record rec;
    rec.message_id = std::move(id);
    rec.source_persistence_id = "saga/s2";
    rec.destination = std::move(destination);
    rec.payload_json = R"({"qty":50})";
    rec.reason = std::move(reason);
    return rec;
  };
  succeeds(j->record_dead_letter(letter("msg-1", "stock/s2", "rejected: only 10 in stock")),
           "record_dead_letter");
  advance_clock(5);
  // The same message dead-lettered again, as after a crash before its outbox row went.
  succeeds(j->record_dead_letter(letter("msg-1", "stock/s2", "rejected: only 10 in stock")),
           "record_dead_letter");
  succeeds(j->record_dead_letter(letter("msg-1", "stock/s2", "rejected: closed")),
           "record_dead_letter");
  succeeds(j->record_dead_letter(letter("msg-1", "stock/s3", "rejected: only 10 in stock")),
           "record_dead_letter");
  succeeds(j->record_dead_letter(letter("msg-2", "stock/s2", "rejected: only 10 in stock")),
           "record_dead_letter");
  auto letters = value_of(j->dead_letters(0, all), "dead_letters");
  REQUIRE(letters.size() == 4);
  CHECK(letters[0].recorded_at_ms == start_ms);  // the first record stays as it was
  CHECK(letters[1].reason == "rejected: closed");
  CHECK(letters[2].destination == "stock/s3");
  CHECK(letters[3].message_id == "msg-2");
}

LONGHAUL_CONTRACT_CASE("a dead letter without message id or destination is refused with "
                       "invalid_argument") {
  dead_letter_record no_id;
  no_id.destination = "mailer/1";
  CHECK(persistence_code(j->record_dead_letter(no_id)) == errc::invalid_argument);
  dead_letter_record no_destination;
  no_destination.message_id = "msg-1";
  CHECK(persistence_code(j->record_dead_letter(no_destination)) == errc::invalid_argument);
  CHECK(value_of(j->dead_letters(0, all), "dead_letters").empty());
}

// --- processed message ids -------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("a processed message id is recorded, and a second write with it for "
                       "the same id fails with duplicate_message and stores nothing of it") {
  auto first = write_for("account-1", 1, {event("money.deposited")});
  first.processed_message_id = "cmd-17";
  store(std::move(first));
  CHECK(is_processed("account-1", "cmd-17"));
  CHECK_FALSE(is_processed("account-1", "cmd-18"));
  CHECK_FALSE(is_processed("account-2", "cmd-17"));
  auto second = write_for("account-1", 2, {event("money.deposited")});
  second.timers_to_set.push_back(timer("statement", 1000));
  second.outbox.push_back(message("receipt-1", "mailer/1"));
  second.processed_message_id = "cmd-17";
  auto err = refuse(std::move(second));
  CHECK(persistence_code(err) == errc::duplicate_message);
  CHECK(is_rejection(err));
  CHECK(highest("account-1") == 1);
  CHECK(timers_of("account-1").empty());
  CHECK(outbox_pending().empty());
  // The duplicate did not spoil the id: the next write at 2 succeeds.
  auto third = write_for("account-1", 2, {event("money.deposited")});
  third.processed_message_id = "cmd-18";
  CHECK(store(std::move(third)).highest_seq == 2);
  CHECK(is_processed("account-1", "cmd-18"));
}

LONGHAUL_CONTRACT_CASE("the same processed message id for a different persistence id is "
                       "accepted") {
  auto a = write_for("account-a", 1, {event("money.deposited")});
  a.processed_message_id = "transfer-5";
  store(std::move(a));
  auto b = write_for("account-b", 1, {event("money.withdrawn")});
  b.processed_message_id = "transfer-5";
  store(std::move(b));
  CHECK(is_processed("account-a", "transfer-5"));
  CHECK(is_processed("account-b", "transfer-5"));
}

LONGHAUL_CONTRACT_CASE("a processed message recorded with a rejection reads back with its "
                       "text") {
  auto rejected = write_for("stock-1", 1);
  rejected.processed_message_id = "reserve-1";
  rejected.processed_rejection = "rejected: only 10 in stock";
  CHECK(store(std::move(rejected)).highest_seq == 0);
  advance_clock(500);
  auto accepted = write_for("stock-1", 1, {event("stock.reserved")});
  accepted.processed_message_id = "reserve-2";
  store(std::move(accepted));
  auto first = processed_outcome("stock-1", "reserve-1");
  REQUIRE(first);
  CHECK(first->message_id == "reserve-1");
  CHECK(first->rejection == std::optional<std::string>{"rejected: only 10 in stock"});
  CHECK(first->processed_at_ms == start_ms);
  auto second = processed_outcome("stock-1", "reserve-2");
  REQUIRE(second);
  CHECK(second->rejection == std::nullopt);
  CHECK(second->processed_at_ms == start_ms + 500);
  CHECK_FALSE(processed_outcome("stock-1", "reserve-3"));
  CHECK_FALSE(processed_outcome("stock-2", "reserve-1"));
  CHECK(is_processed("stock-1", "reserve-1"));
}

LONGHAUL_CONTRACT_CASE("a redelivered message id is refused as duplicate_message whether it "
                       "was accepted or rejected, and its first outcome stays") {
  auto accepted = write_for("stock-1", 1, {event("stock.reserved")});
  accepted.processed_message_id = "reserve-1";
  store(std::move(accepted));
  auto rejected = write_for("stock-1", 2);
  rejected.processed_message_id = "reserve-2";
  rejected.processed_rejection = "rejected: only 10 in stock";
  store(std::move(rejected));
  // Redeliveries decided differently this time: neither is stored, neither outcome changes.
  auto again_accepted = write_for("stock-1", 2);
  again_accepted.processed_message_id = "reserve-1";
  again_accepted.processed_rejection = "rejected: changed my mind";
  auto again_rejected = write_for("stock-1", 2, {event("stock.reserved")});
  again_rejected.processed_message_id = "reserve-2";
  for (auto* w : {&again_accepted, &again_rejected}) {
    auto err = refuse(*w);
    CHECK(persistence_code(err) == errc::duplicate_message);
    CHECK(is_rejection(err));
  }
  CHECK(highest("stock-1") == 1);
  auto first = processed_outcome("stock-1", "reserve-1");
  REQUIRE(first);
  CHECK(first->rejection == std::nullopt);
  auto second = processed_outcome("stock-1", "reserve-2");
  REQUIRE(second);
  CHECK(second->rejection == std::optional<std::string>{"rejected: only 10 in stock"});
}

LONGHAUL_CONTRACT_CASE("a processed rejection without a processed message id is refused with "
                       "invalid_argument") {
  auto w = write_for("stock-1", 1, {event("stock.reserved")});
  w.processed_rejection = "rejected: only 10 in stock";
  auto err = refuse(std::move(w));
  CHECK(persistence_code(err) == errc::invalid_argument);
  CHECK(highest("stock-1") == 0);
}

// --- bad input ---------------------------------------------------------------------------------

/// One row of a bad-input table: what `damage` breaks in a good write, and the refusal.
struct bad_write {
  const char* what;
  std::function<void(atomic_write&)> damage;
  persistence_errc expected;
};

LONGHAUL_CONTRACT_CASE("bad input is refused with its error code as a rejection, through the "
                       "callback exactly once, and nothing is stored") {
  const write_limits limits;
  // A write that would store an event, a timer, an outbox message and a processed id;
  // each row breaks one part of it.
  auto good = [] {
    auto w = write_for("bad-input", 1, {event("thing.happened")});
    w.timers_to_set.push_back(timer("reminder", start_ms + 100));
    w.outbox.push_back(message("out-1", "mailer/1"));
    w.processed_message_id = "cmd-1";
    return w;
  };
  const std::vector<bad_write> table{
    {"empty persistence id", [](atomic_write& w) { w.persistence_id.clear(); },
     errc::invalid_argument},
    {"oversized persistence id",
     [&](atomic_write& w) { w.persistence_id = std::string(limits.max_id_bytes + 1, 'x'); },
     errc::invalid_argument},
    {"expected sequence number 0", [](atomic_write& w) { w.expected_seq = 0; },
     errc::invalid_argument},
    {"empty event type", [](atomic_write& w) { w.events[0].type.clear(); },
     errc::invalid_argument},
    {"schema version 0", [](atomic_write& w) { w.events[0].schema_version = 0; },
     errc::invalid_argument},
    {"invalid JSON payload", [](atomic_write& w) { w.events[0].payload_json = "{\"a\":"; },
     errc::invalid_payload},
    {"two JSON values as one payload", [](atomic_write& w) { w.events[0].payload_json = "1 2"; },
     errc::invalid_payload},
    {"oversized payload",
     [&](atomic_write& w) {
       w.events[0].payload_json = '"' + std::string(limits.max_payload_bytes - 1, 'a') + '"';
     },
     errc::payload_too_large},
    {"empty write",
     [](atomic_write& w) {
       w.events.clear();
       w.timers_to_set.clear();
       w.outbox.clear();
       w.processed_message_id.reset();
     },
     errc::invalid_argument},
    {"timer due before the epoch", [](atomic_write& w) { w.timers_to_set[0].due_ms = -1; },
     errc::invalid_argument},
    {"empty timer name", [](atomic_write& w) { w.timers_to_set[0].name.clear(); },
     errc::invalid_argument},
    {"invalid timer payload", [](atomic_write& w) { w.timers_to_set[0].payload_json = "nope"; },
     errc::invalid_payload},
    {"empty cancelled timer name",
     [](atomic_write& w) { w.timers_to_cancel.push_back(timer_cancel{""}); },
     errc::invalid_argument},
    {"empty outbox message id", [](atomic_write& w) { w.outbox[0].message_id.clear(); },
     errc::invalid_argument},
    {"invalid outbox payload", [](atomic_write& w) { w.outbox[0].payload_json = "{]"; },
     errc::invalid_payload},
    {"empty processed message id", [](atomic_write& w) { w.processed_message_id = ""; },
     errc::invalid_argument},
  };
  for (const auto& r : table) {
    CAPTURE(r.what);
    auto w = good();
    r.damage(w);
    auto err = refuse(w);
    CHECK(persistence_code(err) == r.expected);
    CHECK(is_rejection(err));
    // Through the asynchronous interface: the callback runs exactly once with the refusal.
    std::mutex mtx;
    int calls = 0;
    persistence_errc seen = errc::ok;
    j->write(std::move(w), [&](caf::expected<write_result> res) {
      std::lock_guard<std::mutex> guard{mtx};
      ++calls;
      seen = res ? errc::ok : persistence_code(res.error());
    });
    j->flush();
    std::lock_guard<std::mutex> guard{mtx};
    CHECK(calls == 1);
    CHECK(seen == r.expected);
  }
  require_nothing_stored("bad-input", "cmd-1");
  // The good write itself is accepted (the rows were refused for their damage only).
  CHECK(store(good()).highest_seq == 1);
}

LONGHAUL_CONTRACT_CASE("a write marked payloads_serialized is still refused for a string that "
                       "is not UTF-8 (invalid_payload) or a payload over the limit, in its "
                       "events, timers and outbox, and stores well-formed UTF-8 as it is") {
  const write_limits limits;
  auto good = [] {
    auto w = write_for("serialized", 1,
                       {event("thing.happened", "{\"s\":\"caf\\u00e9 \xc3\xa9\"}")});
    w.timers_to_set.push_back(timer("reminder", start_ms + 100));
    w.outbox.push_back(message("out-1", "mailer/1"));
    w.processed_message_id = "cmd-1";
    w.payloads_serialized = true;
    return w;
  };
  const std::vector<bad_write> table{
    {"a stray continuation byte in an event",
     [](atomic_write& w) { w.events[0].payload_json = "{\"s\":\"a\x80" "b\"}"; },
     errc::invalid_payload},
    {"an overlong '/' in an event",
     [](atomic_write& w) { w.events[0].payload_json = "{\"s\":\"\xc0\xaf\"}"; },
     errc::invalid_payload},
    {"a surrogate in a timer",
     [](atomic_write& w) { w.timers_to_set[0].payload_json = "\"\xed\xa0\x80\""; },
     errc::invalid_payload},
    {"a truncated sequence at the end of an outbox payload",
     [](atomic_write& w) { w.outbox[0].payload_json = "\"\xe2\x82"; },
     errc::invalid_payload},
    {"a code point above U+10FFFF in an outbox payload",
     [](atomic_write& w) { w.outbox[0].payload_json = "\"\xf4\x90\x80\x80\""; },
     errc::invalid_payload},
    {"an oversized event payload",
     [&](atomic_write& w) {
       w.events[0].payload_json = '"' + std::string(limits.max_payload_bytes - 1, 'a') + '"';
     },
     errc::payload_too_large},
  };
  for (const auto& r : table) {
    CAPTURE(r.what);
    auto w = good();
    r.damage(w);
    auto err = refuse(std::move(w));
    CHECK(persistence_code(err) == r.expected);
    CHECK(is_rejection(err));
  }
  require_nothing_stored("serialized", "cmd-1");
  CHECK(store(good()).highest_seq == 1);
  auto events = replay("serialized").events;
  REQUIRE(events.size() == 1);
  CHECK(events[0].payload_json == "{\"s\":\"caf\\u00e9 \xc3\xa9\"}");
}

LONGHAUL_CONTRACT_CASE("a persistence id and a payload exactly at their limits are accepted") {
  const write_limits limits;
  std::string id(limits.max_id_bytes, 'i');
  auto payload = '"' + std::string(limits.max_payload_bytes - 2, 'p') + '"';
  auto result = append(id, 1, {event("big.one", payload)});
  CHECK(result.highest_seq == 1);
  auto events = replay(id).events;
  REQUIRE(events.size() == 1);
  CHECK(events[0].persistence_id == id);
  CHECK(events[0].payload_json.size() == limits.max_payload_bytes);
}

// --- concurrency -----------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("8 threads appending 200 events each through write() are all "
                       "acknowledged and stored after flush") {
  constexpr int threads = 8;
  constexpr int per_thread = 200;
  std::atomic<int> acknowledged{0};
  std::atomic<int> failed{0};
  std::atomic<int> out_of_order{0};
  // Callbacks of one id must arrive in the order the writes were handed over (JOURNAL.md I4).
  std::vector<std::atomic<sequence_nr>> last_acked(threads);
  for (auto& x : last_acked)
    x = 0;
  std::mutex first_error_mtx;
  std::string first_error;
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t)
    writers.emplace_back([&, t] {
      auto id = "concurrent-" + std::to_string(t);
      for (int i = 1; i <= per_thread; ++i)
        j->write(write_for(id, static_cast<sequence_nr>(i),
                           {event("tick", R"({"i":)" + std::to_string(i) + "}")}),
                 [&, t](caf::expected<write_result> r) {
                   if (r) {
                     ++acknowledged;
                     if (last_acked[t].exchange(r->highest_seq) + 1 != r->highest_seq)
                       ++out_of_order;
                     return;
                   }
                   ++failed;
                   std::lock_guard<std::mutex> guard{first_error_mtx};
                   if (first_error.empty())
                     first_error = describe(r.error());
                 });
    });
  for (auto& w : writers)
    w.join();
  j->flush();
  INFO("first error: " << first_error);
  CHECK(failed.load() == 0);
  CHECK(acknowledged.load() == threads * per_thread);
  CHECK(out_of_order.load() == 0);
  for (int t = 0; t < threads; ++t) {
    auto id = "concurrent-" + std::to_string(t);
    CAPTURE(id);
    auto result = replay(id);
    CHECK(result.highest_seq == per_thread);
    CHECK(seqs(result.events) == range(1, per_thread));
    if (result.events.size() == per_thread)
      CHECK(result.events.back().payload_json == R"({"i":200})");
  }
  auto everything = read_all();
  CHECK(everything.size() == threads * per_thread);
  for (std::size_t i = 1; i < everything.size(); ++i)
    if (everything[i].position <= everything[i - 1].position)
      FAIL("positions not strictly increasing at index " << i);
}

// --- readable errors -------------------------------------------------------------------------

LONGHAUL_CONTRACT_CASE("a sequence_conflict error names the expected and the highest sequence "
                       "number") {
  append_singly("acct-42", 3);
  auto text = describe(refuse(write_for("acct-42", 17, {event("late")})));
  CAPTURE(text);
  CHECK(text.find("sequence_conflict") != std::string::npos);
  CHECK(text.find("17") != std::string::npos);
  CHECK(text.find('3') != std::string::npos);
}

LONGHAUL_CONTRACT_CASE("a duplicate_message error names the message id") {
  auto w = write_for("acct-43", 1, {event("paid")});
  w.processed_message_id = "payment-request-991";
  store(w);
  w.expected_seq = 2;
  auto text = describe(refuse(std::move(w)));
  CAPTURE(text);
  CHECK(text.find("duplicate_message") != std::string::npos);
  CHECK(text.find("payment-request-991") != std::string::npos);
}

LONGHAUL_CONTRACT_CASE("a bad input error names what is wrong") {
  auto bad_type = write_for("acct-44", 1, {event("")});
  auto text = describe(refuse(std::move(bad_type)));
  CAPTURE(text);
  CHECK(text.find("invalid_argument") != std::string::npos);
  CHECK(text.find("acct-44") != std::string::npos);
  auto bad_json = write_for("acct-44", 1, {event("order.placed", "{oops")});
  auto json_text = describe(refuse(std::move(bad_json)));
  CAPTURE(json_text);
  CHECK(json_text.find("order.placed") != std::string::npos);
}

} // namespace longhaul::persistence::contract
