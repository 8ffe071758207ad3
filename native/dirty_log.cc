#include "dirty_log.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "dirty_bitmap.h"
#include "ioctl_table.h"

namespace vh {
namespace {

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::uint64_t Words(std::uint64_t pages) { return (pages + 63) / 64; }

ErrorFacts ModeError(const std::string& message) { return ErrorFacts::Misuse("ERR_DIRTY_LOG_MODE", message); }

// Whether any bit of words [first_word, end_word) is set.
bool AnySet(const std::uint64_t* bits, std::uint64_t first_word, std::uint64_t end_word) {
  for (std::uint64_t w = first_word; w < end_word; ++w) {
    if (bits[w] != 0) return true;
  }
  return false;
}

}  // namespace

const char* DirtyLogModeName(DirtyLogMode mode) {
  switch (mode) {
    case DirtyLogMode::kBitmap:
      return "bitmap";
    case DirtyLogMode::kManual:
      return "manual";
    case DirtyLogMode::kRing:
      return "ring";
  }
  return "unknown";
}

DirtyLogMode DirtyLog::Mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_;
}

std::uint32_t DirtyLog::RingBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ring_bytes_;
}

std::size_t DirtyLog::RingCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rings_.size();
}

std::optional<ErrorFacts> DirtyLog::EnableManualProtect(int vm_fd, bool want_initially_set, bool* initially_set) {
  std::lock_guard<std::mutex> lock(mu_);
  if (mode_ == DirtyLogMode::kRing) return ModeError("this VM uses the dirty ring; manual protect does not apply");
  int offered = ::ioctl(vm_fd, kVmCheckExtension.request, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  if (offered < 0) {
    int err = errno;
    return ErrorFacts::FromErrno(err, kVmCheckExtension.name);
  }
  if ((offered & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) == 0) {
    return ErrorFacts::FromErrno(EOPNOTSUPP, kEnableCap.name, {},
                                 "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is not offered by this kernel (Linux 5.3+)");
  }
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
  cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
  if (want_initially_set && (offered & KVM_DIRTY_LOG_INITIALLY_SET) != 0) cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
  if (::ioctl(vm_fd, kEnableCap.request, &cap) != 0) {
    int err = errno;
    return ErrorFacts::FromErrno(err, kEnableCap.name, {}, "capability MANUAL_DIRTY_LOG_PROTECT2");
  }
  mode_ = DirtyLogMode::kManual;
  *initially_set = (cap.args[0] & KVM_DIRTY_LOG_INITIALLY_SET) != 0;
  return std::nullopt;
}

bool DirtyLog::HandleRingFull() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handle_ring_full_;
}

std::optional<ErrorFacts> DirtyLog::EnableRing(int vm_fd, std::uint64_t bytes, bool prefer_acq_rel, bool handle_full,
                                               bool* acq_rel) {
  std::lock_guard<std::mutex> lock(mu_);
  if (mode_ != DirtyLogMode::kBitmap) {
    return ModeError(std::string("this VM already uses ") + DirtyLogModeName(mode_) + " dirty logging");
  }
  int with_acq_rel = ::ioctl(vm_fd, kVmCheckExtension.request, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
  int plain = ::ioctl(vm_fd, kVmCheckExtension.request, KVM_CAP_DIRTY_LOG_RING);
  bool use_acq_rel = with_acq_rel > 0 && (prefer_acq_rel || plain <= 0);
  int max = use_acq_rel ? with_acq_rel : plain;
  if (max <= 0) {
    return ErrorFacts::FromErrno(EOPNOTSUPP, kEnableCap.name, {},
                                 "KVM_CAP_DIRTY_LOG_RING is not offered by this kernel (Linux 5.11+); "
                                 "use bitmap or manual-protect dirty logging");
  }
  const std::uint64_t page = HostPageSize();
  if (bytes < page || (bytes & (bytes - 1)) != 0 || bytes > static_cast<std::uint64_t>(max)) {
    return ErrorFacts::InvalidArg("dirty ring size " + std::to_string(bytes) +
                                  " must be a power of two between the page size " + std::to_string(page) + " and " +
                                  std::to_string(max));
  }
  kvm_enable_cap cap{};
  cap.cap = use_acq_rel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
  cap.args[0] = bytes;
  if (::ioctl(vm_fd, kEnableCap.request, &cap) != 0) {
    int err = errno;
    // The size was checked above: EINVAL now means KVM saw a vCPU (kvm->created_vcpus).
    return ErrorFacts::FromErrno(err, kEnableCap.name, {},
                                 err == EINVAL ? "the dirty ring must be enabled before any vCPU is created"
                                               : "capability DIRTY_LOG_RING");
  }
  mode_ = DirtyLogMode::kRing;
  ring_bytes_ = static_cast<std::uint32_t>(bytes);
  handle_ring_full_ = handle_full;
  *acq_rel = use_acq_rel;
  return std::nullopt;
}

std::optional<ErrorFacts> DirtyLog::AttachRing(int vcpu_fd, std::uint32_t vcpu_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (mode_ != DirtyLogMode::kRing) return ModeError("enableDirtyRing() first: this VM has no dirty ring");
  for (const Ring& r : rings_) {
    if (r.vcpu_id == vcpu_id) return std::nullopt;
  }
  const auto offset = static_cast<off_t>(KVM_DIRTY_LOG_PAGE_OFFSET * HostPageSize());
  void* addr = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, offset);
  if (addr == MAP_FAILED) {
    int err = errno;
    return ErrorFacts::FromErrno(err, "mmap", {}, "mapping the vCPU dirty ring");
  }
  Ring ring;
  ring.mapping = Mapping(addr, ring_bytes_);
  ring.vcpu_id = vcpu_id;
  rings_.push_back(std::move(ring));
  return std::nullopt;
}

DirtyLog::SlotState& DirtyLog::StateLocked(const DirtySlot& slot) {
  SlotState& st = slots_[slot.slot];
  if (st.pages != slot.pages) {
    st.pages = slot.pages;
    st.kvm.assign(Words(slot.pages), 0);
    st.pending.assign(Words(slot.pages), 0);
  }
  return st;
}

void DirtyLog::NoteWrite(const DirtySlot& slot, std::uint64_t first, std::uint64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  SetBits(StateLocked(slot).pending.data(), first, count);
}

void DirtyLog::ForgetSlot(std::uint32_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_.erase(slot);
}

std::optional<ErrorFacts> DirtyLog::GetLocked(int vm_fd, const DirtySlot& slot, SlotState& st) {
  kvm_dirty_log log{};
  log.slot = slot.slot;
  log.dirty_bitmap = st.kvm.data();
  if (::ioctl(vm_fd, kGetDirtyLog.request, &log) == 0) return std::nullopt;
  int err = errno;
  std::string hint;
  if (err == ENOENT) {
    hint = "slot " + std::to_string(slot.slot) +
           " does not log dirty pages: register it with logDirtyPages or call setDirtyLogging()";
  }
  if (err == ENXIO) hint = "this VM uses the dirty ring; KVM has no dirty bitmap to return";
  return ErrorFacts::FromErrno(err, kGetDirtyLog.name, {}, hint);
}

std::optional<ErrorFacts> DirtyLog::GetLog(int vm_fd, const DirtySlot& slot, std::vector<std::uint64_t>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  SlotState& st = StateLocked(slot);
  if (auto error = GetLocked(vm_fd, slot, st)) return error;
  *out = st.kvm;
  return std::nullopt;
}

std::optional<ErrorFacts> DirtyLog::ClearLocked(int vm_fd, const DirtySlot& slot, const std::uint64_t* bits,
                                                std::uint64_t first, std::uint64_t count, std::int64_t* ns) {
  const std::uint64_t end = first + count;
  for (std::uint64_t at = first; at < end; at += kClearChunkPages) {
    std::uint64_t n = std::min(kClearChunkPages, end - at);
    if (!AnySet(bits, at / 64, Words(at + n))) continue;  // nothing to re-protect here
    kvm_clear_dirty_log clear{};
    clear.slot = slot.slot;
    clear.first_page = at;
    clear.num_pages = static_cast<std::uint32_t>(n);
    clear.dirty_bitmap = const_cast<std::uint64_t*>(bits + at / 64);
    std::int64_t t0 = NowNs();
    int r = ::ioctl(vm_fd, kClearDirtyLog.request, &clear);
    *ns += NowNs() - t0;
    if (r != 0) {
      int err = errno;
      return ErrorFacts::FromErrno(err, kClearDirtyLog.name);
    }
  }
  return std::nullopt;
}

std::optional<ErrorFacts> DirtyLog::Clear(int vm_fd, const DirtySlot& slot, std::uint64_t first,
                                          std::uint64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  if (mode_ != DirtyLogMode::kManual) {
    return ModeError("clearDirtyLog() needs manual-protect mode: call enableManualDirtyProtect() first");
  }
  if (count == 0 || first > slot.pages || count > slot.pages - first) {
    return ErrorFacts::OutOfRange("pages [" + std::to_string(first) + ", +" + std::to_string(count) +
                                  ") are not inside slot " + std::to_string(slot.slot) + " (" +
                                  std::to_string(slot.pages) + " pages)");
  }
  if (first % 64 != 0 || (count % 64 != 0 && first + count != slot.pages)) {
    return ErrorFacts::InvalidArg("KVM_CLEAR_DIRTY_LOG needs firstPage a multiple of 64 and numPages a multiple of "
                                  "64 unless the range ends at the end of the slot");
  }
  std::vector<std::uint64_t> ones(Words(slot.pages), ~0ULL);
  std::int64_t ns = 0;
  return ClearLocked(vm_fd, slot, ones.data(), first, count, &ns);
}

std::optional<ErrorFacts> DirtyLog::DrainRingsLocked(int vm_fd, const std::vector<DirtySlot>& all,
                                                     std::int64_t* scan_ns, std::int64_t* clear_ns) {
  std::int64_t t0 = NowNs();
  std::uint64_t harvested = 0;
  for (Ring& ring : rings_) {
    auto* gfns = reinterpret_cast<kvm_dirty_gfn*>(ring.mapping.Data());
    const std::uint32_t mask = static_cast<std::uint32_t>(ring.mapping.Size() / sizeof(kvm_dirty_gfn)) - 1;
    for (;;) {
      kvm_dirty_gfn* e = &gfns[ring.fetch & mask];
      // Acquire pairs with KVM's release of DIRTY: slot and offset are valid once it is seen.
      if ((__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY) == 0) break;
      std::uint32_t slot_id = e->slot & 0xffff;  // the high half is the address space (SMM)
      if ((e->slot >> 16) == 0) NoteRingEntryLocked(slot_id, e->offset, all);
      // Release: KVM may recycle the entry only after we are done reading it.
      __atomic_store_n(&e->flags, static_cast<std::uint32_t>(KVM_DIRTY_GFN_F_RESET), __ATOMIC_RELEASE);
      ++ring.fetch;
      ++harvested;
    }
  }
  std::int64_t t1 = NowNs();
  *scan_ns += t1 - t0;
  if (harvested == 0) return std::nullopt;
  int r = ::ioctl(vm_fd, kResetDirtyRings.request, 0);
  *clear_ns += NowNs() - t1;
  if (r < 0) {
    int err = errno;
    return ErrorFacts::FromErrno(err, kResetDirtyRings.name);
  }
  return std::nullopt;
}

void DirtyLog::NoteRingEntryLocked(std::uint32_t slot_id, std::uint64_t page, const std::vector<DirtySlot>& all) {
  for (const DirtySlot& s : all) {
    if (s.slot == slot_id) {
      if (page < s.pages) SetBits(StateLocked(s).pending.data(), page, 1);
      return;
    }
  }
  auto it = slots_.find(slot_id);
  if (it != slots_.end() && page < it->second.pages) {
    SetBits(it->second.pending.data(), page, 1);
    return;
  }
  orphans_.emplace_back(slot_id, page);
}

void DirtyLog::ReleaseRings() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  rings_.clear();
}

bool DirtyLog::DrainRings(int vm_fd) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mu_);
    std::int64_t scan_ns = 0;
    std::int64_t clear_ns = 0;
    return !DrainRingsLocked(vm_fd, {}, &scan_ns, &clear_ns);
  } catch (...) {
    return false;
  }
}

DirtyHarvestData DirtyLog::Harvest(int vm_fd, const DirtySlot& slot, const std::vector<DirtySlot>& all) noexcept {
  DirtyHarvestData out;
  try {
    std::lock_guard<std::mutex> lock(mu_);
    SlotState& st = StateLocked(slot);
    if (mode_ == DirtyLogMode::kRing) {
      std::vector<std::pair<std::uint32_t, std::uint64_t>> orphans;
      orphans.swap(orphans_);
      for (const auto& [slot_id, page] : orphans) {
        // `all` is authoritative here: an orphan of a slot that no longer logs is dropped.
        for (const DirtySlot& s : all) {
          if (s.slot == slot_id) NoteRingEntryLocked(slot_id, page, all);
        }
      }
      out.error = DrainRingsLocked(vm_fd, all, &out.scan_ns, &out.clear_ns);
      if (out.error) return out;
      out.bitmap.swap(st.pending);
      st.pending.assign(Words(slot.pages), 0);
    } else {
      std::int64_t t0 = NowNs();
      out.error = GetLocked(vm_fd, slot, st);
      out.scan_ns = NowNs() - t0;
      if (out.error) return out;
      if (mode_ == DirtyLogMode::kManual) {
        out.error = ClearLocked(vm_fd, slot, st.kvm.data(), 0, slot.pages, &out.clear_ns);
        if (out.error) return out;
      }
      out.bitmap.swap(st.pending);
      st.pending.assign(Words(slot.pages), 0);
      for (std::size_t i = 0; i < out.bitmap.size(); ++i) out.bitmap[i] |= st.kvm[i];
    }
  } catch (const std::bad_alloc&) {
    out.error = ErrorFacts::FromErrno(ENOMEM, "harvest");
    return out;
  }
  std::int64_t t0 = NowNs();
  out.pages = slot.pages;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(out.bitmap.data());
  out.dirty = Popcount(bytes, slot.pages);
  try {
    out.runs.resize(static_cast<std::size_t>(2 * CountRuns(bytes, slot.pages)));
  } catch (const std::bad_alloc&) {
    out.error = ErrorFacts::FromErrno(ENOMEM, "harvest");
    return out;
  }
  if (!out.runs.empty()) BitmapToRuns(bytes, slot.pages, out.runs.data());
  out.build_ns += NowNs() - t0;
  return out;
}

}  // namespace vh
