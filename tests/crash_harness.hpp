// Crash-test harness: runs a child executable, reads the lines it reports on stdout,
// kills it with SIGKILL at a chosen moment and reports how it ended. Used by every crash test.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace longhaul::testing {

/// How a child process ended.
struct exit_status {
  bool exited = false;    ///< ended by returning from main / calling exit
  int exit_code = 0;      ///< valid when `exited`
  bool signaled = false;  ///< ended by a signal
  int signal = 0;         ///< valid when `signaled`

  /// True when the child died of SIGKILL.
  [[nodiscard]] bool killed() const noexcept;

  /// "exit code 3", "signal 9 (Killed)".
  [[nodiscard]] std::string describe() const;
};

/// A running child process whose stdout is a pipe to the parent; stderr and stdin are
/// inherited. Move-only. The destructor kills (SIGKILL) and reaps a child still running,
/// so a failing test never leaves processes behind. Not thread-safe: one owner thread.
class child_process {
public:
  /// Starts `executable` with `args` (argv[1..]) and the parent's environment.
  /// Throws std::system_error when the pipe cannot be made or the program cannot be
  /// started (missing file, not executable): a broken test setup, not a test result.
  [[nodiscard]] static child_process spawn(const std::string& executable,
                                           const std::vector<std::string>& args);

  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process();

  /// Process id (valid until `wait` returned).
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// Reads stdout until a line equal to `line` arrives after the lines already consumed
  /// by earlier calls. Returns false on timeout or when the child closes stdout (exits)
  /// first. Lines are consumed up to and including the match.
  [[nodiscard]] bool wait_for_line(std::string_view line, std::chrono::milliseconds timeout);

  /// Sends SIGKILL. Harmless when the child already exited (it stays a zombie until
  /// `wait`, so the pid cannot have been reused).
  void kill() noexcept;

  /// Reads stdout to its end, then reaps the child and returns how it ended.
  /// Blocks until the child exits; call `kill` first to end it. Idempotent.
  exit_status wait();

  /// Sleeps `delay`, sends SIGKILL, reaps the child. The status tells whether the kill
  /// landed (`killed()`) or the child had ended on its own before.
  exit_status kill_after(std::chrono::microseconds delay);

  /// Everything the child wrote to stdout so far (complete once `wait` returned).
  [[nodiscard]] const std::string& output() const noexcept { return output_; }

  /// True if the output so far contains `line` as a complete line.
  [[nodiscard]] bool has_line(std::string_view line) const;

private:
  child_process(pid_t pid, int stdout_fd) noexcept : pid_(pid), stdout_fd_(stdout_fd) {}

  /// Reads what is available (waiting at most `timeout`); false at end of stream.
  bool read_some(std::chrono::milliseconds timeout);
  void close_pipe() noexcept;

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  bool reaped_ = false;
  exit_status status_;
  std::string output_;
  std::size_t consumed_ = 0;  ///< bytes of output_ already matched by wait_for_line
};

}  // namespace longhaul::testing
