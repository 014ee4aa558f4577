// Claims of actors/outbox_dispatcher_actor.cpp about its deliveries: each is an
// asynchronous message with a number, answered by a delivery_answer naming that number;
// an answer for a number that is no longer awaited changes nothing; and a delivery routed
// to an instance actor that terminated (instance_down_atom from the supervisor) is sent
// again at the next poll, not after the 60 s delivery timeout.
//
// The dispatcher runs on CAF's test coordinator against a stand-in supervisor that
// records what it is sent and answers only when the test says so.
#include "actors/actor_error.hpp"
#include "actors/actors_protocol.hpp"
#include "actors/outbox_dispatcher_actor.hpp"
#include "persistence/memory_journal.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/stateful_actor.hpp>

#include <catch2/catch.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/null_sink.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace longhaul;
using namespace std::chrono_literals;

struct recorder_state {
  std::string role;
  std::vector<actors::command_envelope> received;
};

/// Stands in for the supervisor: keeps every command it is sent, answers none. (It takes
/// an argument because CAF 0.17 spawning a function without one binds a reference to a
/// null pointer, which UBSan reports.)
caf::behavior recorder(caf::stateful_actor<recorder_state>* self, std::string role) {
  self->state.role = std::move(role);
  return {[self](actors::command_envelope& cmd) { self->state.received.push_back(cmd); }};
}

struct dispatcher_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<persistence::memory_journal> journal =
    std::make_shared<persistence::memory_journal>(persistence::memory_journal_config{});
  caf::actor supervisor;
  caf::actor dispatcher;

  dispatcher_fixture() {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
  }

  ~dispatcher_fixture() {
    caf::anon_send_exit(dispatcher, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(supervisor, caf::exit_reason::user_shutdown);
    sched->run();
  }

  /// Stores one outbox message for `destination` ("type/id"), as a sender's write would.
  void queue_message(const std::string& message_id, const std::string& destination) {
    persistence::atomic_write w;
    w.persistence_id = "sender/s1";
    w.expected_seq = 1;
    w.outbox.push_back({message_id, destination,
                        R"({"name":"deposit","payload":{"amount":5}})"});
    REQUIRE(journal->write_and_wait(std::move(w)));
  }

  void start() {
    auto ctx = std::make_shared<actors::entity_context>();
    ctx->journal = journal;
    ctx->log = std::make_shared<spdlog::logger>(
      "outbox-test", std::make_shared<spdlog::sinks::null_sink_mt>());
    ctx->time = std::make_shared<actors::virtual_clock>();
    supervisor = sys->spawn(recorder, std::string{"supervisor"});
    dispatcher = sys->spawn(actors::outbox_dispatcher_actor, ctx,
                            caf::actor_cast<caf::actor_addr>(supervisor),
                            actors::subscription_table{});
    sched->run();
  }

  /// Queues m-1 for account/a1 and m-2 for account/b2, starts, and returns their deliveries.
  std::pair<actors::command_envelope, actors::command_envelope> start_with_two() {
    queue_message("m-1", "account/a1");
    queue_message("m-2", "account/b2");
    start();
    REQUIRE(received().size() == 2);
    REQUIRE(received()[0].entity_id == "a1");
    REQUIRE(received()[1].entity_id == "b2");
    return {received()[0], received()[1]};
  }

  std::vector<actors::command_envelope>& received() {
    return caf::actor_cast<caf::stateful_actor<recorder_state>*>(supervisor)->state.received;
  }

  void answer(std::uint64_t delivery, caf::expected<actors::command_reply> outcome) {
    caf::anon_send(dispatcher, actors::delivery_answer{delivery, std::move(outcome)});
    sched->run();
  }

  /// Moves the test clock on in steps (polls and sweeps are delayed messages).
  void advance(std::chrono::milliseconds total) {
    for (auto t = 0ms; t < total; t += 100ms) {
      sched->advance_time(100ms);
      sched->run();
    }
  }

  std::size_t outbox_rows() {
    auto rows = journal->outbox_pending(0, 100);
    REQUIRE(rows);
    return rows->size();
  }
};

}  // namespace

TEST_CASE("an outbox delivery is a numbered message that only the answer naming its number "
          "completes") {
  dispatcher_fixture f;
  f.queue_message("m-1", "account/a1");
  f.start();
  REQUIRE(f.received().size() == 1);
  auto first = f.received()[0];
  CHECK(first.entity_type == "account");
  CHECK(first.entity_id == "a1");
  CHECK(first.message_id == "m-1");
  CHECK(first.delivery != 0);
  // An answer for another number is ignored: the row stays until its own answer.
  f.answer(first.delivery + 1000, actors::command_reply{});
  f.advance(3s);
  CHECK(f.received().size() == 1);
  CHECK(f.outbox_rows() == 1);
  f.answer(first.delivery, actors::command_reply{});
  f.advance(3s);
  CHECK(f.outbox_rows() == 0);
  CHECK(f.received().size() == 1);  // delivered once
}

TEST_CASE("a delivery routed to an instance actor that terminated is sent again at the next "
          "poll and the first copy's late answer changes nothing") {
  dispatcher_fixture f;
  auto [to_a1, to_b2] = f.start_with_two();
  // The supervisor reports that a1's actor terminated: what was routed to it may be lost.
  caf::anon_send(f.dispatcher, actors::instance_down_atom::value, std::string{"account/a1"});
  f.sched->run();
  f.advance(2s);  // one poll interval (1 s), far below the 60 s delivery timeout
  REQUIRE(f.received().size() == 3);
  auto again = f.received()[2];
  CHECK(again.entity_id == "a1");
  CHECK(again.message_id == "m-1");  // the receiver drops a second copy by this id
  CHECK(again.delivery != to_a1.delivery);
  // b2's delivery was not affected; the first copy's answer comes too late to count.
  f.answer(to_a1.delivery, actors::command_reply{});
  f.answer(to_b2.delivery, actors::command_reply{});
  f.advance(2s);
  CHECK(f.outbox_rows() == 1);  // m-1 waits for the answer to its second copy
  f.answer(again.delivery, actors::command_reply{});
  f.advance(2s);
  CHECK(f.outbox_rows() == 0);
  CHECK(f.received().size() == 3);
}

TEST_CASE("a delivery answered with a permanent error is dead-lettered and one answered with a "
          "retryable error is sent again") {
  dispatcher_fixture f;
  auto [to_a1, to_b2] = f.start_with_two();
  f.answer(to_a1.delivery, actors::make_actor_error(actors::actor_errc::unknown_command,
                                                    "no such command"));
  f.answer(to_b2.delivery, caf::make_error(caf::sec::request_receiver_down));
  f.advance(2s);
  auto dead = f.journal->dead_letters(0, 10);
  REQUIRE(dead);
  REQUIRE(dead->size() == 1);
  CHECK(dead->front().message_id == "m-1");
  REQUIRE(f.received().size() == 3);
  CHECK(f.received()[2].message_id == "m-2");
  f.answer(f.received()[2].delivery, actors::command_reply{});
  f.advance(2s);
  CHECK(f.outbox_rows() == 0);
}
