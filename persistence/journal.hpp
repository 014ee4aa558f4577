// The journal interface: what every storage backend (SQLite, in-memory) promises.
// Flow: persistent actor -> journal writer -> journal::write (group commit) -> ack.
// The promises are numbered in persistence/JOURNAL.md and checked by one contract suite
// (tests/persistence/journal_contract.hpp) against every implementation.
#pragma once

#include "persistence/persistence_error.hpp"

#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace boost::json {
class value;
}

namespace longhaul::persistence {

/// Position of an event in one persistence id's stream; the first event is 1.
using sequence_nr = std::uint64_t;

/// "No upper bound" for `replay` and snapshot selections.
inline constexpr sequence_nr max_sequence_nr = std::numeric_limits<sequence_nr>::max();

/// Milliseconds since the Unix epoch (UTC). Timer due times and write timestamps.
using time_ms = std::int64_t;

/// An event to store: stable type name ("payment.received"), schema version, JSON payload.
struct new_event {
  std::string type;                ///< stable stored name, never reused (non-empty)
  std::uint32_t schema_version = 1;///< version of the payload's shape (>= 1)
  std::string payload_json;        ///< must be valid JSON (validated before storing)
  std::vector<std::string> tags;   ///< for `read_all(after, max, tag)` projections
};

/// A stored event as read back from the journal.
struct event_record {
  std::string persistence_id;
  sequence_nr seq = 0;
  std::string type;
  std::uint32_t schema_version = 1;
  std::string payload_json;
  std::vector<std::string> tags;
  time_ms written_at_ms = 0;     ///< set by the journal at commit (from its clock)
  std::uint64_t position = 0;    ///< global, strictly increasing across all ids
};

/// Sets (or replaces) the named durable timer of the write's persistence id.
struct timer_set {
  std::string name;          ///< non-empty; unique per persistence id
  time_ms due_ms = 0;        ///< >= 0 (not before the epoch)
  std::string payload_json;  ///< the command to deliver when it fires (valid JSON)
};

/// Removes the named timer of the write's persistence id (no-op when absent).
struct timer_cancel {
  std::string name;
};

/// A stored timer.
struct timer_record {
  std::string persistence_id;
  std::string name;
  time_ms due_ms = 0;
  std::string payload_json;
};

/// A place in the due order of timers: (due_ms, persistence id, name), compared in that
/// order, strings bytewise (as SQLite's BINARY collation and std::string do).
struct timer_position {
  time_ms due_ms = 0;
  std::string persistence_id;
  std::string name;
};

/// A message to deliver after the write commits (at least once, see JOURNAL.md).
struct outbox_message {
  std::string message_id;    ///< globally unique, non-empty; receivers deduplicate by it
  std::string destination;   ///< opaque to the journal (the runtime stores "type/id")
  std::string payload_json;  ///< valid JSON
};

/// A stored, not yet delivered outbox message.
struct outbox_record {
  std::uint64_t outbox_seq = 0;  ///< delivery order
  std::string message_id;
  std::string source_persistence_id;
  std::string destination;
  std::string payload_json;
  time_ms created_at_ms = 0;
};

/// A message that could not be delivered, kept with the reason (never silently dropped).
struct dead_letter_record {
  std::uint64_t dead_letter_seq = 0;  ///< set by the journal, strictly increasing
  std::string message_id;
  std::string source_persistence_id;
  std::string destination;            ///< "type/id" or "event:<name>"
  std::string payload_json;
  std::string reason;
  time_ms recorded_at_ms = 0;         ///< set by the journal
};

/// One atomic write for one persistence id: all parts are stored in one transaction, or
/// none is. `events` may be empty when other parts are not (e.g. a timer firing that
/// decides nothing); the sequence check applies either way.
struct atomic_write {
  std::string persistence_id;
  sequence_nr expected_seq = 1;  ///< highest stored sequence number + 1
  std::vector<new_event> events;
  std::vector<timer_set> timers_to_set;
  /// Removes every timer of this persistence id (a finished instance); applied first.
  bool cancel_all_timers = false;
  std::vector<timer_cancel> timers_to_cancel;  ///< applied before timers_to_set
  /// Message ids must be unique among pending outbox messages (else invalid_argument).
  std::vector<outbox_message> outbox;
  /// Id of the incoming message this write handles; a second write with the same id for
  /// the same persistence id is rejected with `duplicate_message` (JOURNAL.md I7).
  std::optional<std::string> processed_message_id;
  /// Set when the message was rejected (the write then usually stores nothing else): the
  /// rejection's text, stored with the processed id so that a redelivery can be answered
  /// as the first time (`processed_outcome`). Requires `processed_message_id` (else
  /// invalid_argument); at most `max_payload_bytes` (else payload_too_large).
  std::optional<std::string> processed_rejection;
  /// The write is for an id presumed new: it is refused with `sequence_conflict` if the
  /// id has a stream already, even one without events (any earlier write made one), so a
  /// decision taken against the initial state is stored only if that was the state.
  /// Requires `expected_seq` 1 (else invalid_argument).
  bool new_stream = false;
  /// Every payload text of this write (events, timers, outbox) was produced by a JSON
  /// serializer, as the runtime's persistent actors produce them: validate_write checks
  /// their sizes and their UTF-8 (serializers copy string bytes as they are) instead of
  /// parsing them again (a parse per payload was 2% of the runtime's CPU time). Leave it
  /// false for text from anywhere else.
  bool payloads_serialized = false;
};

/// How one processed message was handled, as recorded with its write (JOURNAL.md I7).
struct processed_message {
  std::string message_id;
  /// The rejection text of `atomic_write::processed_rejection`; nullopt: the message was
  /// accepted (also every message recorded before schema version 2).
  std::optional<std::string> rejection;
  time_ms processed_at_ms = 0;  ///< written_at of its write
};

/// Acknowledgement of a committed write.
struct write_result {
  sequence_nr highest_seq = 0;       ///< highest sequence number after this write
  std::uint64_t last_position = 0;   ///< global position of its last event (0: no events)
  time_ms written_at_ms = 0;
};

/// Result of `replay`: the events found plus the highest sequence number ever written.
struct replay_result {
  std::vector<event_record> events;
  sequence_nr highest_seq = 0;
};

/// A stored snapshot of one persistence id's state after event `seq`.
struct snapshot_record {
  std::string persistence_id;
  sequence_nr seq = 0;
  std::string state_json;
  time_ms saved_at_ms = 0;  ///< set by the journal when saving
};

/// Result of `load_recovery_start`: what an instance's recovery begins with.
struct recovery_start {
  std::optional<snapshot_record> snapshot;  ///< the newest, if any
  replay_result events;                     ///< the first events after the snapshot
  std::vector<timer_record> timers;         ///< the id's stored timers, by name
};

/// Which snapshots `load_snapshot` / `delete_snapshots` consider: seq in
/// [min_seq, max_seq] and saved_at_ms <= max_saved_at_ms.
struct snapshot_selection {
  sequence_nr min_seq = 0;
  sequence_nr max_seq = max_sequence_nr;
  time_ms max_saved_at_ms = std::numeric_limits<time_ms>::max();
};

/// Called exactly once per write with its outcome. Runs on the journal's writer thread
/// (SQLite) or the caller's thread (in-memory): it must not block or call the journal.
using write_callback = std::function<void(caf::expected<write_result>)>;

/// A write that carries its own completion (journal::submit). The caller allocates it,
/// and the journal hands it back through `done` with the write still inside, so that the
/// write's memory can be freed on the caller's side. Freeing on the writer thread what a
/// caller's thread allocated costs glibc's malloc an arena lock on every free and sends
/// the caller's next allocations down its slow path: a third of the writer's CPU in
/// the retail benchmark before tickets.
struct write_ticket {
  atomic_write w;
  /// Lives as long as this ticket. A decorator that wraps the ticket in one of its own
  /// hangs its wrapper here in `done` (and drops its own reference to this ticket), so
  /// that the wrapper is freed where this ticket is, on the caller's side.
  std::shared_ptr<void> rider;

  virtual ~write_ticket() = default;

  /// Called exactly once with the outcome, under the same rules as a write_callback. The
  /// journal drops its reference to the ticket right after; `done` may keep one.
  virtual void done(caf::expected<write_result> outcome) = 0;
};

/// The journal. All member functions are thread-safe. Reads observe every write whose
/// acknowledgement was delivered before the read started (JOURNAL.md I5).
class journal {
public:
  virtual ~journal() = default;

  /// Hands `w` to the writer; `done` receives the outcome after COMMIT (or rejection).
  /// Invalid input is rejected through `done` before anything is queued.
  virtual void write(atomic_write w, write_callback done) = 0;

  /// `write` for a ticket: stores `t->w` and calls `t->done`. The SQLite journal keeps the
  /// write in the ticket until it is done; this default moves it out and calls `write`,
  /// so a journal (or decorator) that implements only `write` sees every write.
  virtual void submit(std::shared_ptr<write_ticket> t);

  /// Blocking form of `write` for plain threads and tools (never from the writer thread).
  [[nodiscard]] caf::expected<write_result> write_and_wait(atomic_write w);

  /// Events of `id` with from <= seq <= to, in order, at most `max`, plus the highest
  /// sequence number ever written for `id` (0 for an unknown id).
  [[nodiscard]] virtual caf::expected<replay_result>
  replay(std::string_view id, sequence_nr from, sequence_nr to, std::uint64_t max) = 0;

  /// Highest sequence number ever written for `id` (0 if none), also after deletions.
  [[nodiscard]] virtual caf::expected<sequence_nr> highest_seq(std::string_view id) = 0;

  /// Deletes events 1..n of `id`; the highest sequence number never decreases.
  [[nodiscard]] virtual caf::error delete_up_to(std::string_view id, sequence_nr n) = 0;

  /// Events of all ids with position > after, in position order, at most `max`;
  /// only those carrying `tag` when given. For projections.
  [[nodiscard]] virtual caf::expected<std::vector<event_record>>
  read_all(std::uint64_t after_position, std::uint64_t max,
           const std::optional<std::string>& tag = std::nullopt) = 0;

  /// Stores a snapshot (replacing one with the same id and seq). Keeps only the newest
  /// `keep_snapshots` per id when so configured. Refused (invalid_argument,
  /// payload_too_large, invalid_payload) for an empty id, seq 0, seq above the highest
  /// stored sequence number, an oversized or non-JSON state.
  [[nodiscard]] virtual caf::error save_snapshot(snapshot_record snap) = 0;

  /// The newest snapshot of `id` within `sel`, or nullopt.
  [[nodiscard]] virtual caf::expected<std::optional<snapshot_record>>
  load_snapshot(std::string_view id, const snapshot_selection& sel = {}) = 0;

  /// What recovery of `id` starts from: its newest snapshot, up to `max_events` events
  /// after it (with the highest sequence number) and its timers. The SQLite journal reads
  /// them in one read transaction: one snapshot of the file, and one lock and page-cache
  /// validation instead of three (each cold activation does this). The default calls
  /// `load_snapshot`, `replay` and `timers_of`, which is as good while no write of `id` is
  /// in flight, as during recovery.
  [[nodiscard]] virtual caf::expected<recovery_start>
  load_recovery_start(std::string_view id, std::uint64_t max_events);

  /// Deletes the snapshots of `id` within `sel`.
  [[nodiscard]] virtual caf::error delete_snapshots(std::string_view id,
                                                    const snapshot_selection& sel) = 0;

  /// Timers with due_ms <= until, ordered by (due_ms, persistence id, name), at most `max`.
  /// Served from an index in that order: cheap even with millions of pending timers.
  [[nodiscard]] virtual caf::expected<std::vector<timer_record>>
  timers_due(time_ms until, std::uint64_t max) = 0;

  /// Continues `timers_due` from a position: the timers whose (due_ms, persistence id,
  /// name) is greater than `after`, with due_ms <= until, in that order, at most `max`.
  /// Pass the last row of the previous page to read the next one (keyset paging: each
  /// page costs what it returns, however many timers precede it). No stored timer has an
  /// empty persistence id or name, so `{t, "", ""}` starts at due time t.
  [[nodiscard]] virtual caf::expected<std::vector<timer_record>>
  timers_due_after(const timer_position& after, time_ms until, std::uint64_t max) = 0;

  /// The timers of one persistence id, ordered by name.
  [[nodiscard]] virtual caf::expected<std::vector<timer_record>>
  timers_of(std::string_view id) = 0;

  /// Outbox messages with outbox_seq > after, in order, at most `max`.
  [[nodiscard]] virtual caf::expected<std::vector<outbox_record>>
  outbox_pending(std::uint64_t after_seq, std::uint64_t max) = 0;

  /// Removes delivered outbox messages (unknown seqs are ignored).
  [[nodiscard]] virtual caf::error outbox_delivered(std::vector<std::uint64_t> seqs) = 0;

  /// `outbox_delivered` without waiting for it: `done` receives its outcome exactly once,
  /// on the journal's writer thread (SQLite, after the removal's COMMIT; queued behind
  /// the writes handed over before it, and covered by `flush`) or the caller's thread.
  /// It must not block or call the journal. The default runs `outbox_delivered` and then
  /// `done` on the calling thread.
  virtual void outbox_delivered_async(std::vector<std::uint64_t> seqs,
                                      std::function<void(caf::error)> done);

  /// Stores a dead letter. One identical to a stored one (same message id, destination
  /// and reason) is not stored again: a message dead-lettered again because a crash left
  /// its outbox row to be delivered again is recorded once (JOURNAL.md I15).
  [[nodiscard]] virtual caf::error record_dead_letter(dead_letter_record rec) = 0;

  /// Dead letters with dead_letter_seq > after, in order, at most `max`.
  [[nodiscard]] virtual caf::expected<std::vector<dead_letter_record>>
  dead_letters(std::uint64_t after_seq, std::uint64_t max) = 0;

  /// True if a write for `id` carried `message_id` as its processed message id.
  [[nodiscard]] virtual caf::expected<bool> is_processed(std::string_view id,
                                                         std::string_view message_id) = 0;

  /// The processed message `message_id` of `id` with its outcome (accepted, or rejected
  /// with the stored text), or nullopt if no write for `id` carried it. What a receiver
  /// reads after `duplicate_message` to answer as the first time (JOURNAL.md §6). Both
  /// backends override it; the default, for decorators that do not, answers from
  /// `is_processed` and reports every processed message as accepted.
  [[nodiscard]] virtual caf::expected<std::optional<processed_message>>
  processed_outcome(std::string_view id, std::string_view message_id);

  /// Waits until every write handed to `write` before this call has been acknowledged.
  virtual void flush() = 0;
};

/// Limits that every backend checks before storing (JOURNAL.md §Bad input).
struct write_limits {
  std::size_t max_id_bytes = 512;
  std::size_t max_name_bytes = 255;
  std::size_t max_payload_bytes = 1 << 20;
};

/// Checks `w` against `limits` and validates every JSON payload. Returns a rejection
/// (invalid_argument, invalid_payload, payload_too_large) or an empty error.
/// Runs on the caller's thread so that the writer thread only writes.
[[nodiscard]] caf::error validate_write(const atomic_write& w, const write_limits& limits);

/// True if `text` is one valid JSON value.
[[nodiscard]] bool is_valid_json(std::string_view text) noexcept;

/// True if `text` is well-formed UTF-8 as JSON requires it (RFC 3629: no overlong forms,
/// no surrogates, nothing above U+10FFFF), the one thing a JSON serializer does not
/// check in the strings it writes.
[[nodiscard]] bool is_valid_utf8(std::string_view text) noexcept;

/// Appends `text` to `out` as a JSON string: quoted, with `"`, `\` and control
/// characters escaped and every other byte as it is (what boost::json::serialize writes).
void append_json_string(std::string& out, std::string_view text);

/// Appends `v` serialized as JSON to `out`, without a temporary string.
void append_json(std::string& out, const boost::json::value& v);

}  // namespace longhaul::persistence
