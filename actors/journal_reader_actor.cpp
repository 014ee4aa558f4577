// Journal readers (see header).
#include "actors/journal_reader_actor.hpp"

#include "persistence/persistence_error.hpp"

#include <caf/actor_pool.hpp>
#include <caf/event_based_actor.hpp>

namespace longhaul::actors {

namespace {

caf::behavior journal_reader(caf::event_based_actor*,
                             std::shared_ptr<persistence::journal> journal,
                             std::shared_ptr<spdlog::logger> log) {
  return {
    [journal](load_atom, load_request& req) -> caf::result<loaded_chunk> {
      if (req.with_snapshot) {
        // The first chunk: snapshot, events and timers in one read.
        auto start = journal->load_recovery_start(req.persistence_id, req.max_events);
        if (!start)
          return start.error();
        return std::move(*start);
      }
      loaded_chunk out;
      auto events = journal->replay(req.persistence_id, req.from_seq,
                                    persistence::max_sequence_nr, req.max_events);
      if (!events)
        return events.error();
      out.events = std::move(*events);
      return out;
    },
    [journal](processed_atom, const std::string& pid, const std::string& message_id)
      -> caf::result<std::optional<persistence::processed_message>> {
      auto outcome = journal->processed_outcome(pid, message_id);
      if (!outcome)
        return outcome.error();
      return std::move(*outcome);
    },
    [journal, log](snapshot_atom, snapshot_request& req) {
      const auto& snap = req.snapshot;
      if (auto err = journal->save_snapshot(snap)) {
        log->warn("[{}] snapshot at {} failed: {}", snap.persistence_id, snap.seq,
                  persistence::describe(err));
        return;
      }
      if (req.delete_covered_events)
        if (auto err = journal->delete_up_to(snap.persistence_id, snap.seq))
          log->warn("[{}] deleting events up to {} failed: {}", snap.persistence_id, snap.seq,
                    persistence::describe(err));
    },
  };
}

}  // namespace

caf::actor spawn_journal_readers(caf::actor_system& sys,
                                 std::shared_ptr<persistence::journal> journal,
                                 std::shared_ptr<spdlog::logger> log, std::size_t threads) {
  auto factory = [&sys, journal, log] {
    return sys.spawn<caf::detached>(journal_reader, journal, log);
  };
  return caf::actor_pool::make(sys.dummy_execution_unit(), std::max<std::size_t>(threads, 1),
                               factory, caf::actor_pool::round_robin());
}

}  // namespace longhaul::actors
