// The messages of actors/: who talks to whom. Flow:
//   facade --command_envelope--> supervisor --delegate--> persistent entity actor
//   entity --journal::write--> (writer thread) --write_outcome--> entity --reply/nudge-->
//   outbox dispatcher --command_envelope--> supervisor ... ; entity <--loaded-- reader pool;
//   entity --processed--> reader pool (a duplicate's first outcome).
#pragma once

#include "actors/entity_behavior.hpp"
#include "persistence/journal.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace longhaul::actors {

// -- atoms --------------------------------------------------------------------------

/// entity -> supervisor: "idle since my last message", with the count of commands it got
/// and whether its id has a stream (it stored a write, or recovered events or timers).
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;
/// supervisor -> entity: stop now (the supervisor routed nothing since the request).
using stop_atom = caf::atom_constant<caf::atom("stop")>;
/// supervisor -> itself: send the idle check (passivate_atom) to the instances it routed
/// nothing to for passivate_after.
using idle_sweep_atom = caf::atom_constant<caf::atom("idlesweep")>;
/// entity -> supervisor (request): may I start recovery? (bounded concurrency)
using permit_atom = caf::atom_constant<caf::atom("permit")>;
/// entity -> supervisor: recovery finished, release the permit.
using permit_done_atom = caf::atom_constant<caf::atom("permitdone")>;
/// facade -> supervisor -> entities (request): finish queued work, then answer.
using drain_atom = caf::atom_constant<caf::atom("drain")>;
/// entity -> outbox dispatcher: new outbox rows were committed.
using outbox_nudge_atom = caf::atom_constant<caf::atom("oboxnudge")>;
/// dispatcher -> itself: poll the outbox.
using outbox_poll_atom = caf::atom_constant<caf::atom("oboxpoll")>;
/// facade -> supervisor -> entity (request): close an open incident.
using resume_atom = caf::atom_constant<caf::atom("resume")>;
/// facade -> supervisor -> entity (request): describe yourself (instance_status).
using status_atom = caf::atom_constant<caf::atom("status")>;
/// entity -> itself: backoff over, recover again.
using recover_atom = caf::atom_constant<caf::atom("recover")>;
/// facade -> scheduler: fire what is due now (virtual clock) / (request) earliest due.
using fire_atom = caf::atom_constant<caf::atom("fire")>;
using next_due_atom = caf::atom_constant<caf::atom("nextdue")>;
/// scheduler -> itself: wake up for the earliest due timer (real clocks).
using wake_atom = caf::atom_constant<caf::atom("wake")>;
/// scheduler -> its page reader: the next page of timers (timer_page_request).
using timer_page_atom = caf::atom_constant<caf::atom("timerpage")>;
/// reader pool (request): load a snapshot and events.
using load_atom = caf::atom_constant<caf::atom("load")>;
/// reader pool: save a snapshot (and optionally delete covered events).
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
/// entity -> reader pool (request, with persistence id and message id): how was this
/// processed message handled the first time? -> std::optional<persistence::processed_message>
using processed_atom = caf::atom_constant<caf::atom("processed")>;
/// supervisor -> outbox dispatcher, with the persistence id: an instance actor terminated
/// without passivating, so deliveries routed to it may have been lost with its mailbox.
using instance_down_atom = caf::atom_constant<caf::atom("instdown")>;

// -- messages --------------------------------------------------------------------------

/// Answer to a handled command.
struct command_reply {
  std::optional<boost::json::value> reply;  ///< what decide() put in reply(), if anything
  persistence::sequence_nr highest_seq = 0; ///< the instance's highest seq after handling
  /// The message id was already processed and accepted: nothing was done. (One whose
  /// first delivery was rejected gets the same rejection again, JOURNAL.md I7.)
  bool duplicate = false;
};

/// Outcome of one journal write, sent by the writer thread's callback to the entity.
struct write_outcome {
  std::uint64_t token = 0;  ///< the entity's write counter: stale outcomes are ignored
  caf::expected<persistence::write_result> result;
  /// The ticket the write went out in, handed back so that its memory is freed on the
  /// entity's side (persistence::write_ticket).
  std::shared_ptr<persistence::write_ticket> spent;
};

/// A chunk of an instance's history, loaded by the reader pool.
struct load_request {
  std::string persistence_id;
  bool with_snapshot = false;            ///< first chunk: also load the newest snapshot
  persistence::sequence_nr from_seq = 1; ///< events from here (after the snapshot)
  std::uint64_t max_events = 1000;       ///< flow control: one chunk at a time
};

/// The scheduler's read of the next page of its window (journal::timers_due_after).
struct timer_page_request {
  persistence::timer_position after;
  persistence::time_ms until = 0;
  std::uint64_t max = 0;
};

/// Answer to timer_page_request: the rows, in due order.
struct timer_page {
  std::vector<persistence::timer_record> rows;
};

/// Answer to load_request: the journal's recovery start for the first chunk (snapshot,
/// events, timers); later chunks carry only events.
using loaded_chunk = persistence::recovery_start;

/// entity -> scheduler after a stored write that changed the instance's timers.
struct timer_change {
  std::string persistence_id;
  bool cancelled_all = false;
  std::vector<std::string> cancelled;
  std::vector<persistence::timer_set> set;
};

/// Snapshot to save through the reader pool (fire and forget; failures are logged).
struct snapshot_request {
  persistence::snapshot_record snapshot;
  bool delete_covered_events = false;
};

/// What an instance says about itself ("why is order 42 stuck?").
struct instance_status {
  std::string persistence_id;
  std::string mode;             ///< recovering, ready, writing, backoff, incident, failed
  persistence::sequence_nr highest_seq = 0;
  std::size_t queued_commands = 0;
  std::string incident;         ///< error text of the open incident, if any
  std::string failure;          ///< why recovery failed, if it did
  std::string state_json;       ///< current state (encode_state), if encodable
};

/// instance or supervisor -> outbox dispatcher: the answer to a delivery
/// (command_envelope::delivery), what a response to a request would have carried.
struct delivery_answer {
  std::uint64_t delivery = 0;
  caf::expected<command_reply> outcome{command_reply{}};
};

/// Settings the actors need (runtime_config maps onto this).
struct actor_settings {
  std::chrono::milliseconds passivate_after{std::chrono::minutes{2}};
  std::size_t max_concurrent_recoveries = 50;
  /// Passivated ids with a stream the supervisor remembers (0: none), so that a command
  /// re-activating one recovers at once instead of presuming a new id first.
  std::size_t remembered_streams = 100000;
  std::uint64_t replay_chunk = 1000;
  std::chrono::milliseconds restart_backoff_min{100};
  std::chrono::milliseconds restart_backoff_max{30000};
  std::chrono::milliseconds outbox_poll_interval{1000};
  std::size_t outbox_max_in_flight = 1000;
  std::size_t max_id_bytes = 255;
  std::size_t timer_window = 10000;      ///< timers the scheduler keeps in memory
  /// Timers the scheduler reads from the journal at a time: small, so that firings never
  /// wait long behind a read (1-2 µs per row, plus a fixed ~50 µs).
  std::size_t timer_read_chunk = 250;
  std::chrono::milliseconds timer_horizon{std::chrono::hours{1}};  ///< window span (clock time)
  std::size_t timers_max_in_flight = 1000;
  std::chrono::milliseconds timer_retry{1000};  ///< retry after a retryable failure
  /// Reads run inline in the calling actor instead of on the reader pool: for the
  /// in-memory journal under the deterministic test scheduler.
  bool inline_reads = false;
};

}  // namespace longhaul::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::command_envelope)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::command_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::delivery_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::write_outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::load_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::loaded_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::snapshot_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::instance_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::timer_change)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::timer_page_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(longhaul::actors::timer_page)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::optional<longhaul::persistence::time_ms>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::optional<longhaul::persistence::processed_message>)
