// The counter entity of the runtime crash test and the deterministic plan both processes
// share: a command id alone fixes which instance an `add` goes to, its amount, and the chain
// of shares forwarded through the outbox (runtime_crash_child.cpp drives it,
// runtime_crash_test.cpp recomputes every effect from the ids to check the journal).
#pragma once

#include "runtime/entity.hpp"

#include <boost/describe.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

namespace crash {

/// Instances "c0000" .. "c0999".
inline constexpr std::uint64_t instance_count = 1000;

/// A share travels at most this many hops (hop 1 is sent by the `add` itself).
inline constexpr std::uint32_t max_hops = 3;

/// FNV-1a (64 bit): the same in every process and build, unlike std::hash.
inline std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// The id of instance `i` ("c0042").
inline std::string instance_id(std::uint64_t i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "c%04llu", static_cast<unsigned long long>(i % instance_count));
  return buf;
}

/// The instance that command `cmd_id` is sent to.
inline std::string target_of(std::string_view cmd_id) {
  return instance_id(fnv1a(cmd_id));
}

/// The amount command `cmd_id` adds: 1..1000.
inline std::int64_t amount_of(std::string_view cmd_id) {
  return 1 + static_cast<std::int64_t>((fnv1a(cmd_id) >> 16) % 1000);
}

/// The part of an added `amount` forwarded to another instance: 0, 1/4, 1/2 or 3/4.
inline std::int64_t share_of(std::string_view cmd_id, std::int64_t amount) {
  return static_cast<std::int64_t>((fnv1a(cmd_id) >> 40) % 4) * amount / 4;
}

/// The part of a received share that goes on to the next hop (none after max_hops).
inline std::int64_t forwarded_of(std::uint32_t hop, std::int64_t amount) {
  return hop < max_hops ? amount / 2 : 0;
}

/// The key of one hop of a share: "<cmd_id>/<hop>".
inline std::string hop_key(std::string_view origin, std::uint32_t hop) {
  return std::string{origin} + "/" + std::to_string(hop);
}

/// The instance that hop `hop` of the share started by `origin` is sent to.
inline std::string hop_target(std::string_view origin, std::uint32_t hop) {
  return instance_id(fnv1a(hop_key(origin, hop)) >> 3);
}

// Commands.
/// Adds `amount` (= amount_of(cmd_id)) and forwards share_of(cmd_id, amount) onwards.
struct add {
  static constexpr auto command_name = "add";
  std::string cmd_id;
  std::int64_t amount = 0;
};
/// One hop of a forwarded share, delivered through the outbox.
struct pass_share {
  static constexpr auto command_name = "pass_share";
  std::string origin;  ///< the cmd_id of the `add` that started the chain
  std::uint32_t hop = 1;
  std::int64_t amount = 0;
};
/// Replies the state; stores nothing.
struct get_state { static constexpr auto command_name = "get_state"; };
BOOST_DESCRIBE_STRUCT(add, (), (cmd_id, amount))
BOOST_DESCRIBE_STRUCT(pass_share, (), (origin, hop, amount))
BOOST_DESCRIBE_STRUCT(get_state, (), ())

// Events.
/// An `add` was applied; `kept` = amount - forwarded share.
struct added {
  static constexpr auto event_name = "counter.added";
  static constexpr std::uint32_t schema_version = 1;
  std::string cmd_id;
  std::int64_t amount = 0;
  std::int64_t kept = 0;
};
/// A share arrived; `kept` = amount - the part forwarded to the next hop.
struct share_received {
  static constexpr auto event_name = "counter.share_received";
  static constexpr std::uint32_t schema_version = 1;
  std::string origin;
  std::uint32_t hop = 1;
  std::int64_t amount = 0;
  std::int64_t kept = 0;
};
BOOST_DESCRIBE_STRUCT(added, (), (cmd_id, amount, kept))
BOOST_DESCRIBE_STRUCT(share_received, (), (origin, hop, amount, kept))

/// What an instance holds. `digest` sums fnv1a of every applied cmd id and hop key
/// (wrapping), so a lost or doubled effect changes it even when the counts agree.
struct counter_state {
  std::int64_t value = 0;
  std::uint64_t adds = 0;
  std::uint64_t receipts = 0;
  std::uint64_t digest = 0;
};
BOOST_DESCRIBE_STRUCT(counter_state, (), (value, adds, receipts, digest))

/// The counter entity (snapshots and outbox chains, no rejections).
struct counter {
  static constexpr auto type_name = "counter";
  using state = counter_state;
  using command = std::variant<add, pass_share, get_state>;
  using event = std::variant<added, share_received>;

  /// `add` stores `added` and sends hop 1 of its share; `pass_share` stores
  /// `share_received` and sends the next hop; `get_state` replies the state.
  static longhaul::decision<event> decide(const state& s, const command& c) {
    using result = longhaul::decision<event>;
    if (const auto* a = std::get_if<add>(&c)) {
      if (a->cmd_id.empty() || a->amount <= 0)
        return longhaul::reject("add needs a cmd_id and a positive amount");
      auto share = share_of(a->cmd_id, a->amount);
      result r{added{a->cmd_id, a->amount, a->amount - share}};
      if (share > 0)
        r.send("counter", hop_target(a->cmd_id, 1), pass_share{a->cmd_id, 1, share});
      r.reply(s.value + a->amount - share);
      return r;
    }
    if (const auto* p = std::get_if<pass_share>(&c)) {
      auto next = forwarded_of(p->hop, p->amount);
      result r{share_received{p->origin, p->hop, p->amount, p->amount - next}};
      if (next > 0)
        r.send("counter", hop_target(p->origin, p->hop + 1),
               pass_share{p->origin, p->hop + 1, next});
      return r;
    }
    result r;
    r.reply(s);
    return r;
  }

  /// Adds what the event kept to `value`, counts it and adds its key to `digest`.
  static void apply(state& s, const event& e) {
    if (const auto* a = std::get_if<added>(&e)) {
      s.value += a->kept;
      ++s.adds;
      s.digest += fnv1a(a->cmd_id);
    } else {
      const auto& r = std::get<share_received>(e);
      s.value += r.kept;
      ++s.receipts;
      s.digest += fnv1a(hop_key(r.origin, r.hop));
    }
  }
};

}  // namespace crash
