// Child process of journal_crash_test: appends to a SQLite journal from many threads until
// SIGKILLed, logging each acknowledged write to an ack log that the parent checks against.
//
// Usage: journal_crash_child --db PATH --acks PATH --run R [--seed S] [--ids N]
//                            [--threads T] [--inflight W] [--writes N]
// stdout protocol (one line each): "opening" before sqlite_journal::open, "opened" after
// it, "ready" once the writers start, "done" after a clean end (only with --writes N > 0).
// Ack log: one line "id first_seq count" per acknowledged write, written with one
// write(2) on an O_APPEND fd from the ack callback, so it survives SIGKILL without fsync.
// Event payload (parsed by journal_crash_test.cpp):
//   {"write":"r<run>-t<thread>-<n>","n":<events in the write>,"k":<index in the write>,
//    "id":"<persistence id>","seq":<seq>,"pad":"<0-159 times the letter 'a' + seq % 26>"}
// Events of multi-event writes carry the tag "crash"; single-event writes have no tags.
// Exit codes: 0 clean end, 2 bad arguments, 3 open failed, 4 write failed, 5 bad ack.
#include "persistence/sqlite_journal.hpp"

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

using namespace longhaul::persistence;

struct options {
  std::string db;
  std::string acks;
  std::uint64_t run = 0;
  std::uint64_t seed = 1;
  std::uint64_t ids = 300;
  std::uint64_t threads = 16;
  std::uint64_t inflight = 4;
  std::uint64_t writes = 0;  ///< acknowledged writes before a clean end; 0 = until killed
};

[[noreturn]] void die(int code, const std::string& what) {
  std::fprintf(stderr, "journal_crash_child: %s\n", what.c_str());
  std::fflush(stderr);
  // _exit: no destructors, the journal's writer thread may be the caller.
  ::_exit(code);
}

void say(std::string_view line) {
  std::string text{line};
  text += '\n';
  if (::write(STDOUT_FILENO, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    die(2, "cannot write to stdout");
}

bool parse_number(std::string_view text, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

options parse_options(int argc, char** argv) {
  options opts;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc)
      die(2, "missing value after " + std::string{flag});
    std::string_view value = argv[++i];
    std::uint64_t* number = nullptr;
    if (flag == "--db")
      opts.db = value;
    else if (flag == "--acks")
      opts.acks = value;
    else if (flag == "--run")
      number = &opts.run;
    else if (flag == "--seed")
      number = &opts.seed;
    else if (flag == "--ids")
      number = &opts.ids;
    else if (flag == "--threads")
      number = &opts.threads;
    else if (flag == "--inflight")
      number = &opts.inflight;
    else if (flag == "--writes")
      number = &opts.writes;
    else
      die(2, "unknown option " + std::string{flag});
    if (number && !parse_number(value, *number))
      die(2, "option " + std::string{flag} + " needs a number, got '" + std::string{value} + "'");
  }
  if (opts.db.empty() || opts.acks.empty())
    die(2, "--db and --acks are required");
  if (opts.threads == 0 || opts.inflight == 0 || opts.threads > 256)
    die(2, "--threads must be 1..256 and --inflight >= 1");
  // Each thread owns the ids i with i % threads == t and keeps at most one write per id
  // in flight (expected_seq is only known once the previous write of the id is stored).
  if (opts.ids / opts.threads < opts.inflight)
    die(2, "--ids must be at least --threads * --inflight");
  return opts;
}

std::string persistence_id_of(std::uint64_t i) {
  return "crash-" + std::to_string(i);
}

std::string payload_of(const std::string& write_id, std::size_t n, std::size_t k,
                       const std::string& id, sequence_nr seq, std::size_t pad) {
  std::string json = "{\"write\":\"" + write_id + "\",\"n\":" + std::to_string(n)
                     + ",\"k\":" + std::to_string(k) + ",\"id\":\"" + id
                     + "\",\"seq\":" + std::to_string(seq) + ",\"pad\":\"";
  json.append(pad, static_cast<char>('a' + seq % 26));
  json += "\"}";
  return json;
}

/// Shared by all writer threads and the journal's ack callbacks.
struct shared_state {
  options opts;
  std::unique_ptr<sqlite_journal> journal;
  int ack_fd = -1;
  std::vector<sequence_nr> next_seq;  ///< per id; touched only by the owning thread
  std::atomic<std::uint64_t> submitted{0};
};

/// One writer thread: keeps up to `inflight` async writes on distinct ids it owns.
void run_writer(shared_state& st, std::uint64_t t) {
  const auto& opts = st.opts;
  std::mt19937_64 rng{opts.seed * 1000003u + opts.run * 7919u + t};
  std::vector<std::uint64_t> owned;
  for (std::uint64_t i = t; i < opts.ids; i += opts.threads)
    owned.push_back(i);
  std::mutex mtx;
  std::condition_variable cv;
  std::set<std::uint64_t> busy;  ///< ids with a write in flight (guarded by mtx)
  std::uint64_t counter = 0;
  for (;;) {
    if (opts.writes > 0 && st.submitted.fetch_add(1) >= opts.writes)
      break;
    std::uint64_t idx = 0;
    {
      std::unique_lock guard{mtx};
      cv.wait(guard, [&] { return busy.size() < opts.inflight; });
      do
        idx = owned[rng() % owned.size()];
      while (busy.count(idx) > 0);
      busy.insert(idx);
    }
    auto id = persistence_id_of(idx);
    // Half single-event writes, half atomic writes of 2-5 events.
    std::size_t count = rng() % 2 == 0 ? 1 : 2 + rng() % 4;
    auto write_id = "r" + std::to_string(opts.run) + "-t" + std::to_string(t) + "-"
                    + std::to_string(counter++);
    atomic_write w;
    w.persistence_id = id;
    w.expected_seq = st.next_seq[idx];
    for (std::size_t k = 0; k < count; ++k) {
      new_event ev;
      ev.type = "crash.event_written";
      ev.payload_json = payload_of(write_id, count, k, id, w.expected_seq + k, rng() % 160);
      if (count > 1)
        ev.tags.push_back("crash");
      w.events.push_back(std::move(ev));
    }
    sequence_nr first = w.expected_seq;
    st.next_seq[idx] += count;
    st.journal->write(std::move(w), [&, idx, id, first, count](caf::expected<write_result> r) {
      if (!r)
        die(4, "write " + id + " seq " + std::to_string(first) + " failed: "
                 + describe(r.error()));
      if (r->highest_seq != first + count - 1)
        die(5, "write " + id + " seq " + std::to_string(first) + " acknowledged highest_seq "
                 + std::to_string(r->highest_seq));
      auto line = id + " " + std::to_string(first) + " " + std::to_string(count) + "\n";
      if (::write(st.ack_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        die(5, std::string{"cannot append to the ack log: "} + std::strerror(errno));
      // Notify under the lock: once busy is empty the thread may return and destroy cv.
      std::lock_guard guard{mtx};
      busy.erase(idx);
      cv.notify_one();
    });
  }
  // The callbacks reference mtx, cv and busy: wait for all of them before leaving.
  std::unique_lock guard{mtx};
  cv.wait(guard, [&] { return busy.empty(); });
}

}  // namespace

int main(int argc, char** argv) {
  shared_state st;
  st.opts = parse_options(argc, argv);
  st.ack_fd = ::open(st.opts.acks.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (st.ack_fd < 0)
    die(2, "cannot open ack log " + st.opts.acks + ": " + std::strerror(errno));
  say("opening");
  sqlite_journal_config cfg;
  cfg.path = st.opts.db;
  cfg.sync = sync_mode::full;
  auto opened = sqlite_journal::open(std::move(cfg));
  if (!opened)
    die(3, "cannot open " + st.opts.db + ": " + describe(opened.error()));
  st.journal = std::move(*opened);
  say("opened");
  // Continue every id where the previous (killed) run left it, so runs chain.
  st.next_seq.resize(st.opts.ids);
  for (std::uint64_t i = 0; i < st.opts.ids; ++i) {
    auto highest = st.journal->highest_seq(persistence_id_of(i));
    if (!highest)
      die(3, "highest_seq of " + persistence_id_of(i) + ": " + describe(highest.error()));
    st.next_seq[i] = *highest + 1;
  }
  say("ready");
  std::vector<std::thread> writers;
  for (std::uint64_t t = 0; t < st.opts.threads; ++t)
    writers.emplace_back(run_writer, std::ref(st), t);
  for (auto& w : writers)
    w.join();
  st.journal->close();
  st.journal.reset();
  ::close(st.ack_fd);
  say("done");
  return 0;
}
