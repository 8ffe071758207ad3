#include "x86_boot.h"

#include <cstring>
#include <vector>

namespace vh {
namespace {

constexpr std::uint64_t kCr0Pe = 1ull << 0;
constexpr std::uint64_t kCr0Et = 1ull << 4;
constexpr std::uint64_t kCr0Pg = 1ull << 31;
constexpr std::uint64_t kCr4Pae = 1ull << 5;
constexpr std::uint64_t kEferLme = 1ull << 8;
constexpr std::uint64_t kEferLma = 1ull << 10;

constexpr std::uint16_t kCodeSelector = 0x08;
constexpr std::uint16_t kDataSelector = 0x10;
constexpr std::uint8_t kCodeType = 11;  // execute/read, accessed
constexpr std::uint8_t kDataType = 3;   // read/write, accessed

constexpr std::uint64_t kPageSize = 4096;
constexpr std::uint64_t kPresentWritable = 0x3;
constexpr std::uint64_t kHugePage = 0x80;  // a PD entry that maps 2 MiB directly

// The descriptors EnterLongMode() loads, as they must also sit in the guest's GDT: a guest
// that reloads a segment register reads them from memory.
constexpr std::uint64_t kGdt[] = {0, 0x00af9a000000ffffull, 0x00cf92000000ffffull};
static_assert(sizeof(kGdt) == kLongModeGdtBytes, "GDT size is part of the layout contract");

kvm_segment FlatSegment(std::uint16_t selector, std::uint8_t type, bool code64) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = code64 ? 0 : 1;
  s.s = 1;
  s.l = code64 ? 1 : 0;
  s.g = 1;
  return s;
}

// A busy TSS descriptor: VMX refuses entry to protected/long mode with an unusable TR.
kvm_segment TaskSegment() {
  kvm_segment s{};
  s.limit = 0x67;
  s.type = 11;
  s.present = 1;
  return s;
}

// Flat segments for every selector register, with a 64-bit or 32-bit code segment.
void LoadFlatSegments(kvm_sregs* s, bool code64) {
  s->cs = FlatSegment(kCodeSelector, kCodeType, code64);
  for (kvm_segment* seg : {&s->ds, &s->es, &s->fs, &s->gs, &s->ss}) {
    *seg = FlatSegment(kDataSelector, kDataType, false);
  }
  s->tr = TaskSegment();
}

// The identity map of the low 4 GiB, laid out from `base`: PML4, PDPT, then four PDs.
std::vector<std::uint64_t> IdentityPageTables(std::uint64_t base) {
  std::vector<std::uint64_t> tables(kLongModePageTableBytes / sizeof(std::uint64_t), 0);
  tables[0] = (base + kPageSize) | kPresentWritable;
  for (std::uint64_t i = 0; i < 4; ++i) {
    tables[512 + i] = (base + 2 * kPageSize + i * kPageSize) | kPresentWritable;
    for (std::uint64_t j = 0; j < 512; ++j) {
      tables[1024 + i * 512 + j] = ((i * 512 + j) << 21) | kPresentWritable | kHugePage;
    }
  }
  return tables;
}

}  // namespace

std::uint64_t EnterRealMode(kvm_sregs* s, std::uint64_t entry) {
  for (kvm_segment* seg : {&s->ds, &s->es, &s->fs, &s->gs, &s->ss}) {
    seg->base = 0;
    seg->selector = 0;
  }
  s->cs.selector = static_cast<std::uint16_t>((entry & 0xf0000) >> 4);
  s->cs.base = entry & 0xf0000;
  s->cr0 &= ~(kCr0Pe | kCr0Pg);
  s->efer = 0;
  return entry & 0xffff;
}

void EnterProtectedMode(kvm_sregs* s) {
  LoadFlatSegments(s, false);
  s->cr0 = (s->cr0 | kCr0Pe | kCr0Et) & ~kCr0Pg;
  s->efer = 0;
}

std::optional<ErrorFacts> WriteLongModeTables(GuestMemory& memory, const LongModeLayout& layout) {
  if (layout.page_table_gpa % kPageSize != 0) return ErrorFacts::InvalidArg("pageTableGpa must be 4 KiB aligned");
  // Both ranges are located before either is written, so a bad GDT address leaves the guest
  // memory untouched.
  ErrorFacts error;
  std::byte* tables = memory.Locate(layout.page_table_gpa, kLongModePageTableBytes, &error);
  if (tables == nullptr) return error;
  std::byte* gdt = memory.Locate(layout.gdt_gpa, kLongModeGdtBytes, &error);
  if (gdt == nullptr) return error;
  std::vector<std::uint64_t> entries = IdentityPageTables(layout.page_table_gpa);
  std::memcpy(tables, entries.data(), kLongModePageTableBytes);
  std::memcpy(gdt, kGdt, kLongModeGdtBytes);
  return std::nullopt;
}

void EnterLongMode(kvm_sregs* s, const LongModeLayout& layout) {
  LoadFlatSegments(s, true);
  s->gdt.base = layout.gdt_gpa;
  s->gdt.limit = static_cast<std::uint16_t>(kLongModeGdtBytes - 1);
  s->cr3 = layout.page_table_gpa;
  s->cr4 |= kCr4Pae;
  s->cr0 |= kCr0Pe | kCr0Et | kCr0Pg;
  s->efer |= kEferLme | kEferLma;
}

kvm_regs EntryRegs(std::uint64_t rip) {
  kvm_regs regs{};
  regs.rip = rip;
  regs.rflags = 2;  // bit 1 is reserved-as-one
  return regs;
}

}  // namespace vh
