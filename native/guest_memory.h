// Guest memory owned by the addon: one host mapping per KVM memory slot. JS only ever names
// guest-physical addresses; host addresses never leave this file's callers.
#ifndef VH_NATIVE_GUEST_MEMORY_H_
#define VH_NATIVE_GUEST_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"
#include "unique_fd.h"

namespace vh {

// Where a region's pages come from.
enum class Backing { kAnonymous, kMemfd, kHugetlb2M, kHugetlb1G };

// The JS name of a backing ('anonymous', 'memfd', 'hugetlb2M', 'hugetlb1G').
const char* BackingName(Backing backing);
// Parses a JS backing name; nullopt when unknown.
std::optional<Backing> ParseBacking(const std::string& name);

// What addMemoryRegion() asked for, already type-checked.
struct RegionSpec {
  std::uint32_t slot = 0;
  std::uint64_t guest_phys_addr = 0;
  std::uint64_t size = 0;
  bool log_dirty_pages = false;
  bool readonly = false;
  Backing backing = Backing::kAnonymous;
  std::optional<bool> transparent_huge_pages;  // unset: leave the system default alone
};

// An owned mmap(); munmap() on destruction.
class Mapping {
 public:
  Mapping() noexcept = default;
  Mapping(void* addr, std::size_t size) noexcept : addr_(addr), size_(size) {}
  ~Mapping() { Reset(); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(Mapping&& other) noexcept : addr_(other.addr_), size_(other.size_) {
    other.addr_ = nullptr;
    other.size_ = 0;
  }
  Mapping& operator=(Mapping&& other) noexcept;

  std::byte* Data() const noexcept { return static_cast<std::byte*>(addr_); }
  std::size_t Size() const noexcept { return size_; }
  void Reset() noexcept;

 private:
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

// One registered slot: its spec, its host mapping and (memfd backing) the file behind it.
struct Region {
  RegionSpec spec;
  Mapping mapping;
  UniqueFd memfd;

  // KVM_MEM_* flags for KVM_SET_USER_MEMORY_REGION.
  std::uint32_t Flags() const noexcept;
  std::uint64_t End() const noexcept { return spec.guest_phys_addr + spec.size; }
};

// The slots of one VM. Not thread-safe: the owning Vm serialises calls (JS thread today).
// Failures come back as ErrorFacts so the caller decides how to raise them.
class GuestMemory {
 public:
  explicit GuestMemory(std::uint32_t slot_limit) : slot_limit_(slot_limit) {}

  // Validates, maps and registers a region with KVM_SET_USER_MEMORY_REGION on vm_fd.
  std::optional<ErrorFacts> Add(int vm_fd, const RegionSpec& spec);
  // Unregisters the slot (size 0), then unmaps it.
  std::optional<ErrorFacts> Remove(int vm_fd, std::uint32_t slot);
  // Re-registers the slot with KVM_MEM_LOG_DIRTY_PAGES set or cleared.
  std::optional<ErrorFacts> SetDirtyLogging(int vm_fd, std::uint32_t slot, bool on);

  // The host bytes backing [gpa, gpa + len), which must lie inside one region; nullptr and
  // `error` set otherwise.
  std::byte* Locate(std::uint64_t gpa, std::uint64_t len, ErrorFacts* error) const;

  // Every region, by guest-physical address.
  std::vector<const Region*> List() const;
  // Unmaps everything without telling KVM: only once the VM fd is closed.
  void Clear() noexcept { regions_.clear(); }

  std::uint32_t SlotLimit() const noexcept { return slot_limit_; }

 private:
  // The region registered under `slot`, or regions_.end().
  std::map<std::uint64_t, Region>::iterator FindSlot(std::uint32_t slot);
  std::optional<ErrorFacts> Validate(const RegionSpec& spec) const;

  std::uint32_t slot_limit_;
  std::map<std::uint64_t, Region> regions_;  // keyed by guest_phys_addr; KVM forbids overlap
};

// sysconf(_SC_PAGESIZE), read once.
std::uint64_t HostPageSize();

}  // namespace vh

#endif  // VH_NATIVE_GUEST_MEMORY_H_
