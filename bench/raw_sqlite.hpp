// The raw SQLite side of the benchmarks' baselines: a connection and prepared statements
// with the journal's pragmas, talking to sqlite3 directly (journal_bench, actor_bench).
#pragma once

#include "persistence/sqlite_journal.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace longhaul::bench {

/// A read-write connection to an existing file in WAL mode with the given synchronous
/// mode and the journal's default page cache, as the journal's own connections are set
/// up. Throws std::runtime_error with SQLite's message on failure.
class raw_db {
public:
  raw_db(const std::filesystem::path& path, persistence::sync_mode sync);
  ~raw_db();
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;

  /// Runs `sql` (no rows); throws on error.
  void exec(const std::string& sql);

  /// Throws "raw SQLite: <what>: <SQLite's last error>".
  [[noreturn]] void fail(const std::string& what) const;

  sqlite3* get() const noexcept { return db_; }

private:
  sqlite3* db_ = nullptr;
};

/// A statement prepared once (SQLITE_PREPARE_PERSISTENT) on a raw_db that outlives it.
class raw_stmt {
public:
  raw_stmt(raw_db& db, const char* sql);
  ~raw_stmt();
  raw_stmt(const raw_stmt&) = delete;
  raw_stmt& operator=(const raw_stmt&) = delete;

  sqlite3_stmt* get() const noexcept { return stmt_; }

  /// Steps a statement that returns no rows, then resets it; throws on error.
  void run();

  /// Binds text that stays alive until the statement has run (SQLITE_STATIC).
  void bind_text(int col, std::string_view text);
  void bind_int(int col, std::int64_t v);

private:
  raw_db& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// Inserts one streams row per id (schema v1 of persistence/sqlite_journal.cpp: streams
/// map ids to integer stream ids) in one transaction; returns their stream ids in order.
std::vector<std::int64_t> insert_streams(raw_db& db, const std::vector<std::string>& ids);

}  // namespace longhaul::bench
