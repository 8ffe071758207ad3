// DirtyLog: KVM dirty-page harvesting for one VM, in the three modes KVM offers, plus the
// VMM's own writes, which KVM cannot see.
//   bitmap  KVM_GET_DIRTY_LOG returns and clears (re-protects) in one call;
//   manual  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: GET only reads, KVM_CLEAR_DIRTY_LOG re-protects,
//           in bounded chunks so one call never write-protects a whole large slot at once;
//   ring    KVM_CAP_DIRTY_LOG_RING(_ACQ_REL): per-vCPU rings of {slot, offset} entries, mapped
//           from each vCPU fd, harvested then recycled with KVM_RESET_DIRTY_RINGS.
// Every slot also has a pending bitmap: pages the VMM wrote (writeGuest) and ring entries
// harvested for it; a harvest ORs it in and clears it. Plain C++ behind one mutex so a harvest
// can run on the libuv pool while the JS thread keeps writing guest memory.
#ifndef VH_NATIVE_DIRTY_LOG_H_
#define VH_NATIVE_DIRTY_LOG_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"
#include "guest_memory.h"  // Mapping

namespace vh {

// How KVM reports dirty pages for a VM; fixed once manual protect or the ring is enabled.
enum class DirtyLogMode { kBitmap, kManual, kRing };

// The JS name of a mode ('bitmap', 'manual', 'ring').
const char* DirtyLogModeName(DirtyLogMode mode);

// A dirty-logged slot as the harvest needs to know it.
struct DirtySlot {
  std::uint32_t slot = 0;
  std::uint64_t pages = 0;
};

// One harvest's outcome: plain data, built off the JS thread.
struct DirtyHarvestData {
  std::optional<ErrorFacts> error;
  std::vector<std::uint64_t> bitmap;  // ceil(pages / 64) words
  std::vector<std::uint32_t> runs;    // [first, count] pairs
  std::uint64_t pages = 0;
  std::uint64_t dirty = 0;
  std::int64_t scan_ns = 0;   // KVM_GET_DIRTY_LOG or the ring walk
  std::int64_t clear_ns = 0;  // KVM_CLEAR_DIRTY_LOG chunks or KVM_RESET_DIRTY_RINGS
  std::int64_t build_ns = 0;  // merge, count, run list
};

class DirtyLog {
 public:
  // Pages one KVM_CLEAR_DIRTY_LOG call may cover (1 GiB of 4 KiB pages): bounds how long the
  // kernel holds the MMU lock and flushes TLBs per call.
  static constexpr std::uint64_t kClearChunkPages = 1ULL << 18;

  DirtyLogMode Mode() const;
  std::uint32_t RingBytes() const;

  // KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2). INITIALLY_SET is added when wanted and offered;
  // *initially_set says whether it was. Affects slots registered afterwards.
  std::optional<ErrorFacts> EnableManualProtect(int vm_fd, bool want_initially_set, bool* initially_set);
  // KVM_ENABLE_CAP(DIRTY_LOG_RING_ACQ_REL, else DIRTY_LOG_RING) with `bytes` per vCPU ring.
  // Must precede every vCPU; *acq_rel says which capability was used.
  // handle_full: vCPUs drain the rings themselves on KVM_EXIT_DIRTY_RING_FULL (see DrainRings).
  std::optional<ErrorFacts> EnableRing(int vm_fd, std::uint64_t bytes, bool prefer_acq_rel, bool handle_full,
                                       bool* acq_rel);
  bool HandleRingFull() const;
  // Maps the ring of a vCPU (KVM_DIRTY_LOG_PAGE_OFFSET of its fd). The mapping holds its own
  // reference to the vCPU file, so it stays valid after the fd is closed.
  std::optional<ErrorFacts> AttachRing(int vcpu_fd, std::uint32_t vcpu_id);
  std::size_t RingCount() const;
  // Unmaps every ring (Vm close): the mappings would otherwise keep the vCPUs and the VM alive.
  void ReleaseRings() noexcept;
  // Harvests every ring into the pending bitmaps and resets them; for the vCPU thread on
  // KVM_EXIT_DIRTY_RING_FULL. Slots are sized from earlier harvests. False on failure.
  bool DrainRings(int vm_fd) noexcept;

  // Records a VMM write of pages [first, first + count) of a dirty-logged slot.
  void NoteWrite(const DirtySlot& slot, std::uint64_t first, std::uint64_t count);
  // Drops the per-slot state of a removed slot.
  void ForgetSlot(std::uint32_t slot);

  // The raw KVM_GET_DIRTY_LOG bitmap of a slot, into a per-slot buffer reused across calls.
  std::optional<ErrorFacts> GetLog(int vm_fd, const DirtySlot& slot, std::vector<std::uint64_t>* out);
  // KVM_CLEAR_DIRTY_LOG of every page in [first, first + count) (manual mode only), chunked.
  std::optional<ErrorFacts> Clear(int vm_fd, const DirtySlot& slot, std::uint64_t first, std::uint64_t count);

  // Collects, re-arms and merges the VMM writes of `slot`; `all` lists every dirty-logged slot
  // (ring entries for the others are kept for their own harvest). Safe off the JS thread.
  DirtyHarvestData Harvest(int vm_fd, const DirtySlot& slot, const std::vector<DirtySlot>& all) noexcept;

 private:
  struct SlotState {
    std::uint64_t pages = 0;
    std::vector<std::uint64_t> kvm;      // KVM_GET_DIRTY_LOG target, reused
    std::vector<std::uint64_t> pending;  // VMM writes + ring entries not yet harvested
  };
  struct Ring {
    Mapping mapping;
    std::uint32_t vcpu_id = 0;
    std::uint32_t fetch = 0;  // next entry to look at; free-running, masked on use
  };

  // State of `slot`, (re)sized for `pages` (a slot re-added with another size starts clean).
  SlotState& StateLocked(const DirtySlot& slot);
  std::optional<ErrorFacts> GetLocked(int vm_fd, const DirtySlot& slot, SlotState& st);
  // KVM_CLEAR_DIRTY_LOG of the set bits of `bits` (a slot-sized bitmap) in [first, first+count).
  std::optional<ErrorFacts> ClearLocked(int vm_fd, const DirtySlot& slot, const std::uint64_t* bits,
                                        std::uint64_t first, std::uint64_t count, std::int64_t* ns);
  // Sets the pending bit of a ring entry, or keeps it as an orphan until the slot is known.
  void NoteRingEntryLocked(std::uint32_t slot_id, std::uint64_t page, const std::vector<DirtySlot>& all);
  // Moves every published ring entry into the pending bitmaps, then resets the rings.
  std::optional<ErrorFacts> DrainRingsLocked(int vm_fd, const std::vector<DirtySlot>& all,
                                             std::int64_t* scan_ns, std::int64_t* clear_ns);

  mutable std::mutex mu_;
  DirtyLogMode mode_ = DirtyLogMode::kBitmap;
  std::uint32_t ring_bytes_ = 0;
  bool handle_ring_full_ = false;
  std::map<std::uint32_t, SlotState> slots_;
  std::vector<Ring> rings_;
  // Ring entries drained (vCPU thread) for a slot whose size was not known yet: {slot, page}.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> orphans_;
};

}  // namespace vh

#endif  // VH_NATIVE_DIRTY_LOG_H_
