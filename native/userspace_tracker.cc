#include "userspace_tracker.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <limits>
#include <string>

#include "dirty_bitmap.h"
#include "errors.h"
#include "js_args.h"

// Debian 12 ships Linux 6.1 headers; PAGEMAP_SCAN and UFFD_FEATURE_WP_ASYNC arrived in 6.7.
// Values from include/uapi/linux/fs.h and userfaultfd.h of 6.7+; the kernel we run on decides
// whether they work (UFFDIO_API reports the features it has, old kernels answer ENOTTY).
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};
struct pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static_assert(sizeof(page_region) == 24, "page_region is three u64");
static_assert(sizeof(pm_scan_arg) == 96, "pm_scan_arg layout (Linux 6.7 UAPI)");

namespace vh {
namespace {

// Page indices travel to JS as u32 (Uint32Array runs): 2^32 pages is 16 TiB of 4 KiB pages.
constexpr std::uint64_t kMaxPages = 0xffffffffULL;
// Enough regions per PAGEMAP_SCAN call that 1% scattered dirt on 1 GiB needs one or two calls;
// capped so a huge region does not pin megabytes of scratch.
constexpr std::size_t kMaxRegionsPerScan = 65536;

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The fill byte of fillPages()/fillRuns().
std::uint8_t ByteArg(Napi::Env env, const Napi::Value& v) {
  return static_cast<std::uint8_t>(JsToUint(env, v, "byte", 255));
}

int OpenUffd(int flags) { return static_cast<int>(::syscall(SYS_userfaultfd, flags)); }

}  // namespace

Napi::Function UserspaceDirtyTracker::DefineClass(Napi::Env env) {
  return ObjectWrap<UserspaceDirtyTracker>::DefineClass(
      env, "UserspaceDirtyTracker",
      {
          InstanceMethod<&UserspaceDirtyTracker::Write>("write"),
          InstanceMethod<&UserspaceDirtyTracker::Read>("read"),
          InstanceMethod<&UserspaceDirtyTracker::FillPages>("fillPages"),
          InstanceMethod<&UserspaceDirtyTracker::FillRuns>("fillRuns"),
          InstanceMethod<&UserspaceDirtyTracker::ReadFromFd>("readFromFd"),
          InstanceMethod<&UserspaceDirtyTracker::Harvest>("harvest"),
          InstanceMethod<&UserspaceDirtyTracker::HarvestAsync>("harvestAsync"),
          InstanceMethod<&UserspaceDirtyTracker::Close>("close"),
          InstanceMethod<&UserspaceDirtyTracker::Features>("features"),
          InstanceAccessor<&UserspaceDirtyTracker::Closed>("closed"),
          InstanceAccessor<&UserspaceDirtyTracker::Size>("size"),
          InstanceAccessor<&UserspaceDirtyTracker::PageSize>("pageSize"),
          InstanceAccessor<&UserspaceDirtyTracker::PageCount>("pageCount"),
      });
}

UserspaceDirtyTracker::UserspaceDirtyTracker(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<UserspaceDirtyTracker>(info) {
  Napi::Env env = info.Env();
  long ps = ::sysconf(_SC_PAGESIZE);
  if (ps <= 0) ThrowError(env, ErrorFacts::FromErrno(errno != 0 ? errno : EINVAL, "sysconf"));
  page_size_ = static_cast<std::size_t>(ps);

  std::uint64_t size = JsToU64(env, info[0], "size");
  if (size == 0) ThrowInvalidArg(env, "size must be > 0");
  std::uint64_t pages = size / page_size_ + (size % page_size_ != 0 ? 1 : 0);
  if (pages > kMaxPages) ThrowInvalidArg(env, "size exceeds 2^32 host pages");
  pages_ = static_cast<std::size_t>(pages);
  std::size_t len = pages_ * page_size_;

  bool memfd = false;
  bool thp = false;
  std::size_t regions_per_scan = std::min(pages_ / 2 + 1, kMaxRegionsPerScan);
  if (std::optional<Napi::Object> opts = JsToOptionalObject(env, info[1], "options")) {
    if (std::optional<std::string> backing = ReadOptionalString(env, *opts, "backing")) {
      if (*backing == "memfd") {
        memfd = true;
      } else if (*backing != "anonymous") {
        ThrowInvalidArg(env, "backing must be 'anonymous' or 'memfd'");
      }
    }
    thp = ReadOptionalBool(env, *opts, "transparentHugePages").value_or(false);
    Napi::Value rps = opts->Get("regionsPerScan");
    if (!rps.IsUndefined()) {
      std::uint64_t n = JsToU64(env, rps, "regionsPerScan");
      if (n < 1 || n > kMaxRegionsPerScan) ThrowInvalidArg(env, "regionsPerScan must be 1..65536");
      regions_per_scan = static_cast<std::size_t>(n);
    }
  }

  // Memory first: the uffd registration needs the range.
  void* addr = MAP_FAILED;
  if (memfd) {
    UniqueFd mfd(static_cast<int>(::syscall(SYS_memfd_create, "vh-dirty-tracked", MFD_CLOEXEC)));
    if (!mfd.Valid()) ThrowError(env, ErrorFacts::FromErrno(errno, "memfd_create"));
    if (::ftruncate(mfd.Get(), static_cast<off_t>(len)) != 0) {
      ThrowError(env, ErrorFacts::FromErrno(errno, "ftruncate"));
    }
    // The mapping keeps the shmem object alive; the fd closes at the end of this scope.
    addr = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd.Get(), 0);
  } else {
    addr = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  if (addr == MAP_FAILED) ThrowError(env, ErrorFacts::FromErrno(errno, "mmap"));
  mapping_ = Mapping(addr, len);
  if (thp && ::madvise(addr, len, MADV_HUGEPAGE) != 0) {
    ThrowError(env, ErrorFacts::FromErrno(errno, "madvise", {}, "is transparent_hugepage enabled?"));
  }

  // Unprivileged processes may only track user-mode faults (vm.unprivileged_userfaultfd=0);
  // that is all we need, because kernel writes are tracked by the WP bit, not by faults.
  uffd_.Reset(OpenUffd(O_CLOEXEC | O_NONBLOCK));
  if (!uffd_.Valid() && errno == EPERM) {
    uffd_.Reset(OpenUffd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    user_mode_only_ = uffd_.Valid();
  }
  if (!uffd_.Valid()) {
    ThrowError(env, ErrorFacts::FromErrno(errno, "userfaultfd", {},
                                          "needs CONFIG_USERFAULTFD; as non-root set vm.unprivileged_userfaultfd=1"));
  }

  // Ask the kernel what it offers on a throwaway context: a failed UFFDIO_API can leave a
  // context unusable on older kernels, and requesting an unknown feature fails with EINVAL.
  std::uint64_t offered = 0;
  {
    UniqueFd probe(OpenUffd(O_CLOEXEC | O_NONBLOCK | (user_mode_only_ ? UFFD_USER_MODE_ONLY : 0)));
    uffdio_api api{};
    api.api = UFFD_API;
    if (!probe.Valid() || ::ioctl(probe.Get(), UFFDIO_API, &api) != 0) {
      ThrowError(env, ErrorFacts::FromErrno(errno, "UFFDIO_API"));
    }
    offered = api.features;
  }
  if ((offered & UFFD_FEATURE_WP_ASYNC) == 0) {
    ThrowError(env, ErrorFacts::FromErrno(EOPNOTSUPP, "UFFDIO_API", {},
                                          "UFFD_FEATURE_WP_ASYNC needs Linux 6.7 or newer"));
  }
  std::uint64_t want = UFFD_FEATURE_WP_ASYNC | (offered & UFFD_FEATURE_WP_UNPOPULATED);
  if (memfd) {
    if ((offered & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) == 0) {
      ThrowError(env, ErrorFacts::FromErrno(EOPNOTSUPP, "UFFDIO_API", {},
                                            "write-protecting shmem needs UFFD_FEATURE_WP_HUGETLBFS_SHMEM"));
    }
    want |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  }
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = want;
  if (::ioctl(uffd_.Get(), UFFDIO_API, &api) != 0) ThrowError(env, ErrorFacts::FromErrno(errno, "UFFDIO_API"));
  // WP_ASYNC implies WP_UNPOPULATED (the kernel turns it on): never-touched pages are armed too.
  wp_unpopulated_ = (api.features & UFFD_FEATURE_WP_UNPOPULATED) != 0;

  uffdio_register reg{};
  reg.range.start = reinterpret_cast<std::uintptr_t>(addr);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(uffd_.Get(), UFFDIO_REGISTER, &reg) != 0) {
    ThrowError(env, ErrorFacts::FromErrno(errno, "UFFDIO_REGISTER"));
  }
  if (!wp_unpopulated_ && ::madvise(addr, len, MADV_POPULATE_WRITE) != 0) {
    // Without WP_UNPOPULATED a missing PTE cannot carry the WP bit: populate first.
    ThrowError(env, ErrorFacts::FromErrno(errno, "madvise(MADV_POPULATE_WRITE)"));
  }
  uffdio_writeprotect wp{};
  wp.range = reg.range;
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  if (::ioctl(uffd_.Get(), UFFDIO_WRITEPROTECT, &wp) != 0) {
    ThrowError(env, ErrorFacts::FromErrno(errno, "UFFDIO_WRITEPROTECT"));
  }

  pagemap_.Reset(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap_.Valid()) ThrowError(env, ErrorFacts::FromErrno(errno, "open", "/proc/self/pagemap"));

  regions_.resize(3 * regions_per_scan);
  bitmap_.resize((pages_ + 63) / 64);
}

UserspaceDirtyTracker::~UserspaceDirtyTracker() { Release(); }

void UserspaceDirtyTracker::Release() noexcept {
  mapping_.Reset();
  uffd_.Reset();
  pagemap_.Reset();
  std::vector<std::uint64_t>().swap(regions_);
  std::vector<std::uint64_t>().swap(bitmap_);
}

void UserspaceDirtyTracker::CheckOpen(Napi::Env env) const {
  if (close_requested_ || mapping_.Data() == nullptr) ThrowError(env, ErrorFacts::Misuse("ERR_CLOSED", "the tracker is closed"));
}

void UserspaceDirtyTracker::CheckRange(Napi::Env env, std::uint64_t offset, std::uint64_t len) const {
  const std::uint64_t size = mapping_.Size();
  if (offset > size || len > size - offset) {
    ThrowError(env, ErrorFacts::OutOfRange("range [" + std::to_string(offset) + ", +" + std::to_string(len) +
                                           ") exceeds the region of " + std::to_string(size) + " bytes"));
  }
}

void UserspaceDirtyTracker::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  std::uint64_t offset = JsToU64(env, info[0], "offset");
  JsBytes data = JsToBytes(env, info[1], "data");
  CheckRange(env, offset, data.len);
  if (data.len != 0) std::memcpy(Base() + offset, data.data, data.len);
}

Napi::Value UserspaceDirtyTracker::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  std::uint64_t offset = JsToU64(env, info[0], "offset");
  std::uint64_t len = JsToU64(env, info[1], "length");
  CheckRange(env, offset, len);
  return Napi::Buffer<std::uint8_t>::Copy(env, Base() + offset, static_cast<std::size_t>(len));
}

void UserspaceDirtyTracker::FillPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Napi::Uint32Array pages = JsToUint32Array(env, info[0], "pages");
  std::uint8_t byte = ByteArg(env, info[1]);
  const std::uint32_t* p = pages.Data();
  std::size_t n = pages.ElementLength();
  // Validate everything before touching memory: a bad index must not leave half the work done.
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] >= pages_) {
      ThrowError(env, ErrorFacts::OutOfRange("page " + std::to_string(p[i]) + " >= pageCount " +
                                             std::to_string(pages_)));
    }
  }
  for (std::size_t i = 0; i < n; ++i) std::memset(Base() + p[i] * page_size_, byte, page_size_);
}

void UserspaceDirtyTracker::FillRuns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Napi::Uint32Array runs = JsToUint32Array(env, info[0], "runs");
  std::uint8_t byte = ByteArg(env, info[1]);
  const std::uint32_t* r = runs.Data();
  std::size_t n = runs.ElementLength();
  if (n % 2 != 0) ThrowInvalidArg(env, "runs must hold [first, count] pairs");
  for (std::size_t i = 0; i < n; i += 2) {
    if (static_cast<std::uint64_t>(r[i]) + r[i + 1] > pages_) {
      ThrowError(env, ErrorFacts::OutOfRange("run [" + std::to_string(r[i]) + ", +" + std::to_string(r[i + 1]) +
                                             ") exceeds pageCount " + std::to_string(pages_)));
    }
  }
  for (std::size_t i = 0; i < n; i += 2) {
    std::memset(Base() + r[i] * page_size_, byte, r[i + 1] * page_size_);
  }
}

Napi::Value UserspaceDirtyTracker::ReadFromFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int fd = static_cast<int>(JsToUint(env, info[0], "fd", INT_MAX));
  std::uint64_t offset = JsToU64(env, info[1], "offset");
  std::uint64_t len = JsToU64(env, info[2], "length");
  bool positioned = !info[3].IsUndefined();
  constexpr auto kMaxOffset = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
  off_t position = positioned ? static_cast<off_t>(JsToUint(env, info[3], "position", kMaxOffset)) : 0;
  CheckRange(env, offset, len);
  std::uint8_t* dst = Base() + offset;
  std::size_t want = static_cast<std::size_t>(len);
  std::size_t done = 0;
  while (done < want) {
    ssize_t n = positioned ? ::pread(fd, dst + done, want - done, position + static_cast<off_t>(done))
                           : ::read(fd, dst + done, want - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowError(env, ErrorFacts::FromErrno(errno, positioned ? "pread" : "read"));
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return Napi::Number::New(env, static_cast<double>(done));
}

UserspaceDirtyTracker::ScanResult UserspaceDirtyTracker::Scan() noexcept {
  ScanResult r;
  std::fill(bitmap_.begin(), bitmap_.end(), 0);
  const std::uint64_t base = reinterpret_cast<std::uintptr_t>(Base());
  const std::uint64_t end = base + mapping_.Size();
  const std::uint64_t vec_len = regions_.size() / 3;
  pm_scan_arg arg{};
  arg.size = sizeof(arg);
  // Report written pages and write-protect them again in the same walk; CHECK_WPASYNC makes
  // the kernel refuse (EPERM) rather than silently miss pages that are not uffd-WP armed.
  arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
  arg.start = base;
  arg.end = end;
  arg.vec = reinterpret_cast<std::uintptr_t>(regions_.data());
  arg.vec_len = vec_len;
  arg.category_mask = PAGE_IS_WRITTEN;
  arg.return_mask = PAGE_IS_WRITTEN;

  for (;;) {
    std::int64_t t0 = NowNs();
    long n = ::ioctl(pagemap_.Get(), PAGEMAP_SCAN, &arg);
    r.scan_ns += NowNs() - t0;
    if (n < 0 && errno == EINTR) continue;  // nothing reported yet for this call: redo it
    if (n < 0) {
      r.err = errno;
      return r;
    }
    const auto* regs = reinterpret_cast<const page_region*>(regions_.data());
    for (long i = 0; i < n; ++i) {
      SetBits(bitmap_.data(), (regs[i].start - base) / page_size_, (regs[i].end - regs[i].start) / page_size_);
    }
    // The quirk: a non-full vector means the whole range was walked (and re-armed) even when
    // walk_end says otherwise; only a full vector means "call again from walk_end".
    if (static_cast<std::uint64_t>(n) < vec_len || arg.walk_end >= end) break;
    arg.start = arg.walk_end;
  }
  r.dirty = Popcount(reinterpret_cast<const std::uint8_t*>(bitmap_.data()), pages_);
  return r;
}

Napi::Object UserspaceDirtyTracker::HarvestResult(Napi::Env env, const ScanResult& r,
                                                  const std::vector<std::uint32_t>* runs) {
  if (r.err != 0) {
    ThrowError(env, ErrorFacts::FromErrno(r.err, "PAGEMAP_SCAN", "/proc/self/pagemap",
                                          r.err == ENOTTY ? "PAGEMAP_SCAN needs Linux 6.7 or newer" : ""));
  }
  std::int64_t t1 = NowNs();
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(bitmap_.data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("bitmap", Napi::Buffer<std::uint8_t>::Copy(env, bytes, bitmap_.size() * sizeof(std::uint64_t)));
  if (runs != nullptr) {
    Napi::Uint32Array arr = Napi::Uint32Array::New(env, runs->size());
    if (!runs->empty()) std::memcpy(arr.Data(), runs->data(), runs->size() * sizeof(std::uint32_t));
    out.Set("runs", arr);
  } else {
    out.Set("runs", RunsToJs(env, bytes, pages_));
  }
  out.Set("dirtyPages", static_cast<double>(r.dirty));
  out.Set("scanNs", static_cast<double>(r.scan_ns));
  // Re-arming happens inside the PAGEMAP_SCAN walk (PM_SCAN_WP_MATCHING): no separate clear.
  out.Set("clearNs", 0.0);
  out.Set("buildNs", static_cast<double>(r.build_ns + (NowNs() - t1)));
  return out;
}

Napi::Value UserspaceDirtyTracker::Harvest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  CheckIdle(env);
  return HarvestResult(env, Scan(), nullptr);
}

// Runs Scan() and the run list on the libuv pool; only plain C++ data crosses threads. The
// tracker is pinned (persistent reference) and marked busy, so close() and a second harvest
// wait or fail instead of racing the worker.
class UserspaceDirtyTracker::HarvestWorker : public Napi::AsyncWorker {
 public:
  HarvestWorker(Napi::Env env, UserspaceDirtyTracker* tracker)
      : Napi::AsyncWorker(env, "UserspaceDirtyTracker.harvestAsync"),
        tracker_(tracker),
        deferred_(Napi::Promise::Deferred::New(env)) {
    self_ = Napi::Persistent(tracker->Value());
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    result_ = tracker_->Scan();
    if (result_.err != 0) return;
    std::int64_t t0 = NowNs();
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(tracker_->bitmap_.data());
    runs_.resize(static_cast<std::size_t>(2 * CountRuns(bytes, tracker_->pages_)));
    if (!runs_.empty()) BitmapToRuns(bytes, tracker_->pages_, runs_.data());
    result_.build_ns = NowNs() - t0;
  }

  void OnOK() override {
    Napi::Env env = Env();
    tracker_->busy_ = false;
    try {
      deferred_.Resolve(tracker_->HarvestResult(env, result_, &runs_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
    tracker_->FinishPendingClose();
  }

  void OnError(const Napi::Error& e) override {
    tracker_->busy_ = false;
    deferred_.Reject(e.Value());
    tracker_->FinishPendingClose();
  }

 private:
  UserspaceDirtyTracker* tracker_;
  Napi::ObjectReference self_;
  Napi::Promise::Deferred deferred_;
  ScanResult result_;
  std::vector<std::uint32_t> runs_;
};

Napi::Value UserspaceDirtyTracker::HarvestAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  CheckIdle(env);
  auto* worker = new HarvestWorker(env, this);  // AsyncWorker deletes itself after OnOK/OnError
  busy_ = true;
  worker->Queue();
  return worker->Promise();
}

void UserspaceDirtyTracker::CheckIdle(Napi::Env env) const {
  if (busy_) ThrowError(env, ErrorFacts::Misuse("ERR_BUSY", "a harvest is already running on this tracker"));
}

void UserspaceDirtyTracker::FinishPendingClose() noexcept {
  if (close_requested_) Release();
}

void UserspaceDirtyTracker::Close(const Napi::CallbackInfo&) {
  // A running harvest still reads the mapping: unmap when it finishes.
  close_requested_ = true;
  if (!busy_) Release();
}

Napi::Value UserspaceDirtyTracker::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), close_requested_ || mapping_.Data() == nullptr);
}

Napi::Value UserspaceDirtyTracker::Size(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(pages_ * page_size_));
}

Napi::Value UserspaceDirtyTracker::PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(page_size_));
}

Napi::Value UserspaceDirtyTracker::PageCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(pages_));
}

Napi::Value UserspaceDirtyTracker::Features(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("wpAsync", true);
  out.Set("wpUnpopulated", wp_unpopulated_);
  out.Set("userModeOnly", user_mode_only_);
  return out;
}

}  // namespace vh
