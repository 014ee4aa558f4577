// What the journal's SQLite VFS shims (sqlite_fault_vfs, sqlite_wal_buffer) share: every
// VFS-level call except xOpen goes unchanged to the VFS below.
#pragma once

#include <sqlite3.h>

namespace longhaul::persistence {

/// Makes `shim` forward every VFS-level call except xOpen to `below`: iVersion (at most
/// 3), mxPathname and the optional methods as `below` has them, and pAppData = `below`.
/// The caller sets szOsFile, zName and xOpen.
void forward_vfs_calls(sqlite3_vfs& shim, sqlite3_vfs* below);

/// The VFS below a shim set up with forward_vfs_calls.
[[nodiscard]] inline sqlite3_vfs* vfs_below(sqlite3_vfs* shim) {
  return static_cast<sqlite3_vfs*>(shim->pAppData);
}

}  // namespace longhaul::persistence
