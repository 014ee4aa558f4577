// See raw_sqlite.hpp.
#include "bench/raw_sqlite.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace longhaul::bench {

raw_db::raw_db(const std::filesystem::path& path, persistence::sync_mode sync) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
    fail("open '" + path.string() + "'");
  sqlite3_extended_result_codes(db_, 1);
  exec("PRAGMA journal_mode=WAL");
  exec(std::string{"PRAGMA synchronous="} + (sync == persistence::sync_mode::full     ? "FULL"
                                            : sync == persistence::sync_mode::normal ? "NORMAL"
                                                                                     : "OFF"));
  exec("PRAGMA cache_size=-"
       + std::to_string(persistence::sqlite_journal_config{}.cache_mb * 1024));
  exec("PRAGMA temp_store=MEMORY");
}

raw_db::~raw_db() { sqlite3_close_v2(db_); }

void raw_db::exec(const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string text = msg ? msg : "unknown error";
    sqlite3_free(msg);
    throw std::runtime_error{"raw SQLite: " + sql + ": " + text};
  }
}

void raw_db::fail(const std::string& what) const {
  throw std::runtime_error{"raw SQLite: " + what + ": "
                           + (db_ ? sqlite3_errmsg(db_) : "out of memory")};
}

raw_stmt::raw_stmt(raw_db& db, const char* sql) : db_{db} {
  if (sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr)
      != SQLITE_OK)
    db.fail(std::string{"prepare "} + sql);
}

raw_stmt::~raw_stmt() { sqlite3_finalize(stmt_); }

void raw_stmt::run() {
  auto rc = sqlite3_step(stmt_);
  sqlite3_reset(stmt_);
  if (rc != SQLITE_DONE)
    db_.fail(std::string{"step "} + sqlite3_sql(stmt_));
}

void raw_stmt::bind_text(int col, std::string_view text) {
  sqlite3_bind_text(stmt_, col, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

void raw_stmt::bind_int(int col, std::int64_t v) { sqlite3_bind_int64(stmt_, col, v); }

std::vector<std::int64_t> insert_streams(raw_db& db, const std::vector<std::string>& ids) {
  std::vector<std::int64_t> stream_ids;
  stream_ids.reserve(ids.size());
  raw_stmt stream_insert{db, "INSERT INTO streams (persistence_id) VALUES (?)"};
  db.exec("BEGIN");
  for (const auto& id : ids) {
    stream_insert.bind_text(1, id);
    stream_insert.run();
    stream_ids.push_back(sqlite3_last_insert_rowid(db.get()));
  }
  db.exec("COMMIT");
  return stream_ids;
}

}  // namespace longhaul::bench
