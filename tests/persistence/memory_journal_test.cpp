// Tests of the in-memory journal: the journal contract suite instantiated for
// memory_journal, plus what only the in-memory journal promises (synchronous callbacks).
#include "persistence/memory_journal.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

/// Contract backend: every journal is a fresh memory_journal.
struct memory_backend {
  std::unique_ptr<longhaul::persistence::journal>
  make_journal(std::size_t keep_snapshots, std::function<longhaul::persistence::time_ms()> clock) {
    longhaul::persistence::memory_journal_config cfg;
    cfg.keep_snapshots = keep_snapshots;
    cfg.clock = std::move(clock);
    return std::make_unique<longhaul::persistence::memory_journal>(std::move(cfg));
  }
};

} // namespace

#define LONGHAUL_JOURNAL_BACKEND memory_backend
#define LONGHAUL_JOURNAL_BACKEND_NAME "memory"
#include "tests/persistence/journal_contract.hpp"

using namespace longhaul::persistence;

namespace {

atomic_write one_event_write(std::string id, sequence_nr expected_seq) {
  atomic_write w;
  w.persistence_id = std::move(id);
  w.expected_seq = expected_seq;
  w.events.push_back(new_event{"thing.happened", 1, "{}", {}});
  return w;
}

time_ms system_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

TEST_CASE("memory journal: write completes on the caller's thread before returning",
          "[journal][memory]") {
  memory_journal j;
  std::thread::id callback_thread;
  bool called = false;
  j.write(one_event_write("sync", 1), [&](caf::expected<write_result> r) {
    called = true;
    callback_thread = std::this_thread::get_id();
    CHECK(r);
  });
  CHECK(called);
  CHECK(callback_thread == std::this_thread::get_id());
}

TEST_CASE("memory journal: the callback runs after the journal's lock is released, so the "
          "write is already readable in it",
          "[journal][memory]") {
  memory_journal j;
  sequence_nr seen = 0;
  // journal.hpp tells callbacks not to call the journal; doing it here proves the lock is
  // not held (a held std::mutex would deadlock) and that the write is visible on ack.
  j.write(one_event_write("visible", 1), [&](caf::expected<write_result> r) {
    REQUIRE(r);
    auto highest = j.highest_seq("visible");
    REQUIRE(highest);
    seen = *highest;
  });
  CHECK(seen == 1);
}

TEST_CASE("memory journal: without an injected clock, writes are stamped with the system "
          "clock",
          "[journal][memory]") {
  memory_journal j;
  auto before = system_now_ms();
  auto r = j.write_and_wait(one_event_write("wall-clock", 1));
  auto after = system_now_ms();
  REQUIRE(r);
  CHECK(r->written_at_ms >= before);
  CHECK(r->written_at_ms <= after);
  auto events = j.replay("wall-clock", 1, max_sequence_nr, 10);
  REQUIRE(events);
  REQUIRE(events->events.size() == 1);
  CHECK(events->events[0].written_at_ms == r->written_at_ms);
}

TEST_CASE("memory journal: configured write limits are enforced", "[journal][memory]") {
  memory_journal_config cfg;
  cfg.limits.max_id_bytes = 8;
  cfg.limits.max_payload_bytes = 16;
  memory_journal j{std::move(cfg)};
  auto long_id = j.write_and_wait(one_event_write("nine-byte", 1));
  REQUIRE_FALSE(long_id);
  CHECK(persistence_code(long_id.error()) == persistence_errc::invalid_argument);
  auto big = one_event_write("short", 1);
  big.events[0].payload_json = R"({"k":"0123456789"})";
  auto too_large = j.write_and_wait(std::move(big));
  REQUIRE_FALSE(too_large);
  CHECK(persistence_code(too_large.error()) == persistence_errc::payload_too_large);
  CHECK(j.write_and_wait(one_event_write("eightbyt", 1)));
}

TEST_CASE("is_valid_utf8 accepts exactly the strings boost::json's parser accepts as UTF-8",
          "[journal][json]") {
  // The JSON string "<bytes>" is valid exactly when its bytes are well-formed UTF-8, for
  // bytes that need no escape (no control character, quote or backslash).
  auto agrees = [](const std::string& bytes) {
    auto quoted = '"' + bytes + '"';
    return is_valid_utf8(bytes) == is_valid_json(quoted);
  };
  const std::vector<std::string> fixed{
    "", "plain ascii, longer than eight bytes", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
    "\xf4\x8f\xbf\xbf",                   // U+10FFFF, the last code point
    "\xef\xbf\xbf",                        // U+FFFF
    "\xed\x9f\xbf",                        // U+D7FF, just below the surrogates
    "\xee\x80\x80",                        // U+E000, just above them
    "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", // continuation first, overlong 2-byte
    "\xe0\x80\x80", "\xe0\x9f\xbf",       // overlong 3-byte
    "\xed\xa0\x80", "\xed\xbf\xbf",       // surrogates
    "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", // overlong 4-byte
    "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe", // above U+10FFFF, never bytes
    "\xc3", "\xe2\x82", "\xf0\x9f\x98",     // truncated
    "\xc3(", "\xe2(\xac", "abcdefg\xc3", "abcdefgh\xe2\x82\xac" "12345678\x80"};
  for (const auto& f : fixed) {
    INFO("bytes: " << boost::json::serialize(boost::json::string_view{f.data(), f.size()}));
    CHECK(agrees(f));
  }
  CHECK(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));
  // Random strings of mostly high bytes, so that most mix valid and broken sequences.
  std::mt19937 rng{20261205};
  std::uniform_int_distribution<int> len(0, 24), byte(0x20, 0xff);
  int valid_multibyte = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string bytes;
    for (int n = len(rng); n > 0; --n) {
      auto b = byte(rng);
      if (b < 0x80 && (b % 3) != 0)
        b += 0x80;  // two thirds of the "ASCII" draws become high bytes
      if (b == '"' || b == '\\' || b == 0x7f)
        b = 'a';
      bytes += static_cast<char>(b);
    }
    auto high = std::any_of(bytes.begin(), bytes.end(),
                            [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    valid_multibyte += high && is_valid_utf8(bytes) ? 1 : 0;
    if (!agrees(bytes)) {
      INFO("bytes: " << boost::json::serialize(
             boost::json::string_view{bytes.data(), bytes.size()}));
      CHECK(agrees(bytes));
      break;
    }
  }
  CHECK(valid_multibyte > 1000);  // the random strings reached well-formed sequences too
}

TEST_CASE("append_json_string and append_json write what boost::json::serialize writes",
          "[journal][json]") {
  std::string all_bytes;
  for (int c = 1; c < 256; ++c)
    all_bytes += static_cast<char>(c);
  const std::vector<std::string> texts{"",
                                       "plain",
                                       "say \"hi\"",
                                       "back\\slash",
                                       "tab\there\nnew line\r\b\f",
                                       std::string{"nul \0 inside", 12},
                                       "\x01\x1f\x7f",
                                       "caf\xc3\xa9 \xe2\x82\xac",
                                       all_bytes};
  for (const auto& t : texts) {
    INFO("text of " << t.size() << " bytes");
    std::string out = "prefix ";
    append_json_string(out, t);
    CHECK(out == "prefix " + boost::json::serialize(boost::json::string_view{t.data(), t.size()}));
  }
  boost::json::value v = {{"name", "order \"42\""},
                          {"items", boost::json::array{1, 2.5, nullptr, true, all_bytes}},
                          {"nested", {{"deep", {{"deeper", boost::json::array{}}}}}}};
  for (std::size_t pad : {0, 1, 255, 4096}) {
    std::string out(pad, 'x');
    append_json(out, v);
    CHECK(out == std::string(pad, 'x') + boost::json::serialize(v));
  }
}
