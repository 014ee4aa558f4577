// The WAL-buffering VFS shim (see sqlite_wal_buffer.hpp).
#include "persistence/sqlite_wal_buffer.hpp"
#include "persistence/sqlite_vfs_forwarding.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <type_traits>

namespace longhaul::persistence {

namespace {

/// SQLite's WAL frame header (WAL_FRAME_HDRSIZE); its bytes 4-7 hold the database size in
/// pages after the commit for a commit frame, and 0 for every other frame.
constexpr int frame_header_bytes = 24;
/// The unix VFS writes at most 128 KiB - 1 bytes per call (seekAndWriteFd masks the
/// length with 0x1ffff), so the run is handed down in pieces below that.
constexpr std::size_t max_write_bytes = 124 * 1024;
/// A transaction larger than this (a cache spill, a huge batch) is written out as it goes.
constexpr std::size_t max_buffer_bytes = 1024 * 1024;

/// One open file. SQLite allocates szOsFile bytes for it and hands out the address of
/// `file`, the first member (so the struct must stay standard-layout).
struct shim_file {
  sqlite3_file file;              ///< what SQLite sees: pMethods = the shim's methods
  sqlite3_file* below;            ///< the file of the VFS below (its own allocation)
  bool wal;                       ///< buffered: opened with SQLITE_OPEN_WAL
  bool last_write_pending;        ///< the next write is the commit frame's page
  char* run;                      ///< buffered bytes, contiguous in the file
  std::size_t run_bytes;
  std::size_t run_capacity;
  sqlite3_int64 run_offset;       ///< file offset of run[0]
};

static_assert(std::is_standard_layout_v<shim_file>);

shim_file* of(sqlite3_file* f) { return reinterpret_cast<shim_file*>(f); }

/// Writes the buffered run to the file below (in pieces the unix VFS accepts) and empties
/// it, whatever the outcome: a failed transaction's frames are not written again.
int write_out(shim_file* f) {
  int rc = SQLITE_OK;
  for (std::size_t done = 0; done < f->run_bytes && rc == SQLITE_OK;) {
    auto n = std::min(max_write_bytes, f->run_bytes - done);
    rc = f->below->pMethods->xWrite(f->below, f->run + done, static_cast<int>(n),
                                    f->run_offset + static_cast<sqlite3_int64>(done));
    done += n;
  }
  f->run_bytes = 0;
  f->last_write_pending = false;
  return rc;
}

bool append(shim_file* f, const void* data, int n) {
  auto need = f->run_bytes + static_cast<std::size_t>(n);
  if (need > f->run_capacity) {
    auto cap = std::max<std::size_t>({need, f->run_capacity * 2, 64 * 1024});
    auto* grown = static_cast<char*>(sqlite3_realloc64(f->run, cap));
    if (grown == nullptr)
      return false;
    f->run = grown;
    f->run_capacity = cap;
  }
  std::memcpy(f->run + f->run_bytes, data, static_cast<std::size_t>(n));
  f->run_bytes = need;
  return true;
}

int x_close(sqlite3_file* file) {
  auto* f = of(file);
  (void) write_out(f);  // only a failed transaction leaves frames here: SQLite ignores them
  auto rc = f->below->pMethods ? f->below->pMethods->xClose(f->below) : SQLITE_OK;
  sqlite3_free(f->below);
  sqlite3_free(f->run);
  f->below = nullptr;
  f->run = nullptr;
  return rc;
}

int x_write(sqlite3_file* file, const void* data, int n, sqlite3_int64 offset) {
  auto* f = of(file);
  if (!f->wal)
    return f->below->pMethods->xWrite(f->below, data, n, offset);
  if (f->run_bytes > 0
      && offset != f->run_offset + static_cast<sqlite3_int64>(f->run_bytes))
    if (auto rc = write_out(f); rc != SQLITE_OK)
      return rc;
  if (f->run_bytes == 0)
    f->run_offset = offset;
  bool last = f->last_write_pending;
  if (!append(f, data, n)) {
    // No memory for the run: write it out and this write through.
    if (auto rc = write_out(f); rc != SQLITE_OK)
      return rc;
    return f->below->pMethods->xWrite(f->below, data, n, offset);
  }
  if (n == frame_header_bytes) {
    const auto* h = static_cast<const unsigned char*>(data);
    f->last_write_pending = (h[4] | h[5] | h[6] | h[7]) != 0;  // a commit frame's header
    return SQLITE_OK;
  }
  if (last || f->run_bytes >= max_buffer_bytes)
    return write_out(f);
  return SQLITE_OK;
}

/// Every other call on a WAL file sees the file as SQLite wrote it: the run goes first.
template <class Call>
int after_write_out(sqlite3_file* file, Call call) {
  auto* f = of(file);
  if (f->run_bytes > 0)
    if (auto rc = write_out(f); rc != SQLITE_OK)
      return rc;
  return call(f->below);
}

int x_read(sqlite3_file* file, void* data, int n, sqlite3_int64 offset) {
  return after_write_out(file, [&](sqlite3_file* b) { return b->pMethods->xRead(b, data, n, offset); });
}
int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  return after_write_out(file, [&](sqlite3_file* b) { return b->pMethods->xTruncate(b, size); });
}
int x_sync(sqlite3_file* file, int flags) {
  return after_write_out(file, [&](sqlite3_file* b) { return b->pMethods->xSync(b, flags); });
}
int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  return after_write_out(file, [&](sqlite3_file* b) { return b->pMethods->xFileSize(b, size); });
}
int x_file_control(sqlite3_file* file, int op, void* arg) {
  return after_write_out(file, [&](sqlite3_file* b) { return b->pMethods->xFileControl(b, op, arg); });
}
int x_fetch(sqlite3_file* file, sqlite3_int64 offset, int n, void** out) {
  return after_write_out(file, [&](sqlite3_file* b) {
    if (b->pMethods->iVersion < 3 || b->pMethods->xFetch == nullptr) {
      *out = nullptr;  // no mapping: SQLite reads instead
      return SQLITE_OK;
    }
    return b->pMethods->xFetch(b, offset, n, out);
  });
}

// Locks and shared memory belong to the database file and pass straight through.
int x_lock(sqlite3_file* file, int level) {
  auto* b = of(file)->below;
  return b->pMethods->xLock(b, level);
}
int x_unlock(sqlite3_file* file, int level) {
  auto* b = of(file)->below;
  return b->pMethods->xUnlock(b, level);
}
int x_check_reserved_lock(sqlite3_file* file, int* out) {
  auto* b = of(file)->below;
  return b->pMethods->xCheckReservedLock(b, out);
}
int x_sector_size(sqlite3_file* file) {
  auto* b = of(file)->below;
  return b->pMethods->xSectorSize(b);
}
int x_device_characteristics(sqlite3_file* file) {
  auto* b = of(file)->below;
  return b->pMethods->xDeviceCharacteristics(b);
}
// A file below without shared memory (io_methods version 1) cannot run in WAL mode: the
// journal refuses to open then (configure), and these calls fail instead of crashing.
bool has_shm(const sqlite3_file* b) {
  return b->pMethods->iVersion >= 2 && b->pMethods->xShmMap != nullptr;
}
int x_shm_map(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  auto* b = of(file)->below;
  return has_shm(b) ? b->pMethods->xShmMap(b, region, size, extend, out) : SQLITE_IOERR_SHMMAP;
}
int x_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  auto* b = of(file)->below;
  return has_shm(b) ? b->pMethods->xShmLock(b, offset, n, flags) : SQLITE_IOERR_SHMLOCK;
}
void x_shm_barrier(sqlite3_file* file) {
  auto* b = of(file)->below;
  if (has_shm(b))
    b->pMethods->xShmBarrier(b);
}
int x_shm_unmap(sqlite3_file* file, int delete_flag) {
  auto* b = of(file)->below;
  return has_shm(b) ? b->pMethods->xShmUnmap(b, delete_flag) : SQLITE_OK;
}
int x_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  auto* b = of(file)->below;
  if (b->pMethods->iVersion < 3 || b->pMethods->xUnfetch == nullptr)
    return SQLITE_OK;
  return b->pMethods->xUnfetch(b, offset, p);
}

const sqlite3_io_methods shim_methods = {
  3,           x_close,     x_read,        x_write,     x_truncate,
  x_sync,      x_file_size, x_lock,        x_unlock,    x_check_reserved_lock,
  x_file_control, x_sector_size, x_device_characteristics, x_shm_map, x_shm_lock,
  x_shm_barrier, x_shm_unmap, x_fetch,     x_unfetch,
};

/// A registered shim: the sqlite3_vfs SQLite calls (its pAppData: the VFS below) and
/// the name it points to.
struct shim_vfs {
  sqlite3_vfs vfs{};
  std::string name;
};

int x_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* below_vfs = vfs_below(vfs);
  auto* f = of(file);
  f->file.pMethods = nullptr;  // SQLite calls no xClose unless xOpen set pMethods
  f->below = static_cast<sqlite3_file*>(sqlite3_malloc(below_vfs->szOsFile));
  if (f->below == nullptr)
    return SQLITE_NOMEM;
  std::memset(f->below, 0, static_cast<std::size_t>(below_vfs->szOsFile));
  auto rc = below_vfs->xOpen(below_vfs, name, f->below, flags, out_flags);
  if (f->below->pMethods == nullptr) {  // nothing to close
    sqlite3_free(f->below);
    f->below = nullptr;
    return rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
  }
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->last_write_pending = false;
  f->run = nullptr;
  f->run_bytes = 0;
  f->run_capacity = 0;
  f->run_offset = 0;
  f->file.pMethods = &shim_methods;  // from here SQLite closes it, also after an error
  return rc;
}

}  // namespace

std::string wal_buffer_vfs_over(const std::string& base_vfs) {
  static std::mutex mtx;
  // Registered VFS objects must outlive every connection: they are never freed.
  static std::map<std::string, std::unique_ptr<shim_vfs>> shims;
  std::lock_guard guard{mtx};
  if (auto it = shims.find(base_vfs); it != shims.end())
    return it->second->name;
  auto* below = sqlite3_vfs_find(base_vfs.empty() ? nullptr : base_vfs.c_str());
  if (below == nullptr)
    throw std::invalid_argument{"no SQLite VFS named '" + base_vfs + "'"};
  auto shim = std::make_unique<shim_vfs>();
  shim->name = "longhaul_walbuf" + (base_vfs.empty() ? std::string{} : "+" + base_vfs);
  auto& v = shim->vfs;
  forward_vfs_calls(v, below);
  v.szOsFile = static_cast<int>(sizeof(shim_file));
  v.zName = shim->name.c_str();
  v.xOpen = x_open;
  if (auto rc = sqlite3_vfs_register(&v, 0); rc != SQLITE_OK)
    throw std::runtime_error{"registering the SQLite VFS '" + shim->name + "' failed ("
                             + sqlite3_errstr(rc) + ")"};
  auto name = shim->name;
  shims.emplace(base_vfs, std::move(shim));
  return name;
}

}  // namespace longhaul::persistence
