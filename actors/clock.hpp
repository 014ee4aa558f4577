// Clocks: every component asks the runtime's clock for "now" (timestamps, timer due
// times, lateness) and for how long to really wait until a clock time arrives.
// Real (default), virtual (tests: time moves only when advanced), accelerated (demos).
#pragma once

#include "persistence/journal.hpp"

#include <atomic>
#include <chrono>
#include <memory>

namespace longhaul::actors {

/// The runtime's notion of time. Implementations are thread-safe.
class clock {
public:
  virtual ~clock() = default;

  /// Current clock time in Unix milliseconds.
  [[nodiscard]] virtual persistence::time_ms now() const = 0;

  /// Real time to wait until clock time `t` arrives (0 if it has), or nullopt when
  /// clock time does not pass by itself (virtual clock: the test advances it).
  [[nodiscard]] virtual std::optional<std::chrono::milliseconds>
  real_delay_until(persistence::time_ms t) const = 0;
};

/// Wall-clock time (std::chrono::system_clock).
class real_clock final : public clock {
public:
  [[nodiscard]] persistence::time_ms now() const override;
  [[nodiscard]] std::optional<std::chrono::milliseconds>
  real_delay_until(persistence::time_ms t) const override;
};

/// Time that moves only when told to: for deterministic tests.
class virtual_clock final : public clock {
public:
  /// Starts at `start` (Unix ms); default 2026-01-01T00:00:00Z.
  explicit virtual_clock(persistence::time_ms start = 1767225600000);
  [[nodiscard]] persistence::time_ms now() const override;
  [[nodiscard]] std::optional<std::chrono::milliseconds>
  real_delay_until(persistence::time_ms t) const override;
  /// Moves time to `t`; never backwards (an earlier `t` is ignored).
  void set(persistence::time_ms t);
  /// Moves time forward by `d` (>= 0).
  void advance(std::chrono::milliseconds d);

private:
  std::atomic<persistence::time_ms> now_;
};

/// Time that runs `factor` times faster than real time from `start`: one real second is
/// `factor` clock seconds (e.g. 3600: a second is an hour). For demos.
class accelerated_clock final : public clock {
public:
  accelerated_clock(double factor, persistence::time_ms start);
  [[nodiscard]] persistence::time_ms now() const override;
  [[nodiscard]] std::optional<std::chrono::milliseconds>
  real_delay_until(persistence::time_ms t) const override;
  [[nodiscard]] double factor() const noexcept { return factor_; }

private:
  double factor_;
  persistence::time_ms start_;
  std::chrono::steady_clock::time_point real_start_;
};

}  // namespace longhaul::actors
