// Pure tests of the bank entities' decide/apply (no runtime, no actors, no journal), and
// of the typed adapter that encodes their decisions for the journal (runtime/entity.hpp).
#include "tests/runtime/bank_entities.hpp"
#include "runtime/runtime.hpp"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace {

using bank::account;
using longhaul::actors::actor_code;
using longhaul::actors::actor_errc;

account::state open_with(std::int64_t balance, std::string owner = "ann") {
  account::state s;
  s.owner = std::move(owner);
  s.balance = balance;
  return s;
}

template <class T>
const T& only_event(const longhaul::decision<account::event>& d) {
  REQUIRE(d.events().size() == 1);
  REQUIRE(std::holds_alternative<T>(d.events().front()));
  return std::get<T>(d.events().front());
}

std::int64_t reply_of(longhaul::decision<account::event>& d) {
  REQUIRE(d.effects().reply);
  return boost::json::value_to<std::int64_t>(*d.effects().reply);
}

/// The balance in a state, read through the adapter's state codec.
std::int64_t json_balance_of(const longhaul::actors::entity_behavior& behavior,
                             const longhaul::actors::entity_state& state) {
  auto json = behavior.encode_state(state);
  REQUIRE(json);
  return boost::json::value_to<std::int64_t>(boost::json::parse(*json).at("balance"));
}

longhaul::actors::command_envelope envelope_of(std::string name, boost::json::value payload) {
  longhaul::actors::command_envelope env;
  env.entity_type = "account";
  env.entity_id = "a1";
  env.name = std::move(name);
  env.payload = std::move(payload);
  return env;
}

longhaul::persistence::event_record stored(std::string type, std::uint32_t version,
                                           std::string payload) {
  longhaul::persistence::event_record rec;
  rec.persistence_id = "account/a1";
  rec.seq = 7;
  rec.type = std::move(type);
  rec.schema_version = version;
  rec.payload_json = std::move(payload);
  return rec;
}

}  // namespace

TEST_CASE("open_account on a new account emits account.opened with the owner") {
  auto d = account::decide({}, bank::open_account{"ann"});
  CHECK_FALSE(d.rejected());
  CHECK(only_event<bank::account_opened>(d).owner == "ann");
  CHECK_FALSE(d.effects().reply);
  CHECK(d.effects().sends.empty());
  CHECK(d.effects().publishes.empty());
}

TEST_CASE("open_account on an open account is rejected and emits nothing") {
  auto d = account::decide(open_with(0), bank::open_account{"bob"});
  CHECK(d.rejected());
  CHECK(d.rejection_reason() == "account already open");
  CHECK(d.events().empty());
}

TEST_CASE("deposit emits account.deposited and replies the balance after it") {
  auto d = account::decide(open_with(100), bank::deposit{50});
  CHECK(only_event<bank::money_deposited>(d).amount == 50);
  CHECK(reply_of(d) == 150);
  CHECK_FALSE(d.effects().snapshot_requested);
}

TEST_CASE("a deposit that is not positive is rejected with a reason and emits nothing") {
  for (std::int64_t amount : {0, -5}) {
    auto d = account::decide(open_with(100), bank::deposit{amount});
    CHECK(d.rejected());
    CHECK(d.rejection_reason() == "deposit must be positive");
    CHECK(d.events().empty());
    CHECK_FALSE(d.effects().reply);
  }
}

TEST_CASE("withdraw within the balance emits account.withdrawn, beyond it is rejected") {
  auto ok = account::decide(open_with(100), bank::withdraw{100});
  CHECK(only_event<bank::money_withdrawn>(ok).amount == 100);
  CHECK(reply_of(ok) == 0);

  auto too_much = account::decide(open_with(100), bank::withdraw{101});
  CHECK(too_much.rejected());
  CHECK(too_much.rejection_reason() == "insufficient funds");
  CHECK(too_much.events().empty());
}

TEST_CASE("transfer emits a withdrawal and records one receive_transfer send to the target") {
  auto d = account::decide(open_with(5000), bank::transfer{"a2", 2000});
  CHECK(only_event<bank::money_withdrawn>(d).amount == 2000);
  const auto& sends = d.effects().sends;
  REQUIRE(sends.size() == 1);
  CHECK(sends[0].entity_type == "account");
  CHECK(sends[0].entity_id == "a2");
  CHECK(sends[0].name == "receive_transfer");
  CHECK(boost::json::value_to<bank::receive_transfer>(sends[0].payload).amount == 2000);
  CHECK(d.effects().publishes.empty());
}

TEST_CASE("a transfer beyond the balance is rejected and sends nothing") {
  auto d = account::decide(open_with(10), bank::transfer{"a2", 2000});
  CHECK(d.rejected());
  CHECK(d.effects().sends.empty());
  CHECK(d.events().empty());
}

TEST_CASE("receive_transfer of 1000 or more publishes account.large_deposit, less publishes nothing") {
  auto large = account::decide({}, bank::receive_transfer{"a1", 1000});
  CHECK(only_event<bank::money_deposited>(large).amount == 1000);
  const auto& pubs = large.effects().publishes;
  REQUIRE(pubs.size() == 1);
  CHECK(pubs[0].name == "account.large_deposit");
  CHECK(boost::json::value_to<bank::large_deposit_made>(pubs[0].payload).amount == 1000);

  auto small = account::decide({}, bank::receive_transfer{"a1", 999});
  CHECK(only_event<bank::money_deposited>(small).amount == 999);
  CHECK(small.effects().publishes.empty());
}

TEST_CASE("audit with fail=true throws from decide, without it replies the balance and emits nothing") {
  CHECK_THROWS_AS(account::decide(open_with(7), bank::audit{true}), std::runtime_error);
  auto d = account::decide(open_with(7), bank::audit{false});
  CHECK(d.events().empty());
  CHECK(reply_of(d) == 7);
}

TEST_CASE("get_balance replies the balance, emits nothing and requests a snapshot") {
  auto d = account::decide(open_with(42), bank::get_balance{});
  CHECK(d.events().empty());
  CHECK(reply_of(d) == 42);
  CHECK(d.effects().snapshot_requested);
}

TEST_CASE("apply folds events into the state: opened sets the owner, deposits add and count, withdrawals subtract") {
  account::state s;
  account::apply(s, bank::account_opened{"ann"});
  account::apply(s, bank::money_deposited{100});
  account::apply(s, bank::money_deposited{50});
  account::apply(s, bank::money_withdrawn{30});
  CHECK(s.owner == "ann");
  CHECK(s.balance == 120);
  CHECK(s.deposits == 2);
}

TEST_CASE("applying each decision's events yields the balance its reply announced") {
  account::state s;
  std::vector<account::command> script{bank::open_account{"ann"}, bank::deposit{100},
                                       bank::withdraw{40}, bank::deposit{5},
                                       bank::withdraw{65}};
  std::vector<std::int64_t> replies;
  for (const auto& cmd : script) {
    auto d = account::decide(s, cmd);
    REQUIRE_FALSE(d.rejected());
    for (const auto& ev : d.events())
      account::apply(s, ev);
    if (d.effects().reply) {
      replies.push_back(boost::json::value_to<std::int64_t>(*d.effects().reply));
      CHECK(replies.back() == s.balance);
    }
  }
  CHECK(replies == std::vector<std::int64_t>{100, 60, 65, 0});
  // The last withdrawal emptied the account: one more is decided against that.
  CHECK(account::decide(s, bank::withdraw{1}).rejected());
}

TEST_CASE("review flags a large deposit and ignores flag_review") {
  auto d = bank::review::decide({}, bank::large_deposit_made{"a1", 1500});
  REQUIRE(d.events().size() == 1);
  bank::review::state s;
  bank::review::apply(s, d.events().front());
  CHECK(s.flagged == 1);
  CHECK(s.total == 1500);
  CHECK(bank::review::decide(s, bank::flag_review{}).events().empty());
}

// -- the typed adapter (what the persistent actor calls), still without a runtime ------------

TEST_CASE("the adapter encodes events with their stored names, schema versions and the type tag") {
  longhaul::detail::typed_behavior<account> behavior{{}};
  auto state = behavior.initial_state();
  auto d = behavior.decide(*state, envelope_of("deposit", {{"amount", 5}}));
  REQUIRE(d);
  REQUIRE(d->events.size() == 1);
  const auto& ev = d->events[0];
  CHECK(ev.type == "account.deposited");
  CHECK(ev.schema_version == 2);
  CHECK(boost::json::parse(ev.payload_json) == boost::json::parse(R"({"amount":5})"));
  CHECK(ev.tags == std::vector<std::string>{"account"});
  REQUIRE(d->reply);
  CHECK(boost::json::value_to<std::int64_t>(*d->reply) == 5);
  // The decision is applied only when the runtime calls apply (after the journal stored it).
  CHECK(json_balance_of(behavior, *state) == 0);
  d->apply(*state);
  CHECK(json_balance_of(behavior, *state) == 5);
}

TEST_CASE("a typed envelope is decided as the object it was sent as, like its JSON twin, and "
          "becomes that JSON for a receiver that does not decide its type") {
  longhaul::detail::typed_behavior<account> behavior{{}};
  auto state = behavior.initial_state();
  auto typed = longhaul::runtime::envelope("account", "a1", bank::deposit{7});
  CHECK(typed.payload.is_null());
  REQUIRE(typed.typed);
  CHECK(behavior.decides_typed(typed.typed_tag));
  CHECK(behavior.decides_typed(longhaul::actors::typed_tag<bank::withdraw>()));
  CHECK_FALSE(behavior.decides_typed(longhaul::actors::typed_tag<int>()));
  CHECK_FALSE(behavior.decides_typed(nullptr));
  auto from_object = behavior.decide(*state, typed);
  auto from_json = behavior.decide(*state, envelope_of("deposit", {{"amount", 7}}));
  REQUIRE(from_object);
  REQUIRE(from_json);
  REQUIRE(from_object->events.size() == 1);
  REQUIRE(from_json->events.size() == 1);
  CHECK(from_object->events[0].type == from_json->events[0].type);
  CHECK(from_object->events[0].payload_json == from_json->events[0].payload_json);
  CHECK(*from_object->reply == *from_json->reply);
  // A type the adapter does not decide (another entity's command) is still undecodable here.
  auto foreign = longhaul::runtime::envelope("account", "a1", bank::deposit{7});
  foreign.typed_tag = longhaul::actors::typed_tag<int>();
  CHECK(actor_code(behavior.decide(*state, foreign).error()) == actor_errc::undecodable_command);
  // What the persistent actor hands a receiver that does not decide the type: the codec's JSON.
  CHECK(longhaul::actors::payload_of(typed) == boost::json::value_from(bank::deposit{7}));
  longhaul::actors::materialize_payload(typed);
  CHECK_FALSE(typed.typed);
  CHECK(typed.payload == boost::json::value_from(bank::deposit{7}));
  CHECK(behavior.decide(*state, typed));
}

TEST_CASE("the adapter answers unknown, undecodable and rejected commands with distinct errors") {
  longhaul::detail::typed_behavior<account> behavior{{}};
  auto state = behavior.initial_state();

  auto unknown = behavior.decide(*state, envelope_of("close_account", boost::json::object{}));
  REQUIRE_FALSE(unknown);
  CHECK(actor_code(unknown.error()) == actor_errc::unknown_command);
  CHECK_THAT(longhaul::persistence::describe(unknown.error()),
             Catch::Contains("close_account"));

  auto garbled = behavior.decide(*state, envelope_of("deposit", {{"amount", "lots"}}));
  REQUIRE_FALSE(garbled);
  CHECK(actor_code(garbled.error()) == actor_errc::undecodable_command);

  auto rejected = behavior.decide(*state, envelope_of("withdraw", {{"amount", 1}}));
  REQUIRE_FALSE(rejected);
  CHECK(actor_code(rejected.error()) == actor_errc::rejected);
  CHECK_THAT(longhaul::persistence::describe(rejected.error()),
             Catch::Contains("insufficient funds"));
}

TEST_CASE("the adapter upcasts a stored v1 account.deposited through the registered upcaster") {
  longhaul::entity_settings settings;
  settings.upcast("account.deposited", 1, [](boost::json::value v) {
    return boost::json::value{{"amount", v.at("cents")}};
  });
  longhaul::detail::typed_behavior<account> behavior{settings};
  auto state = behavior.initial_state();
  auto err = behavior.apply_stored(*state, stored("account.deposited", 1, R"({"cents":500})"));
  INFO(longhaul::persistence::describe(err));
  REQUIRE_FALSE(err);
  CHECK(json_balance_of(behavior, *state) == 500);
}

TEST_CASE("the adapter refuses stored events it cannot apply, naming id, sequence number and event") {
  longhaul::detail::typed_behavior<account> behavior{{}};
  auto state = behavior.initial_state();
  struct bad_case {
    longhaul::persistence::event_record rec;
    std::string says;
  };
  std::vector<bad_case> cases{
    {stored("account.deposited", 1, R"({"cents":500})"), "no upcaster from version 1"},
    {stored("account.frozen", 1, "{}"), "unknown event name"},
    {stored("account.deposited", 2, R"({"amount":"lots"})"), "does not decode"},
    {stored("account.deposited", 3, R"({"amount":1})"), "newer version"},
  };
  for (const auto& c : cases) {
    auto err = behavior.apply_stored(*state, c.rec);
    REQUIRE(err);
    auto text = longhaul::persistence::describe(err);
    INFO(text);
    CHECK(actor_code(err) == actor_errc::instance_failed);
    CHECK_THAT(text, Catch::Contains("account/a1") && Catch::Contains("event 7")
                       && Catch::Contains(c.rec.type) && Catch::Contains(c.says));
  }
  CHECK(json_balance_of(behavior, *state) == 0);
}

TEST_CASE("the adapter's state codec round-trips a state through JSON") {
  longhaul::detail::typed_behavior<account> behavior{{}};
  auto state = behavior.initial_state();
  REQUIRE_FALSE(behavior.apply_stored(*state, stored("account.opened", 1, R"({"owner":"ann"})")));
  REQUIRE_FALSE(behavior.apply_stored(*state, stored("account.deposited", 2, R"({"amount":9})")));
  auto json = behavior.encode_state(*state);
  REQUIRE(json);
  auto back = behavior.decode_state(*json);
  REQUIRE(back);
  auto again = behavior.encode_state(**back);
  REQUIRE(again);
  CHECK(*again == *json);
  CHECK_FALSE(behavior.decode_state(R"({"balance":"x"})"));
}
