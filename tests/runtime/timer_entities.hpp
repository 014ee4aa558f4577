// Test entities for timers: a subscription that bills daily through a chain of durable
// timers, and a payment reminder with a 7-day deadline that can be replaced or cancelled.
#pragma once

#include "runtime/entity.hpp"

#include <boost/describe.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace timers {

using namespace std::chrono_literals;

// -- billing: a chain of timers ------------------------------------------------------
struct start_billing {
  static constexpr auto command_name = "start_billing";
  std::int64_t days = 0;
};
struct bill_day {
  static constexpr auto command_name = "bill_day";
  std::int64_t day = 0;
  std::int64_t late_by_ms = 0;  // filled in by the scheduler when the timer fires
};
BOOST_DESCRIBE_STRUCT(start_billing, (), (days))
BOOST_DESCRIBE_STRUCT(bill_day, (), (day, late_by_ms))

struct billing_started {
  static constexpr auto event_name = "billing.started";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t days = 0;
};
struct day_billed {
  static constexpr auto event_name = "billing.day_billed";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t day = 0;
  std::int64_t late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(billing_started, (), (days))
BOOST_DESCRIBE_STRUCT(day_billed, (), (day, late_by_ms))

struct billing_state {
  std::int64_t days = 0;
  std::vector<std::int64_t> billed;
  std::int64_t max_late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(billing_state, (), (days, billed, max_late_by_ms))

struct billing {
  static constexpr auto type_name = "billing";
  using state = billing_state;
  using command = std::variant<start_billing, bill_day>;
  using event = std::variant<billing_started, day_billed>;

  static longhaul::decision<event> decide(const state& s, const command& c) {
    if (auto* start = std::get_if<start_billing>(&c)) {
      if (s.days != 0)
        return longhaul::reject("already billing");
      longhaul::decision<event> d{billing_started{start->days}};
      d.set_timer_after("next-bill", 24h, bill_day{1, 0});
      return d;
    }
    const auto& bill = std::get<bill_day>(c);
    longhaul::decision<event> d{day_billed{bill.day, bill.late_by_ms}};
    if (bill.day < s.days)
      d.set_timer_after("next-bill", 24h, bill_day{bill.day + 1, 0});
    else
      d.finish();
    return d;
  }

  static void apply(state& s, const event& e) {
    if (auto* started = std::get_if<billing_started>(&e)) {
      s.days = started->days;
    } else {
      const auto& billed = std::get<day_billed>(e);
      s.billed.push_back(billed.day);
      s.max_late_by_ms = std::max(s.max_late_by_ms, billed.late_by_ms);
    }
  }
};

// -- reminder: one deadline that can be replaced or cancelled -------------------------
struct set_deadline {
  static constexpr auto command_name = "set_deadline";
  std::int64_t due_ms = 0;  ///< absolute (Unix ms)
};
struct cancel_deadline { static constexpr auto command_name = "cancel_deadline"; };
struct deadline_reached {
  static constexpr auto command_name = "deadline_reached";
  std::int64_t late_by_ms = 0;
};
/// Sets a timer that would deliver a command the entity does not accept (bad input).
struct set_bad_timer {
  static constexpr auto command_name = "set_bad_timer";
  std::string name;
  std::int64_t due_ms = 0;
};
BOOST_DESCRIBE_STRUCT(set_deadline, (), (due_ms))
BOOST_DESCRIBE_STRUCT(cancel_deadline, (), ())
BOOST_DESCRIBE_STRUCT(deadline_reached, (), (late_by_ms))
BOOST_DESCRIBE_STRUCT(set_bad_timer, (), (name, due_ms))

struct deadline_set {
  static constexpr auto event_name = "reminder.deadline_set";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t due_ms = 0;
};
struct deadline_cancelled {
  static constexpr auto event_name = "reminder.deadline_cancelled";
  static constexpr std::uint32_t schema_version = 1;
};
struct reminded {
  static constexpr auto event_name = "reminder.reminded";
  static constexpr std::uint32_t schema_version = 1;
  std::int64_t late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(deadline_set, (), (due_ms))
BOOST_DESCRIBE_STRUCT(deadline_cancelled, (), ())
BOOST_DESCRIBE_STRUCT(reminded, (), (late_by_ms))

struct reminder_state {
  std::int64_t due_ms = 0;
  std::int64_t reminders = 0;
  std::int64_t last_late_by_ms = 0;
};
BOOST_DESCRIBE_STRUCT(reminder_state, (), (due_ms, reminders, last_late_by_ms))

struct reminder {
  static constexpr auto type_name = "reminder";
  using state = reminder_state;
  using command = std::variant<set_deadline, cancel_deadline, deadline_reached, set_bad_timer>;
  using event = std::variant<deadline_set, deadline_cancelled, reminded>;

  static longhaul::decision<event> decide(const state&, const command& c) {
    using result = longhaul::decision<event>;
    if (auto* set = std::get_if<set_deadline>(&c)) {
      result d{deadline_set{set->due_ms}};
      d.set_timer("deadline", set->due_ms, deadline_reached{0});
      return d;
    }
    if (std::holds_alternative<cancel_deadline>(c)) {
      result d{deadline_cancelled{}};
      d.cancel_timer("deadline");
      return d;
    }
    if (auto* bad = std::get_if<set_bad_timer>(&c)) {
      result d;
      d.set_timer(bad->name, bad->due_ms, bill_day{});  // not a reminder command
      return d;
    }
    return reminded{std::get<deadline_reached>(c).late_by_ms};
  }

  static void apply(state& s, const event& e) {
    if (auto* set = std::get_if<deadline_set>(&e)) {
      s.due_ms = set->due_ms;
    } else if (std::holds_alternative<deadline_cancelled>(e)) {
      s.due_ms = 0;
    } else {
      ++s.reminders;
      s.last_late_by_ms = std::get<reminded>(e).late_by_ms;
    }
  }
};

}  // namespace timers
