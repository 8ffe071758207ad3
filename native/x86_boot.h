// x86 boot-mode entry: the segment, control-register and page-table state a fresh vCPU needs
// to start at an entry point in real, flat 32-bit protected or 64-bit long mode, so tests and
// tiny guests run without firmware. Pure: these functions edit plain kvm_sregs/kvm_regs and
// write tables through GuestMemory; the KVM ioctls that load the result stay in vcpu.cc.
#ifndef VH_NATIVE_X86_BOOT_H_
#define VH_NATIVE_X86_BOOT_H_

#include <cstdint>
#include <optional>

#include "errors.h"
#include "guest_memory.h"
#include "ioctl_table.h"

namespace vh {

// The highest entry point each mode can reach without paging tricks.
inline constexpr std::uint64_t kRealModeEntryMax = 0xfffff;        // 1 MiB - 1 (segment:offset)
inline constexpr std::uint64_t kProtectedModeEntryMax = 0xffffffff;  // 4 GiB - 1 (flat segments)

// Where long-mode entry puts its tables in guest memory.
struct LongModeLayout {
  std::uint64_t page_table_gpa = 0;  // kLongModePageTableBytes, 4 KiB aligned
  std::uint64_t gdt_gpa = 0;         // kLongModeGdtBytes
};

// PML4 + one PDPT + four page directories of 2 MiB pages: the low 4 GiB identity-mapped.
inline constexpr std::uint64_t kLongModePageTableBytes = 6 * 4096;
// Null, 64-bit code (selector 0x08) and data (0x10) descriptors.
inline constexpr std::uint64_t kLongModeGdtBytes = 3 * 8;

// Real mode at `entry` (<= kRealModeEntryMax): CS is entry's 64 KiB segment, the data
// segments are 0, PE/PG and EFER are cleared. Returns the instruction pointer to load.
std::uint64_t EnterRealMode(kvm_sregs* s, std::uint64_t entry);

// Flat 32-bit protected mode: code 0x08 and data 0x10 spanning 4 GiB, paging and EFER off.
// KVM loads the hidden descriptor parts from sregs, so no GDT has to exist in guest memory.
void EnterProtectedMode(kvm_sregs* s);

// Writes the identity page tables and the GDT `layout` names into guest memory. When it
// cannot - ERR_INVALID_ARG for misaligned tables, ERR_OUT_OF_RANGE for a range outside guest
// memory - it returns the facts and has written nothing.
std::optional<ErrorFacts> WriteLongModeTables(GuestMemory& memory, const LongModeLayout& layout);

// 64-bit long mode through the tables WriteLongModeTables() wrote: CR3, PAE, LME/LMA, PG.
void EnterLongMode(kvm_sregs* s, const LongModeLayout& layout);

// General registers that start execution at `rip`: all zero but RFLAGS' reserved bit 1.
kvm_regs EntryRegs(std::uint64_t rip);

}  // namespace vh

#endif  // VH_NATIVE_X86_BOOT_H_
