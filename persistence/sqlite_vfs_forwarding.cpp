// Forwarding of VFS-level calls for the journal's VFS shims (see sqlite_vfs_forwarding.hpp).
#include "persistence/sqlite_vfs_forwarding.hpp"

#include <algorithm>

namespace longhaul::persistence {

namespace {

int x_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  auto* inner = vfs_below(vfs);
  return inner->xDelete(inner, name, sync_dir);
}

int x_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  auto* inner = vfs_below(vfs);
  return inner->xAccess(inner, name, flags, out);
}

int x_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  auto* inner = vfs_below(vfs);
  return inner->xFullPathname(inner, name, n, out);
}

void* x_dl_open(sqlite3_vfs* vfs, const char* name) {
  auto* inner = vfs_below(vfs);
  return inner->xDlOpen(inner, name);
}

void x_dl_error(sqlite3_vfs* vfs, int n, char* msg) {
  auto* inner = vfs_below(vfs);
  inner->xDlError(inner, n, msg);
}

void (*x_dl_sym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  auto* inner = vfs_below(vfs);
  return inner->xDlSym(inner, handle, symbol);
}

void x_dl_close(sqlite3_vfs* vfs, void* handle) {
  auto* inner = vfs_below(vfs);
  inner->xDlClose(inner, handle);
}

int x_randomness(sqlite3_vfs* vfs, int n, char* out) {
  auto* inner = vfs_below(vfs);
  return inner->xRandomness(inner, n, out);
}

int x_sleep(sqlite3_vfs* vfs, int microseconds) {
  auto* inner = vfs_below(vfs);
  return inner->xSleep(inner, microseconds);
}

int x_current_time(sqlite3_vfs* vfs, double* out) {
  auto* inner = vfs_below(vfs);
  return inner->xCurrentTime(inner, out);
}

int x_get_last_error(sqlite3_vfs* vfs, int n, char* out) {
  auto* inner = vfs_below(vfs);
  return inner->xGetLastError != nullptr ? inner->xGetLastError(inner, n, out) : 0;
}

int x_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  auto* inner = vfs_below(vfs);
  return inner->xCurrentTimeInt64(inner, out);
}

int x_set_system_call(sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr fn) {
  auto* inner = vfs_below(vfs);
  return inner->xSetSystemCall(inner, name, fn);
}

sqlite3_syscall_ptr x_get_system_call(sqlite3_vfs* vfs, const char* name) {
  auto* inner = vfs_below(vfs);
  return inner->xGetSystemCall(inner, name);
}

const char* x_next_system_call(sqlite3_vfs* vfs, const char* name) {
  auto* inner = vfs_below(vfs);
  return inner->xNextSystemCall(inner, name);
}

}  // namespace

void forward_vfs_calls(sqlite3_vfs& shim, sqlite3_vfs* below) {
  shim.iVersion = std::min(below->iVersion, 3);
  shim.mxPathname = below->mxPathname;
  shim.pNext = nullptr;
  shim.pAppData = below;
  shim.xDelete = x_delete;
  shim.xAccess = x_access;
  shim.xFullPathname = x_full_pathname;
  shim.xDlOpen = below->xDlOpen != nullptr ? x_dl_open : nullptr;
  shim.xDlError = below->xDlError != nullptr ? x_dl_error : nullptr;
  shim.xDlSym = below->xDlSym != nullptr ? x_dl_sym : nullptr;
  shim.xDlClose = below->xDlClose != nullptr ? x_dl_close : nullptr;
  shim.xRandomness = x_randomness;
  shim.xSleep = x_sleep;
  shim.xCurrentTime = x_current_time;
  shim.xGetLastError = x_get_last_error;
  if (shim.iVersion >= 2)
    shim.xCurrentTimeInt64 = below->xCurrentTimeInt64 != nullptr ? x_current_time_int64 : nullptr;
  if (shim.iVersion >= 3) {
    shim.xSetSystemCall = below->xSetSystemCall != nullptr ? x_set_system_call : nullptr;
    shim.xGetSystemCall = below->xGetSystemCall != nullptr ? x_get_system_call : nullptr;
    shim.xNextSystemCall = below->xNextSystemCall != nullptr ? x_next_system_call : nullptr;
  }
}

}  // namespace longhaul::persistence
