// Claims of actors/request_deadlines.hpp: the deadlines the outbox dispatcher and the
// scheduler keep for requests sent without a CAF timeout.
#include "actors/request_deadlines.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using longhaul::actors::request_deadlines;
using namespace std::chrono_literals;

namespace {

request_deadlines::time_point at(std::chrono::seconds s) {
  return request_deadlines::time_point{} + s;
}

}  // namespace

TEST_CASE("a request answered before its deadline is settled once and never times out") {
  request_deadlines d;
  int timeouts = 0;
  auto expected = d.next_token();
  auto token = d.add(at(60s), [&] { ++timeouts; });
  CHECK(token == expected);
  CHECK(d.next_token() == token + 1);
  CHECK(d.size() == 1);
  CHECK(d.settle(token));
  CHECK_FALSE(d.settle(token));
  d.sweep(at(3600s));
  CHECK(timeouts == 0);
  CHECK(d.empty());
}

TEST_CASE("a sweep times out exactly the requests whose deadline has passed, once each") {
  request_deadlines d;
  std::vector<std::string> timed_out;
  d.add(at(10s), [&] { timed_out.push_back("a"); });
  auto b = d.add(at(20s), [&] { timed_out.push_back("b"); });
  d.add(at(5s), [&] { timed_out.push_back("c"); });
  d.sweep(at(9s));
  CHECK(timed_out == std::vector<std::string>{"c"});
  d.sweep(at(10s));  // a deadline equal to now has passed
  CHECK(timed_out == std::vector<std::string>{"c", "a"});
  d.sweep(at(10s));
  CHECK(timed_out.size() == 2);
  CHECK(d.size() == 1);
  CHECK(d.settle(b));
  d.sweep(at(100s));
  CHECK(timed_out.size() == 2);
}

TEST_CASE("an answer that comes after its request timed out is dropped") {
  request_deadlines d;
  int timeouts = 0;
  auto token = d.add(at(1s), [&] { ++timeouts; });
  d.sweep(at(2s));
  CHECK(timeouts == 1);
  CHECK_FALSE(d.settle(token));
}

TEST_CASE("a timeout handler may add and settle requests during the sweep") {
  request_deadlines d;
  std::uint64_t other = 0;
  int retries = 0;
  // Overdue requests time out in the order they were added.
  d.add(at(1s), [&] {
    CHECK(d.settle(other));
    d.add(at(30s), [&] { ++retries; });  // a retry with a new deadline
  });
  other = d.add(at(5s), [] { FAIL("settled by the first handler; must not time out"); });
  d.sweep(at(10s));
  CHECK(d.size() == 1);
  d.sweep(at(30s));
  CHECK(retries == 1);
  CHECK(d.empty());
}
