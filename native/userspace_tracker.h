// UserspaceDirtyTracker: dirty-page tracking for plain memory without KVM. A native-owned
// mapping is registered with userfaultfd in async write-protect mode (UFFD_FEATURE_WP_ASYNC:
// the kernel resolves the WP fault itself, no handler thread); PAGEMAP_SCAN on
// /proc/self/pagemap then returns the written pages and write-protects them again in one
// ioctl, the userspace analogue of KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG.
// See ../shared/recipes/dirty-tracking.md for the mechanism choice and the walk_end quirk.
#ifndef VH_NATIVE_USERSPACE_TRACKER_H_
#define VH_NATIVE_USERSPACE_TRACKER_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "guest_memory.h"  // Mapping: the owned mmap()
#include "unique_fd.h"

namespace vh {

class UserspaceDirtyTracker : public Napi::ObjectWrap<UserspaceDirtyTracker> {
 public:
  // Builds the JS class `UserspaceDirtyTracker` for this env.
  static Napi::Function DefineClass(Napi::Env env);

  // new UserspaceDirtyTracker(size, { backing?: 'anonymous'|'memfd', transparentHugePages? }):
  // maps `size` bytes (rounded up to the host page size) and arms write tracking on all of it.
  explicit UserspaceDirtyTracker(const Napi::CallbackInfo& info);
  ~UserspaceDirtyTracker() override;

 private:
  // write(offset, data): copies data into the region.
  void Write(const Napi::CallbackInfo& info);
  // read(offset, length): a Buffer copy of the region bytes.
  Napi::Value Read(const Napi::CallbackInfo& info);
  // fillPages(pages: Uint32Array, byte): memset each listed page (dirties it).
  void FillPages(const Napi::CallbackInfo& info);
  // fillRuns(runs: Uint32Array of [first, count] pairs, byte): memset each run.
  void FillRuns(const Napi::CallbackInfo& info);
  // readFromFd(fd, offset, length, position?): pread() into the region, i.e. a kernel write.
  Napi::Value ReadFromFd(const Napi::CallbackInfo& info);
  // harvest(): { bitmap, runs, dirtyPages, scanNs, clearNs, buildNs }; re-arms what it reports.
  Napi::Value Harvest(const Napi::CallbackInfo& info);
  // harvestAsync(): the same on the libuv pool, as a Promise; ERR_BUSY while one is running.
  Napi::Value HarvestAsync(const Napi::CallbackInfo& info);
  // Unmaps and closes the fds (after a running harvestAsync finishes); idempotent.
  void Close(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value PageSize(const Napi::CallbackInfo& info);
  Napi::Value PageCount(const Napi::CallbackInfo& info);
  // Which uffd features were granted, for diagnostics: { wpAsync, wpUnpopulated, userModeOnly }.
  Napi::Value Features(const Napi::CallbackInfo& info);

  // Throws ERR_CLOSED after close().
  void CheckOpen(Napi::Env env) const;
  // Throws ERR_OUT_OF_RANGE unless [offset, offset + len) lies inside the region.
  void CheckRange(Napi::Env env, std::uint64_t offset, std::uint64_t len) const;
  // Throws ERR_BUSY while a harvestAsync() runs.
  void CheckIdle(Napi::Env env) const;
  void Release() noexcept;
  void FinishPendingClose() noexcept;

  class HarvestWorker;
  // What one PAGEMAP_SCAN pass left in bitmap_; no Napi values, so it can run off the JS thread.
  struct ScanResult {
    int err = 0;  // errno of a failed ioctl
    std::int64_t scan_ns = 0;
    std::int64_t build_ns = 0;
    std::uint64_t dirty = 0;
  };
  ScanResult Scan() noexcept;
  // The JS harvest object from bitmap_; `runs` when the worker built them already.
  Napi::Object HarvestResult(Napi::Env env, const ScanResult& r, const std::vector<std::uint32_t>* runs);
  // First byte of the region (nullptr once closed).
  std::uint8_t* Base() const noexcept { return reinterpret_cast<std::uint8_t*>(mapping_.Data()); }

  std::size_t page_size_ = 0;
  std::size_t pages_ = 0;
  Mapping mapping_;
  UniqueFd uffd_;
  UniqueFd pagemap_;
  bool wp_unpopulated_ = false;
  bool user_mode_only_ = false;
  bool busy_ = false;             // a HarvestWorker owns bitmap_/regions_ and reads the mapping
  bool close_requested_ = false;  // close() ran; Release() may wait for the worker
  // Reused across harvests: the kernel's region vector and the bitmap.
  std::vector<std::uint64_t> regions_;  // page_region triples (start, end, categories)
  std::vector<std::uint64_t> bitmap_;
};

}  // namespace vh

#endif  // VH_NATIVE_USERSPACE_TRACKER_H_
