// A fault-injecting SQLite VFS for tests: wraps the default VFS and makes writes or
// fsyncs fail with an I/O error or "disk full" on command. Flow: tests -> journal -> VFS.
#pragma once

#include <cstdint>
#include <string>

namespace longhaul::persistence {

/// Which failure the fault VFS injects.
enum class injected_fault {
  none,       ///< pass everything through
  io_error,   ///< xWrite / xSync return SQLITE_IOERR_WRITE / SQLITE_IOERR_FSYNC
  disk_full,  ///< xWrite returns SQLITE_FULL
};

/// Process-wide control of the fault VFS. Thread-safe (atomics).
class sqlite_fault_vfs {
public:
  /// Registers the VFS (idempotent) and returns its name for sqlite_journal_config::vfs.
  static std::string install();

  /// From now on, after `after_n_writes` more successful xWrite calls on any file opened
  /// through this VFS, every xWrite fails with `fault`.
  static void fail_writes(injected_fault fault, std::uint64_t after_n_writes = 0);

  /// From now on every xSync fails with an I/O error (when `on` is true).
  static void fail_syncs(bool on);

  /// Simulated disk capacity: a write that would grow the total size of files opened
  /// through this VFS beyond `bytes` fails with SQLITE_FULL (0 = unlimited).
  static void limit_total_bytes(std::uint64_t bytes);

  /// Stops injecting faults (writes, syncs and the size limit).
  static void heal();

  /// Number of xWrite calls seen since install().
  [[nodiscard]] static std::uint64_t writes_seen();
};

}  // namespace longhaul::persistence
