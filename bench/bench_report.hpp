// Shared pieces of the benchmarks in bench/: number parsing for flags, medians, peak RSS,
// a scratch directory per run, the readable result table and the one-line JSON summary
// that every bench prints last (scripts/bench.sh and CI read that line).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace longhaul::bench {

/// Median of `samples` (mean of the two middle values for an even count); 0 when empty.
[[nodiscard]] double median(std::vector<double> samples);

/// Peak resident set size of this process in KiB (VmHWM of /proc/self/status); 0 if the
/// value cannot be read.
[[nodiscard]] std::uint64_t peak_rss_kib();

/// CPU time (user + system) this process has used so far, all threads, in seconds.
[[nodiscard]] double process_cpu_s();

/// Parses a whole decimal unsigned integer ("200000"); nullopt on anything else.
[[nodiscard]] std::optional<std::uint64_t> parse_count(std::string_view text);

/// Parses a whole positive decimal number ("2.5"); nullopt on anything else or on <= 0.
[[nodiscard]] std::optional<double> parse_positive(std::string_view text);

/// Measures wall time on the steady clock from construction (or `restart`).
class stopwatch {
public:
  stopwatch() noexcept : start_{std::chrono::steady_clock::now()} {}

  /// Sets the start to now.
  void restart() noexcept { start_ = std::chrono::steady_clock::now(); }

  /// Seconds since the start.
  [[nodiscard]] double elapsed_s() const noexcept {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

private:
  std::chrono::steady_clock::time_point start_;
};

/// A temporary directory `<parent>/longhaul-bench-XXXXXX` that is removed with all its
/// contents on destruction. Each scenario takes a fresh subdirectory from it.
class scratch_dir {
public:
  /// Creates the directory under `parent` (the system temp dir when empty). Throws
  /// std::runtime_error naming the path when it cannot be created: benches stop there.
  explicit scratch_dir(const std::string& parent);
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  /// Creates and returns a new, empty subdirectory named after `name` (made unique with a
  /// counter). The caller removes it with `remove` when the scenario is done.
  [[nodiscard]] std::filesystem::path fresh(std::string_view name);

  /// Removes `dir` and its contents; errors are ignored (the destructor retries).
  static void remove(const std::filesystem::path& dir) noexcept;

  /// The directory itself.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return root_; }

private:
  std::filesystem::path root_;
  unsigned next_ = 0;
};

/// "1,234,567": a count with thousands separators.
[[nodiscard]] std::string format_count(std::uint64_t n);

/// "1,234,567/s": a rate rounded to a whole number; "n/a" when not finite.
[[nodiscard]] std::string format_rate(double per_s);

/// A table printed with aligned columns: first column left-aligned, the rest right-aligned.
class result_table {
public:
  /// `header` fixes the number of columns; rows with fewer cells are padded with blanks.
  explicit result_table(std::vector<std::string> header);

  /// Appends one row.
  void add_row(std::vector<std::string> cells);

  /// Writes the header, a rule and all rows.
  void print(std::ostream& out) const;

private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

/// Builds the summary line `{"bench":"<name>","key":value,...}` with keys in the order
/// they were added. Keys are plain identifiers and are not escaped.
class json_summary {
public:
  explicit json_summary(std::string bench_name);

  /// Adds a number printed with `decimals` digits after the point (0: a whole number).
  /// Non-finite values are printed as null.
  void add(std::string key, double value, int decimals);

  /// The JSON object on one line, without a trailing newline.
  [[nodiscard]] std::string str() const;

private:
  std::string bench_;
  std::vector<std::pair<std::string, std::string>> fields_;
};

/// CPU seconds (user + system) used so far by this process's live threads, summed per
/// thread name (/proc/self/task/*/stat): shows which thread a measurement kept busy.
std::map<std::string, double> thread_cpu_s();

/// `after - before` per thread name, as cores busy over `seconds`, largest first:
/// "caf.worker 1.20, actor_bench 0.40".
std::string thread_load(const std::map<std::string, double>& before,
                        const std::map<std::string, double>& after, double seconds);

} // namespace longhaul::bench
