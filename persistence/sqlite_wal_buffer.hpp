// A SQLite VFS shim for the journal's writer connection: it gathers a transaction's WAL
// frames in memory and hands them to the VFS below in a few large writes when the commit
// frame arrives, instead of two writes per frame (header, then page). Flow: writer ->
// SQLite -> this shim -> the configured VFS -> disk.
#pragma once

#include <string>

namespace longhaul::persistence {

/// Registers (once per process and base) the WAL-buffering shim over the VFS named
/// `base_vfs` (empty: SQLite's default) and returns its name, for sqlite3_open_v2. Safe
/// to call from several threads.
///
/// What it changes, and why that is safe (JOURNAL.md §7):
/// - Only files opened as a WAL are buffered; every other file passes straight through.
/// - A write that continues the buffered run is appended to it. The frame header of a
///   commit frame (its "database size" field is not 0) marks the next write, the commit
///   frame's page, as the transaction's last: the run is written out before that write
///   returns. SQLite publishes new frames to readers (the wal-index header) and syncs the
///   WAL only after that, so no reader and no fsync ever misses a buffered frame.
/// - Any other call on the WAL file (read, sync, size, truncate, a write elsewhere, file
///   control, close) writes the run out first.
/// - A write error surfaces at the call that writes the run out, inside the same
///   transaction, which SQLite then rolls back. A crash loses only frames of a transaction
///   whose commit frame was not written: SQLite ignores those anyway.
[[nodiscard]] std::string wal_buffer_vfs_over(const std::string& base_vfs);

}  // namespace longhaul::persistence
