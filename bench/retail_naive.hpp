// The baseline of bench/retail_bench: the retail happy path as a team writes it without a
// workflow tool. One SQLite table per context with a status column, each state change in
// its own BEGIN IMMEDIATE ... COMMIT, plain function calls from context to context.
// Like journal_bench's raw baseline it talks to SQLite directly (a baseline, on purpose).
#pragma once

#include "persistence/sqlite_journal.hpp"
#include "samples/retail/retail_domain.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace longhaul::bench::retail_naive {

/// A customer and the credit it starts with.
struct customer_credit {
  std::string customer;
  std::int64_t credit = 0;
};

/// What one naive run measured.
struct run_result {
  double seconds = 0;                 ///< first order started -> last order completed
  std::vector<double> latencies_ms;   ///< per order: place -> completed, in order index order
  std::uint64_t transactions = 0;     ///< committed transactions of the measured orders
  double cpu_s = 0;                   ///< process CPU (all threads) over the run
};

/// Creates the naive schema in a new file `db` (WAL, synchronous per `sync`, page cache
/// `cache_mb` like the journal's writer) and stores the customers with their credit (untimed),
/// then processes `orders` from `threads` threads, each with its own connection, each
/// order start to finish in one thread (place, payment with credit then card through the
/// fake gateway, goods, shipment, completion, e-mail rows). Every order must take the happy
/// path (retail::settings() with no expired cards, timeouts or lost goods). Throws
/// std::runtime_error naming the statement on any SQLite error or a non-happy outcome.
/// `vfs` names the SQLite VFS to open files with (empty: the default).
[[nodiscard]] run_result run(const std::filesystem::path& db, persistence::sync_mode sync,
                             std::size_t cache_mb, const std::vector<customer_credit>& customers,
                             const std::vector<retail::place_order>& orders, std::size_t threads,
                             const std::string& vfs = {});

/// Registers (once) a SQLite VFS that passes everything to the default VFS and sleeps
/// `delay_ms` after every xSync: a slower disk, for both sides of the bench alike (the
/// journal takes it through sqlite_journal_config::vfs). Returns its name. The delay can
/// be changed later; calls made while a sync sleeps see the old or new value.
[[nodiscard]] std::string install_slow_sync_vfs(double delay_ms);

/// Cost of one fsync'ed commit on the file system of `dir`: `commits` transactions of one
/// small INSERT each (BEGIN IMMEDIATE ... COMMIT) with `sync`, on a WAL file warmed up
/// until it is reused (as in a running service); returns the median milliseconds per
/// commit. The file is removed afterwards. Throws as `run`.
[[nodiscard]] double commit_ms(const std::filesystem::path& dir, persistence::sync_mode sync,
                               std::size_t commits, const std::string& vfs = {});

}  // namespace longhaul::bench::retail_naive
