// A user's program built against the installed package: opens a SQLite journal and an
// in-memory journal, writes one event to each, replays it. Exit 0 only if all matches.
#include "persistence/memory_journal.hpp"
#include "persistence/sqlite_journal.hpp"

#include <cstdio>
#include <filesystem>
#include <string>

namespace lp = longhaul::persistence;

namespace {

/// Prints why the check failed and returns false, so callers can `return fail(...)`.
bool fail(const std::string& what, const caf::error& err = {}) {
  std::fprintf(stderr, "consumer: %s%s%s\n", what.c_str(), err ? ": " : "",
               err ? lp::describe(err).c_str() : "");
  return false;
}

/// Replays `id` and checks that it holds exactly the one event written by write_one.
bool check_replay(lp::journal& j, const std::string& id, const char* label) {
  auto replayed = j.replay(id, 1, lp::max_sequence_nr, 100);
  if (!replayed)
    return fail(std::string{label} + ": replay failed", replayed.error());
  if (replayed->highest_seq != 1 || replayed->events.size() != 1)
    return fail(std::string{label} + ": expected one event, got "
                + std::to_string(replayed->events.size()) + " (highest seq "
                + std::to_string(replayed->highest_seq) + ")");
  const auto& ev = replayed->events.front();
  if (ev.persistence_id != id || ev.seq != 1 || ev.type != "consumer.checked"
      || ev.payload_json.find("\"installed\"") == std::string::npos)
    return fail(std::string{label} + ": replayed event differs from the written one: "
                + ev.type + " " + ev.payload_json);
  std::printf("consumer: %s journal replayed %s #%llu %s\n", label, ev.type.c_str(),
              static_cast<unsigned long long>(ev.seq), ev.payload_json.c_str());
  return true;
}

/// Writes the first event of `id` with write_and_wait.
bool write_one(lp::journal& j, const std::string& id, const char* label) {
  lp::atomic_write w;
  w.persistence_id = id;
  w.expected_seq = 1;
  w.events.push_back(lp::new_event{"consumer.checked", 1, R"({"installed":true})", {}});
  auto written = j.write_and_wait(std::move(w));
  if (!written)
    return fail(std::string{label} + ": write_and_wait failed", written.error());
  if (written->highest_seq != 1)
    return fail(std::string{label} + ": write acknowledged with highest seq "
                + std::to_string(written->highest_seq));
  return true;
}

bool check_memory_journal() {
  lp::memory_journal j;
  return write_one(j, "consumer-1", "memory") && check_replay(j, "consumer-1", "memory");
}

/// The SQLite journal must also find the event again after closing and reopening the file.
bool check_sqlite_journal(const std::filesystem::path& dir) {
  auto path = (dir / "consumer-journal.db").string();
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path + suffix);
  {
    lp::sqlite_journal_config create;
    create.path = path;
    auto j = lp::sqlite_journal::open(create);
    if (!j)
      return fail("cannot open " + path, j.error());
    if (!write_one(**j, "consumer-1", "sqlite") || !check_replay(**j, "consumer-1", "sqlite"))
      return false;
  }
  lp::sqlite_journal_config reopen;
  reopen.path = path;
  auto j = lp::sqlite_journal::open(reopen);
  if (!j)
    return fail("cannot reopen " + path, j.error());
  return check_replay(**j, "consumer-1", "reopened sqlite");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <scratch-directory>\n", argv[0]);
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(argv[1], ec);
  if (ec) {
    std::fprintf(stderr, "consumer: cannot create %s: %s\n", argv[1], ec.message().c_str());
    return 2;
  }
  if (!check_memory_journal() || !check_sqlite_journal(argv[1]))
    return 1;
  std::puts("consumer: ok");
  return 0;
}
