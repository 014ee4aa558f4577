// Crash-test harness (see crash_harness.hpp): posix_spawn with a stdout pipe, line
// matching with poll(2), SIGKILL and waitpid. POSIX only; the parent stays single-threaded.
#include "tests/crash_harness.hpp"

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace longhaul::testing {

bool exit_status::killed() const noexcept {
  return signaled && signal == SIGKILL;
}

std::string exit_status::describe() const {
  if (exited)
    return "exit code " + std::to_string(exit_code);
  if (signaled)
    return "signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  return "not ended";
}

child_process child_process::spawn(const std::string& executable,
                                   const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe2");
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  // dup2 clears FD_CLOEXEC on the child's stdout; the original pipe ends close on exec.
  ::posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(executable.c_str()));
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  // glibc's posix_spawn reports exec failures (ENOENT, EACCES) as its result.
  int rc = ::posix_spawn(&pid, executable.c_str(), &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::system_error(rc, std::generic_category(), "posix_spawn " + executable);
  }
  return child_process{pid, fds[0]};
}

child_process::child_process(child_process&& other) noexcept
  : pid_(std::exchange(other.pid_, -1)),
    stdout_fd_(std::exchange(other.stdout_fd_, -1)),
    reaped_(std::exchange(other.reaped_, true)),
    status_(other.status_),
    output_(std::move(other.output_)),
    consumed_(other.consumed_) {
}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    child_process old{std::move(*this)};  // kills and reaps the child held so far
    pid_ = std::exchange(other.pid_, -1);
    stdout_fd_ = std::exchange(other.stdout_fd_, -1);
    reaped_ = std::exchange(other.reaped_, true);
    status_ = other.status_;
    output_ = std::move(other.output_);
    consumed_ = other.consumed_;
  }
  return *this;
}

child_process::~child_process() {
  if (pid_ > 0 && !reaped_) {
    kill();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  close_pipe();
}

void child_process::close_pipe() noexcept {
  if (stdout_fd_ >= 0) {
    ::close(stdout_fd_);
    stdout_fd_ = -1;
  }
}

bool child_process::read_some(std::chrono::milliseconds timeout) {
  if (stdout_fd_ < 0)
    return false;
  pollfd p{stdout_fd_, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (n < 0) {
    if (errno == EINTR)
      return true;
    throw std::system_error(errno, std::generic_category(), "poll");
  }
  if (n == 0)
    return true;  // timeout: the stream is still open
  char buf[4096];
  ssize_t got = ::read(stdout_fd_, buf, sizeof(buf));
  if (got < 0) {
    if (errno == EINTR || errno == EAGAIN)
      return true;
    throw std::system_error(errno, std::generic_category(), "read");
  }
  if (got == 0) {
    close_pipe();
    return false;
  }
  output_.append(buf, static_cast<std::size_t>(got));
  return true;
}

bool child_process::wait_for_line(std::string_view line, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Match complete lines only: a partial line may still grow.
    for (auto eol = output_.find('\n', consumed_); eol != std::string::npos;
         eol = output_.find('\n', consumed_)) {
      std::string_view got{output_.data() + consumed_, eol - consumed_};
      consumed_ = eol + 1;
      if (got == line)
        return true;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !read_some(left))
      return false;
  }
}

bool child_process::has_line(std::string_view line) const {
  std::size_t start = 0;
  for (auto eol = output_.find('\n'); eol != std::string::npos;
       start = eol + 1, eol = output_.find('\n', start))
    if (std::string_view{output_.data() + start, eol - start} == line)
      return true;
  return false;
}

void child_process::kill() noexcept {
  if (pid_ > 0 && !reaped_)
    ::kill(pid_, SIGKILL);
}

exit_status child_process::wait() {
  if (reaped_)
    return status_;
  // Drain stdout first so that a child blocked on a full pipe can finish.
  while (read_some(std::chrono::milliseconds{1000})) {
  }
  int status = 0;
  pid_t rc;
  while ((rc = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
  }
  if (rc < 0)
    throw std::system_error(errno, std::generic_category(), "waitpid");
  reaped_ = true;
  if (WIFEXITED(status)) {
    status_.exited = true;
    status_.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    status_.signaled = true;
    status_.signal = WTERMSIG(status);
  }
  return status_;
}

exit_status child_process::kill_after(std::chrono::microseconds delay) {
  if (delay.count() > 0)
    std::this_thread::sleep_for(delay);
  kill();
  return wait();
}

}  // namespace longhaul::testing
