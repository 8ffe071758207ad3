#include "guest_memory.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <iterator>
#include <utility>

#include "ioctl_table.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << MAP_HUGE_SHIFT)
#endif

namespace vh {
namespace {

constexpr std::uint64_t k2MiB = 2ULL << 20;
constexpr std::uint64_t k1GiB = 1ULL << 30;

// Facts for the call that just failed, reading errno before any allocation can clobber it.
ErrorFacts SyscallError(const char* syscall) {
  int err = errno;
  return ErrorFacts::FromErrno(err, syscall);
}

std::string Hex(std::uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, value);
  return buf;
}

// Huge page size of a hugetlb backing; 0 for the others.
std::uint64_t HugePageSize(Backing backing) {
  switch (backing) {
    case Backing::kHugetlb2M:
      return k2MiB;
    case Backing::kHugetlb1G:
      return k1GiB;
    default:
      return 0;
  }
}

std::string HugetlbHint(Backing backing) {
  const char* dir = backing == Backing::kHugetlb1G ? "hugepages-1048576kB" : "hugepages-2048kB";
  return std::string("no free huge pages of that size: reserve them in /sys/kernel/mm/hugepages/") +
         dir + "/nr_hugepages (or use backing 'anonymous')";
}

// Maps `spec.size` bytes for `spec.backing`; `memfd` receives the file for memfd backing.
std::optional<ErrorFacts> MapBacking(const RegionSpec& spec, Mapping* out, UniqueFd* memfd) {
  const auto size = static_cast<std::size_t>(spec.size);
  int prot = PROT_READ | PROT_WRITE;
  void* addr = MAP_FAILED;
  switch (spec.backing) {
    case Backing::kAnonymous:
      // NORESERVE: guest RAM is committed page by page as the guest touches it.
      addr = ::mmap(nullptr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (addr == MAP_FAILED) return SyscallError("mmap");
      break;
    case Backing::kMemfd: {
      std::string name = "vh-guest-slot-" + std::to_string(spec.slot);
      UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC));
      if (!fd.Valid()) return SyscallError("memfd_create");
      if (::ftruncate(fd.Get(), static_cast<off_t>(spec.size)) != 0) {
        return SyscallError("ftruncate");
      }
      addr = ::mmap(nullptr, size, prot, MAP_SHARED, fd.Get(), 0);
      if (addr == MAP_FAILED) return SyscallError("mmap");
      *memfd = std::move(fd);
      break;
    }
    case Backing::kHugetlb2M:
    case Backing::kHugetlb1G: {
      int huge = spec.backing == Backing::kHugetlb1G ? MAP_HUGE_1GB : MAP_HUGE_2MB;
      // No MAP_NORESERVE: without reserved pages we want ENOMEM now, not SIGBUS in the guest.
      addr = ::mmap(nullptr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | huge, -1, 0);
      if (addr == MAP_FAILED) {
        int err = errno;
        return ErrorFacts::FromErrno(err, "mmap", {}, err == ENOMEM ? HugetlbHint(spec.backing) : "");
      }
      break;
    }
  }
  Mapping mapping(addr, size);
  // A fork() (child_process with a native helper) must not copy or share guest RAM.
  if (::madvise(addr, size, MADV_DONTFORK) != 0) return SyscallError("madvise");
  if (spec.transparent_huge_pages.has_value()) {
    int advice = *spec.transparent_huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
    if (::madvise(addr, size, advice) != 0) {
      int err = errno;
      return ErrorFacts::FromErrno(err, "madvise", {},
                                   err == EINVAL ? "kernel built without transparent huge pages" : "");
    }
  }
  *out = std::move(mapping);
  return std::nullopt;
}

std::optional<ErrorFacts> Register(int vm_fd, std::uint32_t slot, std::uint32_t flags,
                                   std::uint64_t gpa, std::uint64_t size, const void* host) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<std::uintptr_t>(host);
  if (::ioctl(vm_fd, kSetUserMemoryRegion.request, &region) == 0) return std::nullopt;
  int err = errno;
  std::string hint;
  if (err == EEXIST) hint = "guest-physical range overlaps another memory slot";
  if (err == EINVAL && (flags & KVM_MEM_READONLY) != 0) hint = "needs KVM_CAP_READONLY_MEM";
  return ErrorFacts::FromErrno(err, kSetUserMemoryRegion.name, {}, hint);
}

}  // namespace

const char* BackingName(Backing backing) {
  switch (backing) {
    case Backing::kAnonymous:
      return "anonymous";
    case Backing::kMemfd:
      return "memfd";
    case Backing::kHugetlb2M:
      return "hugetlb2M";
    case Backing::kHugetlb1G:
      return "hugetlb1G";
  }
  return "unknown";
}

std::optional<Backing> ParseBacking(const std::string& name) {
  for (Backing b : {Backing::kAnonymous, Backing::kMemfd, Backing::kHugetlb2M, Backing::kHugetlb1G}) {
    if (name == BackingName(b)) return b;
  }
  return std::nullopt;
}

std::uint64_t HostPageSize() {
  static const std::uint64_t size = [] {
    long s = ::sysconf(_SC_PAGESIZE);
    return s > 0 ? static_cast<std::uint64_t>(s) : 4096;
  }();
  return size;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    Reset();
    addr_ = other.addr_;
    size_ = other.size_;
    other.addr_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void Mapping::Reset() noexcept {
  if (addr_ != nullptr) ::munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
}

std::uint32_t Region::Flags() const noexcept {
  std::uint32_t flags = 0;
  if (spec.log_dirty_pages) flags |= KVM_MEM_LOG_DIRTY_PAGES;
  if (spec.readonly) flags |= KVM_MEM_READONLY;
  return flags;
}

std::map<std::uint64_t, Region>::iterator GuestMemory::FindSlot(std::uint32_t slot) {
  for (auto it = regions_.begin(); it != regions_.end(); ++it) {
    if (it->second.spec.slot == slot) return it;
  }
  return regions_.end();
}

std::optional<ErrorFacts> GuestMemory::Validate(const RegionSpec& spec) const {
  const std::uint64_t page = HostPageSize();
  if (spec.slot >= slot_limit_) {
    return ErrorFacts::InvalidArg("slot " + std::to_string(spec.slot) + " is out of range: KVM_CAP_NR_MEMSLOTS is " +
                                  std::to_string(slot_limit_));
  }
  for (const auto& [gpa, region] : regions_) {
    if (region.spec.slot == spec.slot) {
      return ErrorFacts::InvalidArg("slot " + std::to_string(spec.slot) + " is already in use; remove it first");
    }
  }
  if (spec.size == 0) return ErrorFacts::InvalidArg("size must be greater than 0");
  if (spec.size % page != 0) {
    return ErrorFacts::InvalidArg("size " + Hex(spec.size) + " is not a multiple of the host page size " + Hex(page));
  }
  if (spec.guest_phys_addr % page != 0) {
    return ErrorFacts::InvalidArg("guestPhysAddr " + Hex(spec.guest_phys_addr) +
                                  " is not aligned to the host page size " + Hex(page));
  }
  if (spec.guest_phys_addr + spec.size < spec.guest_phys_addr) {
    return ErrorFacts::InvalidArg("guestPhysAddr + size overflows 64 bits");
  }
  if (std::uint64_t huge = HugePageSize(spec.backing); huge != 0) {
    if (spec.size % huge != 0) {
      return ErrorFacts::InvalidArg("size " + Hex(spec.size) + " is not a multiple of the " +
                                    BackingName(spec.backing) + " page size " + Hex(huge));
    }
    if (spec.transparent_huge_pages.has_value()) {
      return ErrorFacts::InvalidArg("transparentHugePages does not apply to backing " +
                                    std::string(BackingName(spec.backing)));
    }
  }
  return std::nullopt;
}

std::optional<ErrorFacts> GuestMemory::Add(int vm_fd, const RegionSpec& spec) {
  if (auto error = Validate(spec)) return error;
  Region region;
  region.spec = spec;
  if (auto error = MapBacking(spec, &region.mapping, &region.memfd)) return error;
  if (auto error = Register(vm_fd, spec.slot, region.Flags(), spec.guest_phys_addr, spec.size,
                            region.mapping.Data())) {
    return error;  // `region` unmaps itself
  }
  regions_.emplace(spec.guest_phys_addr, std::move(region));
  return std::nullopt;
}

std::optional<ErrorFacts> GuestMemory::Remove(int vm_fd, std::uint32_t slot) {
  auto it = FindSlot(slot);
  if (it == regions_.end()) return ErrorFacts::InvalidArg("slot " + std::to_string(slot) + " has no memory region");
  // KVM must forget the host address before it is unmapped.
  if (auto error = Register(vm_fd, slot, 0, it->second.spec.guest_phys_addr, 0, nullptr)) return error;
  regions_.erase(it);
  return std::nullopt;
}

std::optional<ErrorFacts> GuestMemory::SetDirtyLogging(int vm_fd, std::uint32_t slot, bool on) {
  auto it = FindSlot(slot);
  if (it == regions_.end()) return ErrorFacts::InvalidArg("slot " + std::to_string(slot) + " has no memory region");
  Region& region = it->second;
  if (region.spec.log_dirty_pages == on) return std::nullopt;
  std::uint32_t flags = region.Flags() ^ KVM_MEM_LOG_DIRTY_PAGES;
  if (auto error = Register(vm_fd, slot, flags, region.spec.guest_phys_addr, region.spec.size,
                            region.mapping.Data())) {
    return error;
  }
  region.spec.log_dirty_pages = on;
  return std::nullopt;
}

std::byte* GuestMemory::Locate(std::uint64_t gpa, std::uint64_t len, ErrorFacts* error) const {
  // The last region starting at or below gpa is the only one that can contain it.
  auto it = regions_.upper_bound(gpa);
  if (it != regions_.begin()) {
    const Region& region = std::prev(it)->second;
    std::uint64_t offset = gpa - region.spec.guest_phys_addr;
    if (offset < region.spec.size && len <= region.spec.size - offset) {
      return region.mapping.Data() + offset;
    }
    if (offset < region.spec.size) {
      *error = ErrorFacts::OutOfRange("guest range at gpa " + Hex(gpa) + " (+" + Hex(len) +
                                      ") runs past the end of slot " + std::to_string(region.spec.slot) + " at " +
                                      Hex(region.End()));
      return nullptr;
    }
  }
  *error = ErrorFacts::OutOfRange("gpa " + Hex(gpa) + " is not in any memory region");
  return nullptr;
}

std::vector<const Region*> GuestMemory::List() const {
  std::vector<const Region*> out;
  out.reserve(regions_.size());
  for (const auto& [gpa, region] : regions_) out.push_back(&region);
  return out;
}

}  // namespace vh
