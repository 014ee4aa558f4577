// Shared pieces of the benchmarks: medians, RSS, scratch directories, the result table
// and the JSON summary line (see bench_report.hpp).
#include "bench/bench_report.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace longhaul::bench {

double median(std::vector<double> samples) {
  if (samples.empty())
    return 0.0;
  std::sort(samples.begin(), samples.end());
  auto mid = samples.size() / 2;
  if (samples.size() % 2 == 1)
    return samples[mid];
  return (samples[mid - 1] + samples[mid]) / 2.0;
}

std::uint64_t peak_rss_kib() {
  std::ifstream status{"/proc/self/status"};
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) != 0)
      continue;
    std::uint64_t kib = 0;
    std::istringstream fields{line.substr(6)};
    if (fields >> kib)
      return kib;
    return 0;
  }
  return 0;
}

double process_cpu_s() {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0)
    return 0.0;
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::optional<std::uint64_t> parse_count(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

std::optional<double> parse_positive(std::string_view text) {
  // std::from_chars for double is available in libstdc++ 12; strtod would accept
  // leading blanks and hex, which a flag value should not.
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value,
                                   std::chars_format::fixed);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()
      || !std::isfinite(value) || value <= 0)
    return std::nullopt;
  return value;
}

scratch_dir::scratch_dir(const std::string& parent) {
  std::filesystem::path base = parent.empty() ? std::filesystem::temp_directory_path()
                                              : std::filesystem::path{parent};
  std::error_code ec;
  std::filesystem::create_directories(base, ec);
  auto pattern = (base / "longhaul-bench-XXXXXX").string();
  if (ec || ::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error{"cannot create a scratch directory under '" + base.string()
                             + "'"};
  root_ = pattern;
}

scratch_dir::~scratch_dir() {
  remove(root_);
}

std::filesystem::path scratch_dir::fresh(std::string_view name) {
  auto dir = root_ / (std::string{name} + "-" + std::to_string(next_++));
  std::error_code ec;
  if (!std::filesystem::create_directory(dir, ec) || ec)
    throw std::runtime_error{"cannot create '" + dir.string() + "'"};
  return dir;
}

void scratch_dir::remove(const std::filesystem::path& dir) noexcept {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

std::string format_count(std::uint64_t n) {
  auto digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_rate(double per_s) {
  if (!std::isfinite(per_s))
    return "n/a";
  return format_count(static_cast<std::uint64_t>(std::llround(std::max(0.0, per_s)))) + "/s";
}

result_table::result_table(std::vector<std::string> header) : header_{std::move(header)} {
}

void result_table::add_row(std::vector<std::string> cells) {
  cells.resize(std::max(cells.size(), header_.size()));
  rows_.push_back(std::move(cells));
}

void result_table::print(std::ostream& out) const {
  std::vector<std::size_t> width(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], cells[i].size());
  };
  widen(header_);
  for (const auto& row : rows_)
    widen(row);
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < width.size(); ++i) {
      if (i > 0)
        out << "  ";
      const auto& cell = i < cells.size() ? cells[i] : std::string{};
      if (i == 0)
        out << std::left << std::setw(static_cast<int>(width[i])) << cell;
      else
        out << std::right << std::setw(static_cast<int>(width[i])) << cell;
    }
    out << '\n';
  };
  line(header_);
  std::size_t total = 0;
  for (auto w : width)
    total += w;
  out << std::string(total + 2 * (width.empty() ? 0 : width.size() - 1), '-') << '\n';
  for (const auto& row : rows_)
    line(row);
}

json_summary::json_summary(std::string bench_name) : bench_{std::move(bench_name)} {
}

void json_summary::add(std::string key, double value, int decimals) {
  std::string text = "null";
  if (std::isfinite(value)) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", std::max(0, decimals), value);
    text = buf;
  }
  fields_.emplace_back(std::move(key), std::move(text));
}

std::string json_summary::str() const {
  std::string out = "{\"bench\":\"" + bench_ + "\"";
  for (const auto& [key, value] : fields_)
    out += ",\"" + key + "\":" + value;
  out += '}';
  return out;
}

std::map<std::string, double> thread_cpu_s() {
  std::map<std::string, double> out;
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator{"/proc/self/task", ec}) {
    std::ifstream in{task.path() / "stat"};
    std::string line;
    if (!std::getline(in, line))
      continue;
    auto open = line.find('(');
    auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open)
      continue;
    auto name = line.substr(open + 1, close - open - 1);
    std::istringstream fields{line.substr(close + 2)};
    std::string field;
    double utime = 0;
    double stime = 0;
    // Fields after the name start at 3 (state); utime and stime are 14 and 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14)
        utime = std::stod(field);
      else if (i == 15)
        stime = std::stod(field);
    }
    out[name] += (utime + stime) / ticks;
  }
  return out;
}

/// `after - before` per thread name, as cores busy over `seconds`, largest first:
/// "caf.worker 1.20, actor_bench 0.40".
std::string thread_load(const std::map<std::string, double>& before,
                        const std::map<std::string, double>& after, double seconds) {
  std::vector<std::pair<double, std::string>> load;
  for (const auto& [name, cpu] : after) {
    auto it = before.find(name);
    auto used = cpu - (it == before.end() ? 0.0 : it->second);
    if (used > 0 && seconds > 0)
      load.emplace_back(used / seconds, name);
  }
  std::sort(load.rbegin(), load.rend());
  std::string text;
  for (const auto& [cores, name] : load) {
    if (cores < 0.01)
      continue;
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s%s %.2f", text.empty() ? "" : ", ", name.c_str(), cores);
    text += buf;
  }
  return text;
}

} // namespace longhaul::bench
