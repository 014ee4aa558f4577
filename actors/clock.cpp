// Clocks (see clock.hpp).
#include "actors/clock.hpp"

#include <cmath>

namespace longhaul::actors {

persistence::time_ms real_clock::now() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::optional<std::chrono::milliseconds>
real_clock::real_delay_until(persistence::time_ms t) const {
  return std::chrono::milliseconds{std::max<persistence::time_ms>(0, t - now())};
}

virtual_clock::virtual_clock(persistence::time_ms start) : now_(start) {}

persistence::time_ms virtual_clock::now() const { return now_.load(); }

std::optional<std::chrono::milliseconds>
virtual_clock::real_delay_until(persistence::time_ms t) const {
  if (t <= now())
    return std::chrono::milliseconds{0};
  return std::nullopt;
}

void virtual_clock::set(persistence::time_ms t) {
  auto cur = now_.load();
  while (t > cur && !now_.compare_exchange_weak(cur, t)) {
  }
}

void virtual_clock::advance(std::chrono::milliseconds d) {
  if (d.count() > 0)
    now_.fetch_add(d.count());
}

accelerated_clock::accelerated_clock(double factor, persistence::time_ms start)
  : factor_(factor > 0 ? factor : 1.0),
    start_(start),
    real_start_(std::chrono::steady_clock::now()) {}

persistence::time_ms accelerated_clock::now() const {
  auto real = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now()
                                                        - real_start_);
  return start_ + static_cast<persistence::time_ms>(std::llround(real.count() * factor_));
}

std::optional<std::chrono::milliseconds>
accelerated_clock::real_delay_until(persistence::time_ms t) const {
  auto clock_ms = std::max<persistence::time_ms>(0, t - now());
  return std::chrono::milliseconds{
    static_cast<std::int64_t>(std::ceil(static_cast<double>(clock_ms) / factor_))};
}

}  // namespace longhaul::actors
