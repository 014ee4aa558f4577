// Child process of runtime_crash_test: runs a longhaul runtime (real scheduler, SQLite file,
// synchronous=FULL) with the counter entity of crash_entities.hpp and drives `add` commands
// from several threads until SIGKILLed; a final run sends nothing, drains the outbox and
// reports every instance's state.
//
// Usage: runtime_crash_child --db PATH --acks PATH --run R [--threads T]
//                            [--passivate-ms MS] [--snapshot-every N] [--final 0|1]
//                            [--drain-timeout-ms MS]
// stdout protocol (one line each): "ready" once the runtime started; in a final run then
// "drained <ms>" when the outbox is empty, "state <instance id> <state json>" for every
// instance, and "done" after a clean stop.
// Command ids are "r<run>t<thread>n<n>", n = 0, 1, ... per thread; each thread asks one
// command at a time. Ack log: one line "<cmd_id>" per acknowledged `add`, written with one
// write(2) on an O_APPEND fd after ask() returned, so it survives SIGKILL without fsync.
// Exit codes: 0 clean end, 2 bad arguments, 3 start failed, 4 a command failed,
// 5 the outbox did not drain in time, 6 a state could not be read.
#include "runtime/runtime.hpp"
#include "tests/runtime/crash_entities.hpp"

#include <boost/json.hpp>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

struct options {
  std::string db;
  std::string acks;
  std::uint64_t run = 0;
  std::uint64_t threads = 8;
  std::uint64_t passivate_ms = 1000;
  std::uint64_t snapshot_every = 5;
  std::uint64_t final_run = 0;
  std::uint64_t drain_timeout_ms = 60000;
};

[[noreturn]] void die(int code, const std::string& what) {
  std::fprintf(stderr, "runtime_crash_child: %s\n", what.c_str());
  std::fflush(stderr);
  // _exit: no destructors; other threads still use the runtime.
  ::_exit(code);
}

void say(std::string_view line) {
  std::string text{line};
  text += '\n';
  // Only the main thread writes stdout; loop over short writes so lines arrive whole.
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      die(2, "cannot write to stdout");
    done += static_cast<std::size_t>(n);
  }
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
    else if (flag == "--threads")
      number = &opts.threads;
    else if (flag == "--passivate-ms")
      number = &opts.passivate_ms;
    else if (flag == "--snapshot-every")
      number = &opts.snapshot_every;
    else if (flag == "--final")
      number = &opts.final_run;
    else if (flag == "--drain-timeout-ms")
      number = &opts.drain_timeout_ms;
    else
      die(2, "unknown option " + std::string{flag});
    if (number && !parse_number(value, *number))
      die(2, "option " + std::string{flag} + " needs a number, got '" + std::string{value} + "'");
  }
  if (opts.db.empty() || opts.acks.empty())
    die(2, "--db and --acks are required");
  if (opts.threads == 0 || opts.threads > 64)
    die(2, "--threads must be 1..64");
  if (opts.final_run > 1)
    die(2, "--final must be 0 or 1");
  return opts;
}

/// Appends one line with one write(2): O_APPEND makes concurrent lines land whole.
void append_ack(int fd, const std::string& cmd_id) {
  auto line = cmd_id + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    die(4, std::string{"cannot append to the ack log: "} + std::strerror(errno));
}

/// One driver thread: asks `add` commands one at a time until the process is killed.
void drive(longhaul::runtime& rt, int ack_fd, std::uint64_t run, std::uint64_t t) {
  for (std::uint64_t n = 0;; ++n) {
    auto cmd_id = "r" + std::to_string(run) + "t" + std::to_string(t) + "n" + std::to_string(n);
    auto target = crash::target_of(cmd_id);
    auto reply = rt.ask<std::int64_t>("counter", target,
                                      crash::add{cmd_id, crash::amount_of(cmd_id)});
    if (!reply)
      die(4, "ask add " + cmd_id + " to " + target + " failed: "
               + longhaul::persistence::describe(reply.error()));
    append_ack(ack_fd, cmd_id);
  }
}

/// Final run: waits (bounded) until the outbox holds no undelivered row.
void wait_for_empty_outbox(longhaul::runtime& rt, std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto pending = rt.journal().outbox_pending(0, 1);
    if (!pending)
      die(5, "outbox_pending failed: " + longhaul::persistence::describe(pending.error()));
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
    if (pending->empty()) {
      say("drained " + std::to_string(elapsed.count()));
      return;
    }
    if (elapsed > timeout)
      die(5, "the outbox still holds messages after " + std::to_string(elapsed.count())
               + " ms (first: " + pending->front().message_id + " to "
               + pending->front().destination + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
}

void report_states(longhaul::runtime& rt) {
  for (std::uint64_t i = 0; i < crash::instance_count; ++i) {
    auto id = crash::instance_id(i);
    auto st = rt.ask<crash::counter_state>("counter", id, crash::get_state{});
    if (!st)
      die(6, "get_state " + id + ": " + longhaul::persistence::describe(st.error()));
    say("state " + id + " " + boost::json::serialize(boost::json::value_from(*st)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  int ack_fd = ::open(opts.acks.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (ack_fd < 0)
    die(2, "cannot open ack log " + opts.acks + ": " + std::strerror(errno));
  longhaul::runtime_config cfg;
  cfg.storage = longhaul::storage_kind::sqlite;
  cfg.database_path = opts.db;
  cfg.sync = longhaul::persistence::sync_mode::full;
  cfg.passivate_after = std::chrono::milliseconds{opts.passivate_ms};
  cfg.log_level = "warn";
  longhaul::runtime rt{cfg};
  longhaul::entity_settings settings;
  settings.snapshot_every = opts.snapshot_every;
  rt.register_entity<crash::counter>(settings);
  if (auto err = rt.start())
    die(3, "start failed: " + longhaul::persistence::describe(err));
  say("ready");
  if (opts.final_run == 1) {
    wait_for_empty_outbox(rt, std::chrono::milliseconds{opts.drain_timeout_ms});
    report_states(rt);
    rt.stop();
    ::close(ack_fd);
    say("done");
    return 0;
  }
  std::vector<std::thread> drivers;
  for (std::uint64_t t = 0; t < opts.threads; ++t)
    drivers.emplace_back(drive, std::ref(rt), ack_fd, opts.run, t);
  for (auto& d : drivers)
    d.join();  // never returns: the drivers run until the parent kills the process
  return 0;
}
