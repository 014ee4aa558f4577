// The fault-injecting SQLite VFS (see sqlite_fault_vfs.hpp): forwards every call to the
// default VFS and, on command, fails writes, fsyncs or growth past a simulated disk size.
// Flow: tests -> journal -> SQLite -> this VFS -> default VFS -> disk.
#include "persistence/sqlite_fault_vfs.hpp"
#include "persistence/sqlite_vfs_forwarding.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace longhaul::persistence {

namespace {

constexpr const char* vfs_name = "longhaul_fault";

// --- control state (set by tests, read by the I/O methods) -------------------------

std::atomic<int> write_fault{static_cast<int>(injected_fault::none)};
// Writes still allowed before `write_fault` strikes; signed so that concurrent
// decrements past zero stay negative instead of wrapping around.
std::atomic<std::int64_t> writes_before_fault{0};
std::atomic<bool> sync_fault{false};
std::atomic<std::uint64_t> byte_limit{0};
std::atomic<std::uint64_t> writes_counter{0};

// --- size accounting for limit_total_bytes -------------------------------------------
// Several connections open the same database and WAL file, so sizes are kept per path
// (each file counted once) with a reference count; unnamed temporary files get a
// unique key. The total is the sum over files currently open through this VFS.

struct tracked_file {
  std::uint64_t size = 0;
  int refs = 0;
};

struct size_registry {
  std::mutex mtx;
  std::unordered_map<std::string, tracked_file> files;  // references stay valid on rehash
  std::uint64_t total = 0;
  std::uint64_t next_temp_id = 0;
};

size_registry& sizes() {
  static size_registry instance;
  return instance;
}

// Sets the recorded size of `f` to `new_size`, keeping the total consistent.
// Precondition: the registry mutex is held.
void set_size_locked(size_registry& reg, tracked_file& f, std::uint64_t new_size) {
  reg.total = reg.total - f.size + new_size;
  f.size = new_size;
}

// Would growing `f` to `new_size` push the total beyond the simulated capacity?
bool exceeds_limit_locked(const size_registry& reg, const tracked_file& f,
                          std::uint64_t new_size) {
  auto limit = byte_limit.load();
  if (limit == 0 || new_size <= f.size)
    return false;
  return reg.total + (new_size - f.size) > limit;
}

// --- the wrapped file ------------------------------------------------------------

// Our sqlite3_file: this header, immediately followed by the real VFS's file object
// (szOsFile of our VFS = sizeof(fault_file) + the real szOsFile).
struct fault_file {
  sqlite3_file base;          // must come first: SQLite sees only this
  sqlite3_file* real;         // points just past this header
  tracked_file* tracked;      // entry in the size registry (stable address)
  std::string* key;           // registry key, heap-allocated and owned by this file
};

fault_file* as_fault(sqlite3_file* f) {
  return reinterpret_cast<fault_file*>(f);
}

sqlite3_file* real_of(sqlite3_file* f) {
  return as_fault(f)->real;
}

// Drops the file's registry entry (on close or failed open).
void untrack(fault_file* ff) {
  if (ff->key == nullptr)
    return;
  auto& reg = sizes();
  {
    std::lock_guard<std::mutex> guard{reg.mtx};
    if (--ff->tracked->refs == 0) {
      reg.total -= ff->tracked->size;
      reg.files.erase(*ff->key);
    }
  }
  delete ff->key;
  ff->key = nullptr;
  ff->tracked = nullptr;
}

int x_close(sqlite3_file* f) {
  auto* ff = as_fault(f);
  int rc = ff->real->pMethods->xClose(ff->real);
  untrack(ff);
  return rc;
}

int x_read(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  auto* real = real_of(f);
  return real->pMethods->xRead(real, buf, amount, offset);
}

int x_write(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  auto* ff = as_fault(f);
  writes_counter.fetch_add(1);
  switch (static_cast<injected_fault>(write_fault.load())) {
    case injected_fault::none:
      break;
    case injected_fault::io_error:
      if (writes_before_fault.fetch_sub(1) <= 0)
        return SQLITE_IOERR_WRITE;
      break;
    case injected_fault::disk_full:
      if (writes_before_fault.fetch_sub(1) <= 0)
        return SQLITE_FULL;
      break;
  }
  auto end = static_cast<std::uint64_t>(offset) + static_cast<std::uint64_t>(amount);
  auto& reg = sizes();
  {
    // Reserve the growth before writing so that two files growing concurrently
    // cannot both slip under the limit.
    std::lock_guard<std::mutex> guard{reg.mtx};
    if (exceeds_limit_locked(reg, *ff->tracked, end))
      return SQLITE_FULL;
    if (end > ff->tracked->size)
      set_size_locked(reg, *ff->tracked, end);
  }
  int rc = ff->real->pMethods->xWrite(ff->real, buf, amount, offset);
  if (rc != SQLITE_OK) {
    // The reservation may overstate the file now; learn the truth from the file.
    sqlite3_int64 actual = 0;
    if (ff->real->pMethods->xFileSize(ff->real, &actual) == SQLITE_OK) {
      std::lock_guard<std::mutex> guard{reg.mtx};
      set_size_locked(reg, *ff->tracked, static_cast<std::uint64_t>(actual));
    }
  }
  return rc;
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  auto* ff = as_fault(f);
  auto new_size = static_cast<std::uint64_t>(size);
  auto& reg = sizes();
  {
    std::lock_guard<std::mutex> guard{reg.mtx};
    if (exceeds_limit_locked(reg, *ff->tracked, new_size))
      return SQLITE_FULL;
  }
  int rc = ff->real->pMethods->xTruncate(ff->real, size);
  if (rc == SQLITE_OK) {
    std::lock_guard<std::mutex> guard{reg.mtx};
    set_size_locked(reg, *ff->tracked, new_size);
  }
  return rc;
}

int x_sync(sqlite3_file* f, int flags) {
  if (sync_fault.load())
    return SQLITE_IOERR_FSYNC;
  auto* real = real_of(f);
  return real->pMethods->xSync(real, flags);
}

int x_file_size(sqlite3_file* f, sqlite3_int64* out) {
  auto* real = real_of(f);
  return real->pMethods->xFileSize(real, out);
}

int x_lock(sqlite3_file* f, int level) {
  auto* real = real_of(f);
  return real->pMethods->xLock(real, level);
}

int x_unlock(sqlite3_file* f, int level) {
  auto* real = real_of(f);
  return real->pMethods->xUnlock(real, level);
}

int x_check_reserved_lock(sqlite3_file* f, int* out) {
  auto* real = real_of(f);
  return real->pMethods->xCheckReservedLock(real, out);
}

int x_file_control(sqlite3_file* f, int op, void* arg) {
  auto* ff = as_fault(f);
  int rc = ff->real->pMethods->xFileControl(ff->real, op, arg);
  if (rc == SQLITE_OK && op == SQLITE_FCNTL_SIZE_HINT) {
    // The default VFS may preallocate on a size hint without any xWrite.
    sqlite3_int64 actual = 0;
    if (ff->real->pMethods->xFileSize(ff->real, &actual) == SQLITE_OK) {
      auto& reg = sizes();
      std::lock_guard<std::mutex> guard{reg.mtx};
      set_size_locked(reg, *ff->tracked, static_cast<std::uint64_t>(actual));
    }
  }
  return rc;
}

int x_sector_size(sqlite3_file* f) {
  auto* real = real_of(f);
  return real->pMethods->xSectorSize(real);
}

int x_device_characteristics(sqlite3_file* f) {
  auto* real = real_of(f);
  return real->pMethods->xDeviceCharacteristics(real);
}

int x_shm_map(sqlite3_file* f, int page, int page_size, int extend, void volatile** out) {
  auto* real = real_of(f);
  return real->pMethods->xShmMap(real, page, page_size, extend, out);
}

int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  auto* real = real_of(f);
  return real->pMethods->xShmLock(real, offset, n, flags);
}

void x_shm_barrier(sqlite3_file* f) {
  auto* real = real_of(f);
  real->pMethods->xShmBarrier(real);
}

int x_shm_unmap(sqlite3_file* f, int delete_flag) {
  auto* real = real_of(f);
  return real->pMethods->xShmUnmap(real, delete_flag);
}

int x_fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  auto* real = real_of(f);
  return real->pMethods->xFetch(real, offset, amount, out);
}

int x_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  auto* real = real_of(f);
  return real->pMethods->xUnfetch(real, offset, p);
}

// One method table per io-methods version, so that a wrapped file never advertises
// methods its real file lacks (SQLite checks iVersion before calling xShm*/xFetch).
constexpr sqlite3_io_methods make_methods(int version) {
  return sqlite3_io_methods{
    version,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    version >= 2 ? x_shm_map : nullptr,
    version >= 2 ? x_shm_lock : nullptr,
    version >= 2 ? x_shm_barrier : nullptr,
    version >= 2 ? x_shm_unmap : nullptr,
    version >= 3 ? x_fetch : nullptr,
    version >= 3 ? x_unfetch : nullptr,
  };
}

const sqlite3_io_methods methods_v1 = make_methods(1);
const sqlite3_io_methods methods_v2 = make_methods(2);
const sqlite3_io_methods methods_v3 = make_methods(3);

const sqlite3_io_methods* methods_for(const sqlite3_io_methods* real) {
  if (real->iVersion >= 3)
    return &methods_v3;
  if (real->iVersion == 2)
    return &methods_v2;
  return &methods_v1;
}

// --- the VFS ---------------------------------------------------------------------

int x_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags,
           int* out_flags) {
  auto* ff = as_fault(f);
  ff->base.pMethods = nullptr;  // SQLite calls xClose only when pMethods is set
  ff->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(fault_file));
  ff->tracked = nullptr;
  ff->key = nullptr;
  auto* inner = vfs_below(vfs);
  int rc = inner->xOpen(inner, name, ff->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (ff->real->pMethods != nullptr)
      ff->real->pMethods->xClose(ff->real);
    return rc;
  }
  sqlite3_int64 initial = 0;
  if (ff->real->pMethods->xFileSize(ff->real, &initial) != SQLITE_OK)
    initial = 0;
  try {
    auto& reg = sizes();
    std::lock_guard<std::mutex> guard{reg.mtx};
    std::string key = name != nullptr ? std::string{name}
                                      : "<temp>#" + std::to_string(reg.next_temp_id++);
    ff->key = new std::string{key};
    auto& entry = reg.files[key];
    ++entry.refs;
    // Re-read on every open: the file may have changed while nobody had it open.
    set_size_locked(reg, entry, static_cast<std::uint64_t>(initial));
    ff->tracked = &entry;
  } catch (const std::bad_alloc&) {
    delete ff->key;
    ff->key = nullptr;
    ff->real->pMethods->xClose(ff->real);
    return SQLITE_NOMEM;
  }
  ff->base.pMethods = methods_for(ff->real->pMethods);
  return SQLITE_OK;
}

sqlite3_vfs fault_vfs{};

void register_vfs() {
  auto* inner = sqlite3_vfs_find(nullptr);
  if (inner == nullptr)
    throw std::runtime_error("sqlite_fault_vfs: SQLite has no default VFS to wrap");
  forward_vfs_calls(fault_vfs, inner);
  fault_vfs.szOsFile = static_cast<int>(sizeof(fault_file)) + inner->szOsFile;
  fault_vfs.zName = vfs_name;
  fault_vfs.xOpen = x_open;
  if (int rc = sqlite3_vfs_register(&fault_vfs, 0); rc != SQLITE_OK)
    throw std::runtime_error(std::string{"sqlite_fault_vfs: registering failed: "}
                             + sqlite3_errstr(rc));
}

}  // namespace

std::string sqlite_fault_vfs::install() {
  static std::once_flag once;
  // A throwing register_vfs leaves the flag unset, so a later install() retries.
  std::call_once(once, register_vfs);
  return vfs_name;
}

void sqlite_fault_vfs::fail_writes(injected_fault fault, std::uint64_t after_n_writes) {
  // Arm the countdown before the fault so that no write sees the fault with a stale count.
  writes_before_fault.store(static_cast<std::int64_t>(
    std::min<std::uint64_t>(after_n_writes, INT64_MAX)));
  write_fault.store(static_cast<int>(fault));
}

void sqlite_fault_vfs::fail_syncs(bool on) {
  sync_fault.store(on);
}

void sqlite_fault_vfs::limit_total_bytes(std::uint64_t bytes) {
  byte_limit.store(bytes);
}

void sqlite_fault_vfs::heal() {
  write_fault.store(static_cast<int>(injected_fault::none));
  writes_before_fault.store(0);
  sync_fault.store(false);
  byte_limit.store(0);
}

std::uint64_t sqlite_fault_vfs::writes_seen() {
  return writes_counter.load();
}

}  // namespace longhaul::persistence
