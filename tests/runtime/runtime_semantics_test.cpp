// Semantic tests of the runtime core in deterministic mode (CAF's test scheduler, virtual
// time, in-memory journal behind the fault-injecting decorator): recovery, ordering, write
// outcomes, incidents, exactly-once delivery, the supervisor, codecs, snapshots, facade.
#include "actors/persistent_entity_actor.hpp"
#include "actors/supervisor_actor.hpp"
#include "tests/runtime/runtime_fixture.hpp"

#include <set>

using namespace semantics;
using longhaul::actors::actor_code;
using longhaul::persistence::persistence_code;

// -- recovery ------------------------------------------------------------------------------

TEST_CASE("the first message to an id loads the newest snapshot and replays only the events after it") {
  bank_runtime b;
  // History written before the runtime starts: three events and two snapshots. The newest
  // snapshot (after event 2) claims a balance the events alone would never give.
  auto& j = *b.storage;
  write_raw_event(j, "account/s1", "account.opened", 1, R"({"owner":"ann"})");
  write_raw_event(j, "account/s1", "account.deposited", 2, R"({"amount":100})");
  write_raw_event(j, "account/s1", "account.deposited", 2, R"({"amount":50})");
  REQUIRE_FALSE(j.save_snapshot({"account/s1", 1, R"({"owner":"ann","balance":7,"deposits":0})", 0}));
  REQUIRE_FALSE(j.save_snapshot({"account/s1", 2, R"({"owner":"ann","balance":1000,"deposits":9})", 0}));
  b.start();

  CHECK(b.balance("s1") == 1050);  // snapshot at 2 (1000) + event 3 (50); events 1-2 skipped
  auto st = b.status("s1");
  CHECK(st.highest_seq == 3);
  CHECK(json_int(st.state_json, "deposits") == 10);
  // Commands after recovery continue the stream.
  CHECK(*b.deposit("s1", 1) == 1051);
  CHECK(b.status("s1").highest_seq == 4);
}

TEST_CASE("after a restart an instance recovers its state and sequence number from the events") {
  bank_runtime b;
  b.start();
  b.open("a1");
  b.deposit_ok("a1", 100);
  b.deposit_ok("a1", 50);
  CHECK(*b.withdraw("a1", 30) == 120);
  b.restart();
  CHECK(b.live() == 0);
  CHECK(b.balance("a1") == 120);
  CHECK(b.status("a1").highest_seq == 4);
}

// An activation for a command presumes a new id: it decides against the initial state
// without reading, and its first write is stored only as a new stream. These check that a
// stored instance is never answered from the presumed state.

TEST_CASE("a decision whose event holds a string that is not UTF-8 is refused with "
          "invalid_payload, stores nothing, and the instance takes its next command") {
  bank_runtime b;
  b.start();
  auto bad = b.rt().ask("account", "u1", bank::open_account{"owner \xff"});
  CHECK(code_of(bad) == "invalid_payload");
  CHECK(text_of(bad).find("account.opened") != std::string::npos);
  CHECK(b.account_events("u1").empty());
  auto good = b.rt().ask("account", "u1", bank::open_account{"caf\xc3\xa9"});
  CHECK(code_of(good) == "ok");
  CHECK(b.account_events("u1") == std::vector<std::string>{"account.opened"});
  b.restart();
  CHECK(b.status("u1").highest_seq == 1);
}

TEST_CASE("a command to a stored instance that is not live is decided against its stored state, though its activation presumes a new id") {
  bank_runtime b;
  b.start();
  b.open("p1");
  b.deposit_ok("p1", 100);
  b.restart();
  // The initial state would accept the deposit and answer 5.
  CHECK(*b.deposit("p1", 5) == 105);
  CHECK(b.status("p1").highest_seq == 3);
  b.restart();
  // The initial state would open the account again.
  auto reopen = b.rt().ask("account", "p1", bank::open_account{"bob"});
  CHECK(code_of(reopen) == "rejected");
  CHECK(text_of(reopen).find("already open") != std::string::npos);
  b.restart();
  // The initial state would refuse this withdrawal.
  CHECK(*b.withdraw("p1", 100) == 5);
  CHECK(b.account_events("p1")
        == std::vector<std::string>{"account.opened", "account.deposited", "account.deposited",
                                    "account.withdrawn"});
  auto st = b.status("p1");
  CHECK(json_int(st.state_json, "balance") == 5);
}

TEST_CASE("a new id's first command is decided and stored without a journal read, while a stored id's recovery reads as before") {
  bank_runtime b;
  b.start();
  b.open("old");
  b.restart();
  // The next read fails. A new id's activation does not read:
  REQUIRE_FALSE(b.faults->fail_next_reads(1));
  b.open("n1");
  CHECK(*b.deposit("n1", 7) == 7);
  // ...so the failure is still armed for the stored id's recovery, which backs off.
  pending_asks asks{b.rt()};
  asks.add("account", "old", bank::deposit{1});
  b.rt().run_pending();
  CHECK(b.status("old").mode == "backoff");
  b.advance(1s);
  auto replies = asks.collect();
  REQUIRE(replies.size() == 1);
  CHECK(reply_int(replies[0]) == 1);
  CHECK(b.account_events("old") == std::vector<std::string>{"account.opened", "account.deposited"});
  CHECK(b.account_events("n1") == std::vector<std::string>{"account.opened", "account.deposited"});

  // A rejection of the initial state is not answered from it: the activation reads
  // first (here it backs off, the read failing), then answers from what is stored.
  REQUIRE_FALSE(b.faults->fail_next_reads(1));
  asks.add("account", "n2", bank::withdraw{1});
  b.rt().run_pending();
  CHECK(b.status("n2").mode == "backoff");
  b.advance(1s);
  replies = asks.collect();
  REQUIRE(replies.size() == 1);
  CHECK(code_of(replies[0]) == "rejected");
  CHECK(text_of(replies[0]).find("insufficient funds") != std::string::npos);
  CHECK(b.account_events("n2").empty());
}

TEST_CASE("commands that arrive during recovery wait and are decided in arrival order against the recovered state") {
  bank_runtime b;
  b.start();
  b.open("r1");
  b.deposit_ok("r1", 100);
  b.restart();
  // The first recovery read fails: the instance backs off and recovers again later. The
  // commands sent meanwhile must wait for that recovery.
  REQUIRE_FALSE(b.faults->fail_next_reads(1));
  pending_asks asks{b.rt()};
  asks.add("account", "r1", bank::withdraw{150});  // more than stored: must be rejected
  asks.add("account", "r1", bank::deposit{10});
  asks.add("account", "r1", bank::withdraw{110});  // exactly the balance after the deposit
  b.rt().run_pending();
  auto st = b.status("r1");
  CHECK(st.mode == "backoff");
  CHECK(st.queued_commands == 3);
  CHECK(b.account_events("r1").size() == 2);

  b.advance(1s);
  auto replies = asks.collect();
  REQUIRE(replies.size() == 3);
  CHECK(code_of(replies[0]) == "rejected");
  CHECK(reply_int(replies[1]) == 110);
  CHECK(replies[1]->highest_seq == 3);
  CHECK(reply_int(replies[2]) == 0);
  CHECK(replies[2]->highest_seq == 4);
  CHECK(b.account_events("r1")
        == std::vector<std::string>{"account.opened", "account.deposited", "account.deposited",
                                    "account.withdrawn"});
}

TEST_CASE("commands that arrive while an append is in flight wait until it is acknowledged and are then handled in order") {
  bank_runtime b;
  b.start();
  b.open("w1");
  b.faults->hold_acknowledgements();
  pending_asks asks{b.rt()};
  asks.add("account", "w1", bank::deposit{100});
  asks.add("account", "w1", bank::withdraw{100});  // only possible after the deposit applied
  asks.add("account", "w1", bank::withdraw{1});    // must see the balance after both
  b.rt().run_pending();

  // The deposit is stored but unacknowledged: nothing else was decided, state unchanged.
  CHECK(b.faults->held_acknowledgements() == 1);
  CHECK(b.account_events("w1") == std::vector<std::string>{"account.opened", "account.deposited"});
  auto st = b.status("w1");
  CHECK(st.mode == "writing");
  CHECK(st.highest_seq == 1);
  CHECK(json_int(st.state_json, "balance") == 0);
  CHECK(st.queued_commands == 3);

  CHECK(b.faults->release_acknowledgements() == 1);
  auto replies = asks.collect();
  REQUIRE(replies.size() == 3);
  CHECK(reply_int(replies[0]) == 100);
  CHECK(replies[0]->highest_seq == 2);
  CHECK(reply_int(replies[1]) == 0);
  CHECK(replies[1]->highest_seq == 3);
  CHECK(code_of(replies[2]) == "rejected");
  CHECK(b.account_events("w1")
        == std::vector<std::string>{"account.opened", "account.deposited", "account.withdrawn"});
}

// -- write outcomes --------------------------------------------------------------------------

TEST_CASE("a domain rejection stores nothing, replies the reason and leaves the actor running with its state") {
  bank_runtime b;
  b.start();
  b.open("d1");
  b.deposit_ok("d1", 100);
  auto r = b.withdraw("d1", 500);
  CHECK(code_of(r) == "rejected");
  CHECK_THAT(text_of(r), Catch::Contains("insufficient funds"));
  CHECK(b.account_events("d1").size() == 2);
  auto st = b.status("d1");
  CHECK(st.mode == "ready");
  CHECK(st.highest_seq == 2);
  CHECK(*b.deposit("d1", 1) == 101);  // at once: no restart, no backoff
}

TEST_CASE("an injected sequence_conflict rejection replies the error, stores nothing, and the next command works with the same state") {
  bank_runtime b;
  b.start();
  b.open("c1");
  b.deposit_ok("c1", 100);
  REQUIRE_FALSE(b.faults->reject_next_writes(1, persistence_errc::sequence_conflict));
  auto r = b.deposit("c1", 50);
  CHECK(code_of(r) == "sequence_conflict");
  CHECK(b.account_events("c1").size() == 2);
  CHECK(b.status("c1").highest_seq == 2);
  CHECK(*b.deposit("c1", 7) == 107);
  CHECK(b.status("c1").mode == "ready");
}

TEST_CASE("a write behind the actor's back (a real sequence conflict) makes the next command see the journal's state") {
  bank_runtime b;
  b.start();
  b.open("c2");
  b.deposit_ok("c2", 100);
  // Another writer appends event 3; the live instance still believes it is at 2.
  write_raw_event(b.journal(), "account/c2", "account.deposited", 2, R"({"amount":1000})");
  auto r = b.deposit("c2", 1);
  CHECK(code_of(r) == "sequence_conflict");
  // Nothing of the conflicting decision was stored; the instance must not stay stale.
  b.advance(1s);
  auto next = b.deposit("c2", 2);
  INFO(text_of(next));
  REQUIRE(next);
  CHECK(*next == 1102);
  CHECK(b.status("c2").highest_seq == 4);
}

TEST_CASE("an injected io_error fails the write: error reply, restart from the journal, next command sees the stored state") {
  bank_runtime b;
  b.start();
  b.open("f1");
  b.deposit_ok("f1", 100);
  REQUIRE_FALSE(b.faults->fail_next_writes(1, persistence_errc::io_error));
  auto r = b.deposit("f1", 50);
  CHECK(code_of(r) == "io_error");
  CHECK(b.status("f1").mode == "backoff");
  b.advance(1s);
  auto st = b.status("f1");
  CHECK(st.mode == "ready");
  CHECK(st.highest_seq == 2);
  CHECK(*b.deposit("f1", 1) == 101);
}

TEST_CASE("a write stored but acknowledged as failed is learned from the journal after the restart") {
  bank_runtime b;
  b.start();
  b.open("f2");
  b.deposit_ok("f2", 100);
  REQUIRE_FALSE(b.faults->fail_next_writes_after_storing(1, persistence_errc::io_error));
  CHECK(code_of(b.deposit("f2", 50)) == "io_error");
  b.advance(1s);
  CHECK(b.balance("f2") == 150);
  CHECK(b.status("f2").highest_seq == 3);
}

TEST_CASE("commands queued behind a failed write are handled after the restart, in order") {
  bank_runtime b;
  b.start();
  b.open("f3");
  REQUIRE_FALSE(b.faults->fail_next_writes(1));
  pending_asks asks{b.rt()};
  asks.add("account", "f3", bank::deposit{100});  // fails
  asks.add("account", "f3", bank::deposit{10});
  asks.add("account", "f3", bank::withdraw{10});
  b.rt().run_pending();
  b.advance(1s);
  auto replies = asks.collect();
  REQUIRE(replies.size() == 3);
  CHECK(code_of(replies[0]) == "io_error");
  CHECK(reply_int(replies[1]) == 10);
  CHECK(reply_int(replies[2]) == 0);
  CHECK(b.account_events("f3")
        == std::vector<std::string>{"account.opened", "account.deposited", "account.withdrawn"});
}

// -- exceptions in decide and incidents ---------------------------------------------------------

TEST_CASE("an exception in decide replies decide_threw with its text and restarts the instance from the journal") {
  bank_runtime b;
  b.start();
  b.open("x1");
  b.deposit_ok("x1", 100);
  auto r = b.audit("x1", true);
  CHECK(code_of(r) == "decide_threw");
  CHECK_THAT(text_of(r), Catch::Contains("audit system unavailable"));
  CHECK(b.status("x1").mode == "backoff");
  b.advance(1s);
  CHECK(b.status("x1").mode == "ready");
  CHECK(*b.audit("x1", false) == 100);
  CHECK(*b.deposit("x1", 1) == 101);
  CHECK(b.incidents().empty());
}

TEST_CASE("the same command failing max_failures times opens an incident: listed, commands refused, resume accepts them again") {
  bank_runtime b;
  b.account.max_failures = 3;
  b.start();
  b.open("i1");
  b.deposit_ok("i1", 100);
  for (int i = 1; i <= 3; ++i) {
    INFO("failure " << i);
    CHECK(code_of(b.audit("i1", true)) == "decide_threw");
    b.advance(1min);
  }
  auto st = b.status("i1");
  CHECK(st.mode == "incident");
  CHECK_THAT(st.incident, Catch::Contains("audit system unavailable"));
  auto open = b.incidents();
  REQUIRE(open.size() == 1);
  CHECK(open[0].persistence_id == "account/i1");
  CHECK_THAT(open[0].error, Catch::Contains("audit system unavailable"));

  auto refused = b.deposit("i1", 1);
  CHECK(code_of(refused) == "incident");
  CHECK_THAT(text_of(refused), Catch::Contains("account/i1"));
  CHECK(b.account_events("i1").back() == "longhaul.incident_opened");

  auto resumed = b.rt().resume("account", "i1");
  INFO(longhaul::persistence::describe(resumed));
  REQUIRE_FALSE(resumed);
  CHECK(b.status("i1").mode == "ready");
  CHECK(*b.deposit("i1", 1) == 101);
  CHECK(b.incidents().empty());
  CHECK(b.account_events("i1")
        == std::vector<std::string>{"account.opened", "account.deposited",
                                    "longhaul.incident_opened", "longhaul.incident_resolved",
                                    "account.deposited"});
}

TEST_CASE("a command failing fewer than max_failures times opens no incident") {
  bank_runtime b;
  b.account.max_failures = 3;
  b.start();
  b.open("i2");
  for (int i = 0; i < 2; ++i) {
    CHECK(code_of(b.audit("i2", true)) == "decide_threw");
    b.advance(1min);
  }
  CHECK(b.status("i2").mode == "ready");
  CHECK(b.incidents().empty());
  CHECK(*b.deposit("i2", 5) == 5);
}

TEST_CASE("an incident survives a restart of the runtime on the same storage") {
  bank_runtime b;
  b.account.max_failures = 1;
  b.start();
  b.open("i3");
  CHECK(code_of(b.audit("i3", true)) == "decide_threw");
  b.restart();
  REQUIRE(b.incidents().size() == 1);
  CHECK(code_of(b.deposit("i3", 1)) == "incident");
  REQUIRE_FALSE(b.rt().resume("account", "i3"));
  CHECK(*b.deposit("i3", 1) == 1);
}

// -- exactly-once inside one runtime ------------------------------------------------------------

TEST_CASE("a transfer delivers receive_transfer to the target exactly once") {
  bank_runtime b;
  b.start();
  b.open("a1");
  b.deposit_ok("a1", 5000);
  auto r = b.transfer("a1", "a2", 400);
  INFO(text_of(r));
  REQUIRE(r);
  b.advance(5s);  // outbox polls: nothing is delivered twice
  CHECK(b.balance("a2") == 400);
  CHECK(b.balance("a1") == 4600);
  CHECK(b.account_events("a2") == std::vector<std::string>{"account.deposited"});
  CHECK(outbox_of(b.journal()).empty());
  CHECK(dead_letters_of(b.journal()).empty());
}

TEST_CASE("a second delivery of the same message id is acknowledged as duplicate and not applied again") {
  bank_runtime b;
  b.start();
  b.open("m1");
  auto first = b.deliver("m1", "ext-1", bank::deposit{100});
  INFO(text_of(first));
  REQUIRE(first);
  CHECK_FALSE(first->duplicate);
  CHECK(first->highest_seq == 2);
  auto second = b.deliver("m1", "ext-1", bank::deposit{100});
  REQUIRE(second);
  CHECK(second->duplicate);
  CHECK(second->highest_seq == 2);
  CHECK(b.balance("m1") == 100);
  // Another message id is a new command.
  REQUIRE(b.deliver("m1", "ext-2", bank::deposit{100}));
  CHECK(b.balance("m1") == 200);
}

TEST_CASE("a duplicate delivery whose second decision would be rejected is still acknowledged as duplicate") {
  bank_runtime b;
  b.start();
  b.open("m2");
  b.deposit_ok("m2", 100);
  auto first = b.deliver("m2", "ext-w", bank::withdraw{100});
  REQUIRE(first);
  CHECK_FALSE(first->duplicate);
  auto again = b.deliver("m2", "ext-w", bank::withdraw{100});  // balance is 0 now
  INFO(text_of(again));
  REQUIRE(again);
  CHECK(again->duplicate);
  CHECK(b.balance("m2") == 0);
}

TEST_CASE("a redelivered message whose first delivery was rejected is answered with the same rejection") {
  bank_runtime b;
  b.start();
  b.open("m3");
  b.deposit_ok("m3", 100);
  auto first = b.deliver("m3", "ext-r", bank::withdraw{500});
  CHECK(code_of(first) == "rejected");
  CHECK_THAT(text_of(first), Catch::Contains("insufficient funds"));
  // The rejection was consumed with its text: the journal keeps the first answer.
  auto stored = b.journal().processed_outcome("account/m3", "ext-r");
  REQUIRE(stored);
  REQUIRE(stored->has_value());
  CHECK((*stored)->rejection == std::optional<std::string>{text_of(first)});
  b.deposit_ok("m3", 1000);  // a second decision would accept the withdrawal now
  auto again = b.deliver("m3", "ext-r", bank::withdraw{500});
  CHECK(code_of(again) == "rejected");
  CHECK(text_of(again) == text_of(first));
  CHECK(b.balance("m3") == 1100);
  CHECK(b.account_events("m3")
        == std::vector<std::string>{"account.opened", "account.deposited", "account.deposited"});
  // The same after a restart: the answer comes from the journal, not from memory.
  b.restart();
  auto after_restart = b.deliver("m3", "ext-r", bank::withdraw{500});
  CHECK(code_of(after_restart) == "rejected");
  CHECK(text_of(after_restart) == text_of(first));
  CHECK(b.balance("m3") == 1100);
}

TEST_CASE("a redelivered message is answered before the commands queued behind it are decided") {
  bank_runtime b;
  b.start();
  b.open("m4");
  b.deposit_ok("m4", 100);
  auto first = b.deliver("m4", "ext-r", bank::withdraw{500});
  REQUIRE(code_of(first) == "rejected");
  pending_asks asks{b.rt()};
  auto redelivery = longhaul::runtime::envelope("account", "m4", bank::withdraw{500});
  redelivery.message_id = "ext-r";
  asks.add_envelope(redelivery);
  asks.add("account", "m4", bank::deposit{1000});
  asks.add_envelope(redelivery);
  auto replies = asks.collect();
  REQUIRE(replies.size() == 3);
  CHECK(text_of(replies[0]) == text_of(first));
  CHECK(reply_int(replies[1]) == 1100);
  CHECK(text_of(replies[2]) == text_of(first));
  CHECK(b.balance("m4") == 1100);
}

TEST_CASE("a redelivered message whose first outcome cannot be read gets the read's failure and the next redelivery the first answer") {
  bank_runtime b;
  b.start();
  b.open("m5");
  auto first = b.deliver("m5", "ext-r", bank::withdraw{500});
  REQUIRE(code_of(first) == "rejected");
  REQUIRE_FALSE(b.faults->fail_next_reads(1, persistence_errc::io_error));
  auto failed = b.deliver("m5", "ext-r", bank::withdraw{500});
  REQUIRE(code_of(failed) == "io_error");
  CHECK_FALSE(longhaul::actors::is_permanent(failed.error()));  // the outbox delivers again
  CHECK(b.status("m5").mode == "ready");
  auto again = b.deliver("m5", "ext-r", bank::withdraw{500});
  CHECK(text_of(again) == text_of(first));
  b.deposit_ok("m5", 10);
}

TEST_CASE("each account.large_deposit reaches bank::review once per event") {
  bank_runtime b;
  b.start();
  b.open("a1");
  b.deposit_ok("a1", 10000);
  REQUIRE(b.transfer("a1", "a2", 1500));
  REQUIRE(b.transfer("a1", "a3", 999));  // below the threshold: nothing published
  REQUIRE(b.transfer("a1", "a2", 2000));
  b.advance(5s);
  auto review = b.status("all", "review");
  CHECK(review.highest_seq == 2);
  CHECK(json_int(review.state_json, "flagged") == 2);
  CHECK(json_int(review.state_json, "total") == 3500);
  CHECK(outbox_of(b.journal()).empty());
  CHECK(dead_letters_of(b.journal()).empty());
}

TEST_CASE("an outbox row whose removal failed is delivered again after a restart and applied once") {
  bank_runtime b;
  b.start();
  b.open("a1");
  b.deposit_ok("a1", 5000);
  b.faults->fail_next_outbox_removals(1);
  REQUIRE(b.transfer("a1", "a2", 700));
  CHECK(b.balance("a2") == 700);
  CHECK(outbox_of(b.journal()).size() == 1);  // delivered, but still in the outbox
  b.restart();
  b.advance(3s);
  CHECK(outbox_of(b.journal()).empty());
  CHECK(b.balance("a2") == 700);
  CHECK(b.account_events("a2") == std::vector<std::string>{"account.deposited"});
}

TEST_CASE("a published event nobody subscribes to ends up in the dead letters with a reason") {
  bank_runtime b;
  b.subscribe_review = false;
  b.start();
  auto r = b.rt().ask("account", "a9", bank::receive_transfer{"x", 1500});
  REQUIRE(r);
  b.advance(2s);
  auto dead = dead_letters_of(b.journal());
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].destination == "event:account.large_deposit");
  CHECK(dead[0].source_persistence_id == "account/a9");
  CHECK_THAT(dead[0].reason, Catch::Contains("no subscriber") && Catch::Contains("account.large_deposit"));
  CHECK(outbox_of(b.journal()).empty());
}

TEST_CASE("a command sent through the outbox to an unknown entity type ends up in the dead letters with a reason") {
  bank_runtime b;
  b.start();
  auto r = b.rt().ask("forwarder", "f1", forward{"ghost", "g1", 5});
  REQUIRE(r);
  b.advance(2s);
  auto dead = dead_letters_of(b.journal());
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].destination == "ghost/g1");
  CHECK(dead[0].source_persistence_id == "forwarder/f1");
  CHECK_THAT(dead[0].reason, Catch::Contains("unknown_entity_type") && Catch::Contains("ghost"));
  CHECK(outbox_of(b.journal()).empty());
  CHECK(events_of(b.journal(), "ghost/g1").empty());
  // A forward to a known type is delivered, not dead-lettered.
  REQUIRE(b.rt().ask("forwarder", "f1", forward{"account", "g2", 5}));
  b.advance(2s);
  CHECK(b.balance("g2") == 5);
  CHECK(dead_letters_of(b.journal()).size() == 1);
}

TEST_CASE("outbox message ids begin with their wall-clock millisecond in 11 hex digits, end with their source, and never repeat") {
  // The journal keys processed messages by message id first (schema version 3), so that a
  // commit's new keys sit together at the right edge of the index: ids must sort by time.
  auto wall_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
  };
  bank_runtime b;
  b.start();
  auto before = wall_ms();
  for (int i = 0; i < 5; ++i)
    REQUIRE(b.rt().ask("forwarder", "f1", forward{"ghost", "g" + std::to_string(i), 1}));
  auto after = wall_ms();
  b.advance(2s);
  auto dead = dead_letters_of(b.journal());
  REQUIRE(dead.size() == 5);
  std::set<std::string> ids;
  std::string previous;
  for (const auto& d : dead) {
    const auto& id = d.message_id;
    INFO(id);
    ids.insert(id);
    REQUIRE(id.size() > 12);
    CHECK(id.find_first_not_of("0123456789abcdef") == 11);
    CHECK(id[11] == '-');
    auto ms = std::stoll(id.substr(0, 11), nullptr, 16);
    CHECK(ms >= before);
    CHECK(ms <= after);
    CHECK_THAT(id, Catch::EndsWith("#forwarder/f1"));
    CHECK(id.substr(0, 11) >= previous);
    previous = id.substr(0, 11);
  }
  CHECK(ids.size() == 5);
}

// -- the supervisor -------------------------------------------------------------------------

TEST_CASE("a command to an unregistered entity type fails with unknown_entity_type and stores nothing") {
  bank_runtime b;
  b.start();
  auto r = b.rt().ask("nope", "x1", bank::deposit{1});
  CHECK(code_of(r) == "unknown_entity_type");
  CHECK_THAT(text_of(r), Catch::Contains("nope"));
  CHECK(code_of(caf::expected<void>{b.rt().send("nope", "x1", bank::deposit{1})}) == "unknown_entity_type");
  // Also when it reaches the supervisor without the facade's check.
  pending_asks asks{b.rt()};
  asks.add("nope", "x1", bank::deposit{1});
  CHECK(code_of(asks.collect().at(0)) == "unknown_entity_type");
  CHECK(*b.journal().highest_seq("nope/x1") == 0);
  CHECK(b.live() == 0);
}

TEST_CASE("an empty id fails with invalid_id and stores nothing") {
  bank_runtime b;
  b.start();
  CHECK(code_of(b.deposit("", 1)) == "invalid_id");
  pending_asks asks{b.rt()};
  asks.add("account", "", bank::deposit{1});
  CHECK(code_of(asks.collect().at(0)) == "invalid_id");
  CHECK(*b.journal().highest_seq("account/") == 0);
  CHECK(b.live() == 0);
}

TEST_CASE("an id longer than max_id_bytes fails with invalid_id naming the limit, one of exactly max_id_bytes works") {
  bank_runtime b;
  b.cfg.max_id_bytes = 40;
  b.start();
  std::string too_long(41, 'x');
  auto r = b.deposit(too_long, 1);
  CHECK(code_of(r) == "invalid_id");
  CHECK_THAT(text_of(r), Catch::Contains("41") && Catch::Contains("40"));
  pending_asks asks{b.rt()};
  asks.add("account", too_long, bank::deposit{1});
  CHECK(code_of(asks.collect().at(0)) == "invalid_id");
  CHECK(*b.journal().highest_seq("account/" + too_long) == 0);
  std::string longest(40, 'y');
  CHECK(*b.deposit(longest, 3) == 3);
}

TEST_CASE("an idle instance is passivated after the idle timeout and the next command re-activates it with its state") {
  bank_runtime b;
  b.cfg.passivate_after = 1s;
  b.start();
  b.open("p1");
  b.deposit_ok("p1", 100);
  CHECK(b.live() == 1);
  b.advance(500ms);
  CHECK(b.live() == 1);  // not idle long enough
  b.advance(2s + 100ms);
  CHECK(b.live() == 0);
  CHECK(b.balance("p1") == 100);
  CHECK(b.live() == 1);
  CHECK(*b.deposit("p1", 1) == 101);
  CHECK(b.status("p1").highest_seq == 3);
}

namespace {

/// Starts `b` passivating after 1 s, stores the account `id` (opened, 100 deposited) and
/// waits until it is passivated.
void store_and_passivate(bank_runtime& b, std::string_view id) {
  b.cfg.passivate_after = 1s;
  b.start();
  b.open(id);
  b.deposit_ok(id, 100);
  b.advance(2s + 100ms);
  REQUIRE(b.live() == 0);
}

}  // namespace

TEST_CASE("an instance the idle check finds busy, or active since the supervisor last routed "
          "to it, is checked again later and passivated once idle for passivate_after") {
  bank_runtime b;
  b.cfg.passivate_after = 1s;  // the supervisor sweeps every 250 ms
  b.start();
  b.open("s1");
  b.faults->hold_acknowledgements();
  pending_asks asks{b.rt()};
  asks.add("account", "s1", bank::deposit{5});
  b.rt().run_pending();
  REQUIRE(b.faults->held_acknowledgements() == 1);
  b.advance(3400ms);  // checked at 1 s, 2 s and 3 s: its write is in flight each time
  CHECK(b.live() == 1);
  CHECK(b.faults->release_acknowledgements() == 1);  // its last activity: 3.4 s
  auto replies = asks.collect();
  REQUIRE(replies.size() == 1);
  CHECK(reply_int(replies[0]) == 5);
  b.advance(1100ms);  // checked at 4 s, idle for only 0.6 s: it stays
  CHECK(b.live() == 1);
  b.advance(1s);  // checked at 5 s, idle for 1.6 s: passivated
  CHECK(b.live() == 0);
  CHECK(b.balance("s1") == 5);
}

TEST_CASE("a command re-activating a passivated stored instance recovers at once, without first trying a write as a new id") {
  bank_runtime b;
  store_and_passivate(b, "p3");
  b.open("q3");  // only opened: one stored write
  b.advance(2s + 100ms);
  REQUIRE(b.live() == 0);
  auto writes = b.faults->writes_seen();
  CHECK(*b.deposit("p3", 1) == 101);
  CHECK(*b.deposit("q3", 2) == 2);
  CHECK(b.faults->writes_seen() == writes + 2);  // no refused write before either
  CHECK(b.account_events("p3")
        == std::vector<std::string>{"account.opened", "account.deposited", "account.deposited"});
  // After a restart the supervisor remembers nothing: the first command tries the write
  // as a new id, which the journal refuses, then recovers and is decided again.
  b.restart();
  writes = b.faults->writes_seen();
  CHECK(*b.deposit("p3", 1) == 102);
  CHECK(b.faults->writes_seen() == writes + 2);
  CHECK(b.status("p3").highest_seq == 4);
}

TEST_CASE("with remembered_streams=0 a re-activated stored instance is still decided against its stored state") {
  bank_runtime b;
  REQUIRE_FALSE(longhaul::set_option(b.cfg, "remembered_streams", "0"));
  store_and_passivate(b, "p4");
  auto writes = b.faults->writes_seen();
  CHECK(*b.deposit("p4", 1) == 101);
  CHECK(b.faults->writes_seen() == writes + 2);  // the refused write as a new id, then this
  CHECK(b.status("p4").highest_seq == 3);
}

TEST_CASE("an instance's command queue keeps arrival order, takes items back at the front, "
          "and frees a long queue without recursion") {
  longhaul::actors::drainable_fifo<std::string> q;
  CHECK(q.empty());
  q.push_back("b");
  q.push_back("c");
  q.push_front("a");
  CHECK(q.size() == 3);
  std::vector<std::string> seen;
  for (auto& item : q)
    seen.push_back(item);
  CHECK(seen == std::vector<std::string>{"a", "b", "c"});
  CHECK(q.pop_front() == "a");
  CHECK(q.pop_front() == "b");
  q.push_back("d");
  CHECK(q.pop_front() == "c");
  CHECK(q.pop_front() == "d");
  CHECK(q.empty());
  q.push_front("e");  // into an emptied queue: it is also the back
  q.push_back("f");
  CHECK(q.pop_front() == "e");
  CHECK(q.pop_front() == "f");
  for (int i = 0; i < 1'000'000; ++i)
    q.push_back("item");
  CHECK(q.size() == 1'000'000);
  q.clear();
  CHECK(q.empty());
  CHECK(q.size() == 0);
  for (int i = 0; i < 1'000'000; ++i)
    q.push_back("item");
  // The destructor frees the rest.
}

TEST_CASE("the supervisor remembers the newest passivated ids up to its capacity") {
  longhaul::actors::remembered_streams none{0};
  none.remember("a/1");
  CHECK_FALSE(none.contains("a/1"));
  longhaul::actors::remembered_streams r{3};
  for (const auto* pid : {"a/1", "a/2", "a/2", "a/3"})
    r.remember(pid);
  CHECK(r.size() == 3);
  CHECK(r.contains("a/1"));
  CHECK_FALSE(r.contains("a/4"));
  r.remember("a/4");  // forgets the oldest
  CHECK(r.size() == 3);
  CHECK_FALSE(r.contains("a/1"));
  CHECK(r.contains("a/2"));
  CHECK(r.contains("a/4"));
  r.remember("a/5");
  r.remember("a/6");
  CHECK(r.size() == 3);
  CHECK_FALSE(r.contains("a/3"));
  CHECK(r.contains("a/5"));
  CHECK(r.contains("a/6"));
}

TEST_CASE("an instance that keeps receiving commands is not passivated") {
  bank_runtime b;
  b.cfg.passivate_after = 1s;
  b.start();
  b.open("p2");
  for (int i = 0; i < 10; ++i) {
    b.advance(600ms);
    b.deposit_ok("p2", 1);
  }
  CHECK(b.live() == 1);
  CHECK(b.status("p2").highest_seq == 11);
}

TEST_CASE("with max_concurrent_recoveries=1 many instances recovering at once all recover their own state") {
  bank_runtime b;
  b.cfg.max_concurrent_recoveries = 1;
  constexpr int count = 25;
  for (int i = 0; i < count; ++i) {
    auto pid = "account/k" + std::to_string(i);
    write_raw_event(*b.storage, pid, "account.opened", 1, R"({"owner":"ann"})");
    write_raw_event(*b.storage, pid, "account.deposited", 2,
                    R"({"amount":)" + std::to_string(10 * i + 1) + "}");
  }
  b.start();
  pending_asks asks{b.rt()};
  for (int i = 0; i < count; ++i) {
    asks.add("account", "k" + std::to_string(i), bank::deposit{1});
    asks.add("account", "k" + std::to_string(i), bank::get_balance{});
  }
  auto replies = asks.collect();
  REQUIRE(replies.size() == 2 * count);
  for (int i = 0; i < count; ++i) {
    INFO("instance k" << i);
    CHECK(reply_int(replies[2 * i]) == 10 * i + 2);
    CHECK(replies[2 * i]->highest_seq == 3);
    CHECK(reply_int(replies[2 * i + 1]) == 10 * i + 2);
  }
  CHECK(b.live() == static_cast<std::uint64_t>(count));
}

namespace {

struct ping {
  static constexpr auto command_name = "ping";
};
BOOST_DESCRIBE_STRUCT(ping, (), ())

struct pinged {
  static constexpr auto event_name = "fragile.pinged";
  static constexpr std::uint32_t schema_version = 1;
};
BOOST_DESCRIBE_STRUCT(pinged, (), ())

struct fragile_state {
  std::int64_t pings = 0;
};
BOOST_DESCRIBE_STRUCT(fragile_state, (), (pings))

/// An entity type with a bug that is not a std::exception: recovering a stored event
/// throws an int, which ends its actor instead of failing the instance. What matters
/// here is what the supervisor does when an activation dies in the middle of recovery.
struct fragile {
  static constexpr auto type_name = "fragile";
  using state = fragile_state;
  using command = std::variant<ping>;
  using event = std::variant<pinged>;
  static longhaul::decision<event> decide(const state&, const command&) {
    return longhaul::decision<event>{pinged{}};
  }
  static void apply(state&, const event&) { throw 42; }
};

/// A bank runtime that also registers `fragile`, with one recovery at a time.
void with_fragile(bank_runtime& b) {
  b.cfg.max_concurrent_recoveries = 1;
  b.register_more = [](longhaul::runtime& rt) { rt.register_entity<fragile>(); };
}

void store_ping(bank_runtime& b, const std::string& id) {
  write_raw_event(b.journal(), "fragile/" + id, "fragile.pinged", 1, "{}");
}

}  // namespace

TEST_CASE("instances that die while recovering give their recovery permits back") {
  bank_runtime b;
  with_fragile(b);
  b.start();
  for (const auto* id : {"f1", "f2", "f3"}) {
    INFO("fragile/" << id);
    store_ping(b, id);
    // Spawned with the only permit, then killed by apply while replaying its event.
    // Its caller is answered at once, not at its timeout (here by CAF: the activation
    // died recovering in its first step, before it took the command from its mailbox).
    auto r = b.rt().ask("fragile", id, ping{});
    INFO(text_of(r));
    CHECK_FALSE(r);
    CHECK(code_of(r) != "timeout");
    CHECK(b.live() == 0);  // the dead activation is forgotten
  }
  // The next command activates a dead instance afresh (and this one dies again).
  auto again = b.rt().ask("fragile", "f1", ping{});
  CHECK_FALSE(again);
  CHECK(code_of(again) != "timeout");
  CHECK(b.live() == 0);
  // A new instance recovers too (an empty history still takes a permit).
  b.open("a1");
  CHECK(*b.deposit("a1", 5) == 5);
}

TEST_CASE("an instance that dies after waiting for a recovery permit passes it on") {
  bank_runtime b;
  with_fragile(b);
  b.start();
  b.open("k1");
  b.open("k2");
  store_ping(b, "f");
  b.restart();
  pending_asks asks{b.rt()};
  asks.add("account", "k1", bank::deposit{1});  // spawned with the permit
  asks.add("fragile", "f", ping{});             // waits, gets it, dies recovering
  asks.add("account", "k2", bank::deposit{2});  // waits behind fragile/f
  auto replies = asks.collect();
  REQUIRE(replies.size() == 3);
  CHECK(reply_int(replies[0]) == 1);
  // The command waited in the activation's queue: it is answered with the reason.
  CHECK(code_of(replies[1]) == "instance_failed");
  CHECK_THAT(text_of(replies[1]), Catch::Contains("'fragile/f'")
                                    && Catch::Contains("not a std::exception")
                                    && Catch::Contains("while recovering"));
  CHECK(reply_int(replies[2]) == 2);
}

// -- codecs and versioning --------------------------------------------------------------------

TEST_CASE("an account.deposited stored at schema version 1 is upcast by the registered upcaster") {
  bank_runtime b;
  b.account.upcast("account.deposited", 1, [](boost::json::value v) {
    return boost::json::value{{"amount", v.at("cents")}};
  });
  b.start();
  write_raw_event(b.journal(), "account/u1", "account.opened", 1, R"({"owner":"ann"})");
  write_raw_event(b.journal(), "account/u1", "account.deposited", 1, R"({"cents":500})");
  CHECK(b.balance("u1") == 500);
  CHECK(*b.deposit("u1", 1) == 501);
  CHECK(b.status("u1").highest_seq == 3);
}

namespace {

/// Stores `type`/`version`/`payload` as event 1 of account/`id`, then checks that this
/// instance is marked failed with a reply naming id, sequence number and event name, and
/// that another instance keeps working.
void check_instance_fails_on(bank_runtime& b, const std::string& id, const std::string& type,
                             std::uint32_t version, const std::string& payload,
                             const std::string& says) {
  write_raw_event(b.journal(), "account/" + id, type, version, payload);
  auto r = b.deposit(id, 1);
  CHECK(code_of(r) == "instance_failed");
  CHECK_THAT(text_of(r), Catch::Contains("account/" + id) && Catch::Contains("event 1")
                           && Catch::Contains(type) && Catch::Contains(says));
  auto st = b.status(id);
  CHECK(st.mode == "failed");
  CHECK_THAT(st.failure, Catch::Contains(type));
  CHECK(code_of(b.deposit(id, 1)) == "instance_failed");  // stays failed
  CHECK(events_of(b.journal(), "account/" + id).size() == 1);  // nothing more stored
  b.open("healthy-" + id);
  CHECK(*b.deposit("healthy-" + id, 5) == 5);
}

}  // namespace

TEST_CASE("an old event without its upcaster marks only that instance failed") {
  bank_runtime b;
  b.start();
  check_instance_fails_on(b, "u2", "account.deposited", 1, R"({"cents":500})",
                          "no upcaster from version 1");
}

TEST_CASE("an unknown stored event name marks only that instance failed") {
  bank_runtime b;
  b.start();
  check_instance_fails_on(b, "u3", "account.frozen", 1, "{}", "unknown event name");
}

TEST_CASE("an undecodable stored payload marks only that instance failed") {
  bank_runtime b;
  b.start();
  check_instance_fails_on(b, "u4", "account.deposited", 2, R"({"amount":"lots"})",
                          "does not decode");
}

TEST_CASE("an event from a newer schema version marks only that instance failed") {
  bank_runtime b;
  b.start();
  check_instance_fails_on(b, "u5", "account.deposited", 3, R"({"amount":1})", "newer version");
}

TEST_CASE("an undecodable snapshot marks the instance failed, naming the snapshot's sequence number") {
  bank_runtime b;
  write_raw_event(*b.storage, "account/u6", "account.opened", 1, R"({"owner":"ann"})");
  REQUIRE_FALSE(b.storage->save_snapshot({"account/u6", 1, R"({"owner":7})", 0}));
  b.start();
  auto r = b.deposit("u6", 1);
  CHECK(code_of(r) == "instance_failed");
  CHECK_THAT(text_of(r), Catch::Contains("account/u6") && Catch::Contains("snapshot"));
  CHECK(b.status("u6").mode == "failed");
}

// -- snapshots ---------------------------------------------------------------------------------

TEST_CASE("a snapshot is saved every snapshot_every events") {
  bank_runtime b;
  b.account.snapshot_every = 3;
  b.start();
  b.open("n1");
  b.deposit_ok("n1", 10);
  CHECK_FALSE(snapshot_of(b.journal(), "account/n1"));
  b.deposit_ok("n1", 20);
  auto snap = snapshot_of(b.journal(), "account/n1");
  REQUIRE(snap);
  CHECK(snap->seq == 3);
  CHECK(json_int(snap->state_json, "balance") == 30);
  b.deposit_ok("n1", 1);
  b.deposit_ok("n1", 1);
  CHECK(snapshot_of(b.journal(), "account/n1")->seq == 3);
  b.deposit_ok("n1", 1);
  snap = snapshot_of(b.journal(), "account/n1");
  CHECK(snap->seq == 6);
  CHECK(json_int(snap->state_json, "balance") == 33);
}

TEST_CASE("the runtime's snapshot_every applies to entity types that set none") {
  bank_runtime b;
  b.cfg.snapshot_every = 2;
  b.start();
  b.open("n2");
  b.deposit_ok("n2", 10);
  auto snap = snapshot_of(b.journal(), "account/n2");
  REQUIRE(snap);
  CHECK(snap->seq == 2);
}

TEST_CASE("get_balance requests a snapshot at the current sequence number") {
  bank_runtime b;
  b.start();
  b.open("n3");
  b.deposit_ok("n3", 10);
  b.deposit_ok("n3", 5);
  CHECK_FALSE(snapshot_of(b.journal(), "account/n3"));
  CHECK(b.balance("n3") == 15);
  auto snap = snapshot_of(b.journal(), "account/n3");
  REQUIRE(snap);
  CHECK(snap->seq == 3);
  CHECK(json_int(snap->state_json, "balance") == 15);
}

TEST_CASE("with delete_events_on_snapshot the covered events are deleted and recovery still yields the state") {
  bank_runtime b;
  b.account.snapshot_every = 2;
  b.account.delete_events_on_snapshot = true;
  b.start();
  b.open("n4");
  b.deposit_ok("n4", 100);
  b.deposit_ok("n4", 50);
  auto left = events_of(b.journal(), "account/n4");
  REQUIRE(left.size() == 1);
  CHECK(left[0].seq == 3);
  b.restart();
  CHECK(b.balance("n4") == 150);
  CHECK(b.status("n4").highest_seq == 3);
  CHECK(*b.deposit("n4", 1) == 151);
}

// -- the facade -----------------------------------------------------------------------------

TEST_CASE("ask, send, status and live_instances before start() fail with not_started") {
  bank_runtime b;
  longhaul::runtime rt{b.cfg};
  rt.register_entity<bank::account>();
  CHECK(code_of(rt.ask("account", "a1", bank::deposit{1})) == "not_started");
  CHECK(code_of(caf::expected<void>{rt.send("account", "a1", bank::deposit{1})}) == "not_started");
  CHECK(code_of(rt.status("account", "a1")) == "not_started");
  CHECK(code_of(rt.live_instances()) == "not_started");
  CHECK_FALSE(rt.running());
}

TEST_CASE("after stop() asks fail with not_started, and stop() is idempotent") {
  bank_runtime b;
  b.start();
  b.open("s1");
  b.rt().stop();
  CHECK_FALSE(b.rt().running());
  CHECK(code_of(b.deposit("s1", 1)) == "not_started");
  CHECK(code_of(b.rt().incidents()) == "not_started");
  b.rt().stop();
  b.rt().stop();
  CHECK(code_of(b.deposit("s1", 1)) == "not_started");
  CHECK(event_names(*b.storage, "account/s1") == std::vector<std::string>{"account.opened"});
}

TEST_CASE("start() fails clearly for a type registered twice or a subscription naming an unknown type") {
  {
    bank_runtime b;
    longhaul::runtime rt{b.cfg};
    rt.register_entity<bank::account>().register_entity<bank::account>();
    auto err = rt.start();
    CHECK(code_of(err) == "invalid_argument");
    CHECK_THAT(longhaul::persistence::describe(err), Catch::Contains("registered twice"));
    CHECK_FALSE(rt.running());
  }
  {
    bank_runtime b;
    b.register_review = false;
    auto err = b.try_start();
    CHECK(code_of(err) == "invalid_argument");
    CHECK_THAT(longhaul::persistence::describe(err), Catch::Contains("review"));
  }
}

TEST_CASE("set_option rejects unknown keys and malformed values with a message naming the key") {
  longhaul::runtime_config cfg;
  auto unknown = longhaul::set_option(cfg, "passivate_after", "10");
  CHECK(code_of(unknown) == "invalid_argument");
  CHECK_THAT(longhaul::persistence::describe(unknown), Catch::Contains("unknown option 'passivate_after'"));

  auto bad_number = longhaul::set_option(cfg, "passivate_after_ms", "ten");
  CHECK(code_of(bad_number) == "invalid_argument");
  CHECK_THAT(longhaul::persistence::describe(bad_number),
             Catch::Contains("passivate_after_ms") && Catch::Contains("'ten'"));

  CHECK(longhaul::set_option(cfg, "max_concurrent_recoveries", "-1"));
  CHECK(longhaul::set_option(cfg, "cache_mb", "12x"));
  CHECK(longhaul::set_option(cfg, "cache_mb", ""));
  CHECK(longhaul::set_option(cfg, "writer_cache_mb", "-8"));

  auto bad_sync = longhaul::set_option(cfg, "sync", "fast");
  CHECK_THAT(longhaul::persistence::describe(bad_sync), Catch::Contains("full, normal or off"));
  CHECK(longhaul::set_option(cfg, "storage", "tape"));
  CHECK(longhaul::set_option(cfg, "log_level", "loud"));
  CHECK(longhaul::set_option(cfg, "database_path", ""));
  auto bad_scheduling = longhaul::set_option(cfg, "scheduling", "round_robin");
  CHECK_THAT(longhaul::persistence::describe(bad_scheduling),
             Catch::Contains("scheduling") && Catch::Contains("sharing or work_stealing"));

  // Good values are applied.
  REQUIRE_FALSE(longhaul::set_option(cfg, "passivate_after_ms", "2500"));
  CHECK(cfg.passivate_after == std::chrono::milliseconds{2500});
  REQUIRE_FALSE(longhaul::set_option(cfg, "storage", "memory"));
  CHECK(cfg.storage == longhaul::storage_kind::memory);
  REQUIRE_FALSE(longhaul::set_option(cfg, "sync", "off"));
  CHECK(cfg.sync == longhaul::persistence::sync_mode::off);
  REQUIRE_FALSE(longhaul::set_option(cfg, "max_id_bytes", "64"));
  CHECK(cfg.max_id_bytes == 64);
  REQUIRE_FALSE(longhaul::set_option(cfg, "writer_cache_mb", "4"));
  CHECK(cfg.writer_cache_mb == 4);
  CHECK(cfg.cache_mb == 64);
  CHECK(cfg.scheduling == longhaul::worker_scheduling::sharing);
  REQUIRE_FALSE(longhaul::set_option(cfg, "scheduling", "work_stealing"));
  CHECK(cfg.scheduling == longhaul::worker_scheduling::work_stealing);
  CHECK_FALSE(cfg.sqlite_memory_status);  // off by default
  REQUIRE_FALSE(longhaul::set_option(cfg, "sqlite_memory_status", "on"));
  CHECK(cfg.sqlite_memory_status);
  auto bad_bool = longhaul::set_option(cfg, "sqlite_memory_status", "sometimes");
  CHECK_THAT(longhaul::persistence::describe(bad_bool),
             Catch::Contains("sqlite_memory_status") && Catch::Contains("true or false"));
  CHECK(cfg.sqlite_memory_status);  // a bad value changes nothing
}
