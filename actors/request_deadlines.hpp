// Deadlines for requests sent with caf::infinite, kept by the requesting actor. CAF 0.17
// keeps every request timeout in its actor clock until it expires, answered or not
// (about 190 bytes and a strong reference to the requester per request for the whole
// timeout): at 10,000 deliveries/s and a 60 s timeout that is over 100 MB and a busy clock
// thread. The outbox dispatcher and the scheduler therefore send their requests without
// a CAF timeout and track the deadline here; a periodic sweep times out what is overdue.
#pragma once

#include <caf/actor_clock.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

namespace longhaul::actors {

/// Pending requests of one actor, each with a deadline and what to do when it passes.
/// Single-threaded: used only from the owning actor's handlers.
class request_deadlines {
public:
  using time_point = caf::actor_clock::time_point;

  /// Registers a request that times out at `deadline` by calling `on_timeout` (once, from
  /// sweep()); returns the token its answer handlers pass to settle().
  std::uint64_t add(time_point deadline, std::function<void()> on_timeout) {
    auto token = ++last_token_;
    pending_.emplace(token, entry{deadline, std::move(on_timeout)});
    return token;
  }

  /// The token the next add() returns (for a timeout handler that needs its own token).
  [[nodiscard]] std::uint64_t next_token() const noexcept { return last_token_ + 1; }

  /// Marks the request answered. True if it was still pending: the caller handles the
  /// answer. False if it already timed out (or was settled): the answer is dropped, as
  /// CAF drops a response that comes after its request timed out.
  [[nodiscard]] bool settle(std::uint64_t token) { return pending_.erase(token) > 0; }

  /// Calls on_timeout for every request whose deadline is <= now, removing them first
  /// (a callback may add or settle requests).
  void sweep(time_point now) {
    std::vector<std::uint64_t> overdue;
    for (const auto& [token, e] : pending_)
      if (e.deadline <= now)
        overdue.push_back(token);
    for (auto token : overdue) {
      auto it = pending_.find(token);
      if (it == pending_.end())
        continue;  // settled by an earlier handler of this sweep
      auto on_timeout = std::move(it->second.on_timeout);
      pending_.erase(it);
      on_timeout();
    }
  }

  /// True if no request is pending.
  [[nodiscard]] bool empty() const noexcept { return pending_.empty(); }

  /// Number of pending requests.
  [[nodiscard]] std::size_t size() const noexcept { return pending_.size(); }

private:
  struct entry {
    time_point deadline;
    std::function<void()> on_timeout;
  };
  std::map<std::uint64_t, entry> pending_;
  std::uint64_t last_token_ = 0;
};

}  // namespace longhaul::actors
