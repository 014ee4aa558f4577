// Test entities for tests/runtime: a bank account (commands, events, rejections, a
// throwing command, outbox transfers, subscriptions) written against the public API.
#pragma once

#include "runtime/entity.hpp"

#include <boost/describe.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>

namespace bank {

// Commands.
struct open_account { static constexpr auto command_name = "open_account"; std::string owner; };
struct deposit { static constexpr auto command_name = "deposit"; std::int64_t amount = 0; };
struct withdraw { static constexpr auto command_name = "withdraw"; std::int64_t amount = 0; };
/// Moves money to another account through the outbox (exactly once).
struct transfer {
  static constexpr auto command_name = "transfer";
  std::string to;
  std::int64_t amount = 0;
};
/// Credits money sent by `transfer` (delivered through the outbox).
struct receive_transfer {
  static constexpr auto command_name = "receive_transfer";
  std::string from;
  std::int64_t amount = 0;
};
/// Throws inside decide() while `fail` is true (tests incidents and restarts).
struct audit { static constexpr auto command_name = "audit"; bool fail = false; };
/// Asks for a snapshot and replies the balance.
struct get_balance { static constexpr auto command_name = "get_balance"; };
BOOST_DESCRIBE_STRUCT(open_account, (), (owner))
BOOST_DESCRIBE_STRUCT(deposit, (), (amount))
BOOST_DESCRIBE_STRUCT(withdraw, (), (amount))
BOOST_DESCRIBE_STRUCT(transfer, (), (to, amount))
BOOST_DESCRIBE_STRUCT(receive_transfer, (), (from, amount))
BOOST_DESCRIBE_STRUCT(audit, (), (fail))
BOOST_DESCRIBE_STRUCT(get_balance, (), ())

// Events.
struct account_opened {
  static constexpr auto event_name = "account.opened";
  static constexpr std::uint32_t schema_version = 1;
  std::string owner;
};
struct money_deposited {
  static constexpr auto event_name = "account.deposited";
  static constexpr std::uint32_t schema_version = 2;  // v1 stored "cents" instead of "amount"
  std::int64_t amount = 0;
};
struct money_withdrawn {
  static constexpr auto event_name = "account.withdrawn";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t amount = 0;
};
/// Published for subscribers whenever a large deposit happens.
struct large_deposit_made {
  static constexpr auto event_name = "account.large_deposit";
  static constexpr std::uint32_t schema_version = 1;
  std::string account;
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(account_opened, (), (owner))
BOOST_DESCRIBE_STRUCT(money_deposited, (), (amount))
BOOST_DESCRIBE_STRUCT(money_withdrawn, (), (amount))
BOOST_DESCRIBE_STRUCT(large_deposit_made, (), (account, amount))

struct account_state {
  std::string owner;
  std::int64_t balance = 0;
  std::int64_t deposits = 0;
};
BOOST_DESCRIBE_STRUCT(account_state, (), (owner, balance, deposits))

/// The account entity: a complete entity in the style the README shows.
struct account {
  static constexpr auto type_name = "account";
  using state = account_state;
  using command = std::variant<open_account, deposit, withdraw, transfer, receive_transfer,
                               audit, get_balance>;
  using event = std::variant<account_opened, money_deposited, money_withdrawn>;

  static longhaul::decision<event> decide(const state& s, const command& c) {
    using result = longhaul::decision<event>;
    return std::visit(
      [&](const auto& cmd) -> result {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, open_account>) {
          if (!s.owner.empty())
            return longhaul::reject("account already open");
          return account_opened{cmd.owner};
        } else if constexpr (std::is_same_v<T, deposit>) {
          if (cmd.amount <= 0)
            return longhaul::reject("deposit must be positive");
          result r{money_deposited{cmd.amount}};
          r.reply(s.balance + cmd.amount);
          return r;
        } else if constexpr (std::is_same_v<T, withdraw>) {
          if (cmd.amount > s.balance)
            return longhaul::reject("insufficient funds");
          result r{money_withdrawn{cmd.amount}};
          r.reply(s.balance - cmd.amount);
          return r;
        } else if constexpr (std::is_same_v<T, transfer>) {
          if (cmd.amount > s.balance)
            return longhaul::reject("insufficient funds");
          result r{money_withdrawn{cmd.amount}};
          r.send("account", cmd.to, receive_transfer{"?", cmd.amount});
          return r;
        } else if constexpr (std::is_same_v<T, receive_transfer>) {
          result r{money_deposited{cmd.amount}};
          if (cmd.amount >= 1000)
            r.publish(large_deposit_made{"?", cmd.amount});
          return r;
        } else if constexpr (std::is_same_v<T, audit>) {
          if (cmd.fail)
            throw std::runtime_error("audit system unavailable");
          result r;
          r.reply(s.balance);
          return r;
        } else {
          result r;
          r.reply(s.balance).snapshot();
          return r;
        }
      },
      c);
  }

  static void apply(state& s, const event& e) {
    std::visit(
      [&](const auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, account_opened>)
          s.owner = ev.owner;
        else if constexpr (std::is_same_v<T, money_deposited>) {
          s.balance += ev.amount;
          ++s.deposits;
        } else
          s.balance -= ev.amount;
      },
      e);
  }
};

/// Audit log entity subscribing to large deposits (correlated by account id).
struct flag_review { static constexpr auto command_name = "flag_review"; };
BOOST_DESCRIBE_STRUCT(flag_review, (), ())
struct review_flagged {
  static constexpr auto event_name = "review.flagged";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t amount = 0;
};
BOOST_DESCRIBE_STRUCT(review_flagged, (), (amount))
struct review_state {
  std::int64_t flagged = 0;
  std::int64_t total = 0;
};
BOOST_DESCRIBE_STRUCT(review_state, (), (flagged, total))

struct review {
  static constexpr auto type_name = "review";
  using state = review_state;
  using command = std::variant<large_deposit_made, flag_review>;
  using event = std::variant<review_flagged>;
  static longhaul::decision<event> decide(const state&, const command& c) {
    if (auto* ev = std::get_if<large_deposit_made>(&c))
      return review_flagged{ev->amount};
    return {};
  }
  static void apply(state& s, const event& e) {
    s.flagged += 1;
    s.total += std::get<review_flagged>(e).amount;
  }
};

}  // namespace bank
