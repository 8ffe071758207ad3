// Every KVM ioctl number and capability the addon uses, in one place. Numbers come from the
// build host's <linux/kvm.h>; constants newer than the oldest supported headers (Debian 12,
// Linux 6.1) are defined here with their upstream values, because the kernel we run on may be
// newer than the headers we built with and KVM_CHECK_EXTENSION simply answers 0 for a number
// it does not know.
#ifndef VH_NATIVE_IOCTL_TABLE_H_
#define VH_NATIVE_IOCTL_TABLE_H_

// Include this header, never <linux/kvm.h> directly (see the static_asserts below).
//
// Linux <= 6.3 uapi headers define __DECLARE_FLEX_ARRAY with an empty struct, which is 1 byte
// in C++ (0 in C). That makes sizeof(kvm_cpuid2) 12 instead of 8, shifts its entries, and
// changes the size encoded in _IOWR() numbers, so the kernel rejects KVM_GET_SUPPORTED_CPUID
// with EINVAL. Newer headers use the zero-length array below for C++; we do the same.
#include <linux/stddef.h>
#ifdef __cplusplus
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#endif
#include <linux/kvm.h>

#include <cstddef>

static_assert(sizeof(kvm_cpuid2) == 8 && offsetof(kvm_cpuid2, entries) == 8,
              "C++ flex-array layout bug: include ioctl_table.h before <linux/kvm.h>");
static_assert(sizeof(kvm_msrs) == 8 && offsetof(kvm_msrs, entries) == 8,
              "C++ flex-array layout bug: include ioctl_table.h before <linux/kvm.h>");
static_assert(sizeof(kvm_msr_list) == 4 && offsetof(kvm_msr_list, indices) == 4,
              "C++ flex-array layout bug: include ioctl_table.h before <linux/kvm.h>");

#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231  // Linux 6.8
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234  // Linux 6.8
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235  // Linux 6.8
#endif

namespace vh {

// An ioctl request plus the name reported as `syscall` when it fails.
struct Ioctl {
  unsigned long request;
  const char* name;
};

#define VH_IOCTL(NAME) Ioctl{static_cast<unsigned long>(NAME), #NAME}

// System ioctls (on the /dev/kvm fd).
inline constexpr Ioctl kGetApiVersion = VH_IOCTL(KVM_GET_API_VERSION);
inline constexpr Ioctl kCheckExtension = VH_IOCTL(KVM_CHECK_EXTENSION);
inline constexpr Ioctl kGetVcpuMmapSize = VH_IOCTL(KVM_GET_VCPU_MMAP_SIZE);
inline constexpr Ioctl kGetSupportedCpuid = VH_IOCTL(KVM_GET_SUPPORTED_CPUID);
inline constexpr Ioctl kGetMsrIndexList = VH_IOCTL(KVM_GET_MSR_INDEX_LIST);
inline constexpr Ioctl kCreateVm = VH_IOCTL(KVM_CREATE_VM);

// VM ioctls (on a VM fd).
inline constexpr Ioctl kVmCheckExtension = VH_IOCTL(KVM_CHECK_EXTENSION);
inline constexpr Ioctl kEnableCap = VH_IOCTL(KVM_ENABLE_CAP);
inline constexpr Ioctl kSetTssAddr = VH_IOCTL(KVM_SET_TSS_ADDR);
inline constexpr Ioctl kSetIdentityMapAddr = VH_IOCTL(KVM_SET_IDENTITY_MAP_ADDR);
inline constexpr Ioctl kCreateIrqchip = VH_IOCTL(KVM_CREATE_IRQCHIP);
inline constexpr Ioctl kCreatePit2 = VH_IOCTL(KVM_CREATE_PIT2);
inline constexpr Ioctl kSetUserMemoryRegion = VH_IOCTL(KVM_SET_USER_MEMORY_REGION);
// Dirty logging (native/dirty_log.cc).
inline constexpr Ioctl kGetDirtyLog = VH_IOCTL(KVM_GET_DIRTY_LOG);
inline constexpr Ioctl kClearDirtyLog = VH_IOCTL(KVM_CLEAR_DIRTY_LOG);
inline constexpr Ioctl kResetDirtyRings = VH_IOCTL(KVM_RESET_DIRTY_RINGS);
inline constexpr Ioctl kCreateVcpu = VH_IOCTL(KVM_CREATE_VCPU);

// vCPU ioctls (on a vCPU fd; see native/vcpu.h).
inline constexpr Ioctl kRun = VH_IOCTL(KVM_RUN);
inline constexpr Ioctl kGetRegs = VH_IOCTL(KVM_GET_REGS);
inline constexpr Ioctl kSetRegs = VH_IOCTL(KVM_SET_REGS);
inline constexpr Ioctl kGetSregs = VH_IOCTL(KVM_GET_SREGS);
inline constexpr Ioctl kSetSregs = VH_IOCTL(KVM_SET_SREGS);
inline constexpr Ioctl kGetFpu = VH_IOCTL(KVM_GET_FPU);
inline constexpr Ioctl kSetFpu = VH_IOCTL(KVM_SET_FPU);
inline constexpr Ioctl kGetMsrs = VH_IOCTL(KVM_GET_MSRS);
inline constexpr Ioctl kSetMsrs = VH_IOCTL(KVM_SET_MSRS);
inline constexpr Ioctl kGetLapic = VH_IOCTL(KVM_GET_LAPIC);
inline constexpr Ioctl kSetLapic = VH_IOCTL(KVM_SET_LAPIC);
inline constexpr Ioctl kGetMpState = VH_IOCTL(KVM_GET_MP_STATE);
inline constexpr Ioctl kSetMpState = VH_IOCTL(KVM_SET_MP_STATE);
inline constexpr Ioctl kGetVcpuEvents = VH_IOCTL(KVM_GET_VCPU_EVENTS);
inline constexpr Ioctl kSetVcpuEvents = VH_IOCTL(KVM_SET_VCPU_EVENTS);
inline constexpr Ioctl kSetCpuid2 = VH_IOCTL(KVM_SET_CPUID2);

#undef VH_IOCTL

// The KVM ABI version every kernel since 2.6.22 reports; anything else is unusable.
inline constexpr int kKvmApiVersion = KVM_API_VERSION;

// A KVM_CAP_* number under the name JS uses (the macro name without the prefix). The id is
// already the KVM_CHECK_EXTENSION argument type.
struct Capability {
  const char* name;
  unsigned long id;
};

#define VH_CAP(NAME) Capability{#NAME, KVM_CAP_##NAME}

// Order is the order capabilities() and capabilityNames() report; append, never reorder.
inline constexpr Capability kCapabilities[] = {
    // Sizing: how many vCPUs and memory slots a VM may have.
    VH_CAP(NR_VCPUS),
    VH_CAP(MAX_VCPUS),
    VH_CAP(MAX_VCPU_ID),
    VH_CAP(NR_MEMSLOTS),
    // Baseline a VMM needs on x86.
    VH_CAP(USER_MEMORY),
    VH_CAP(SET_TSS_ADDR),
    VH_CAP(IRQCHIP),
    VH_CAP(SPLIT_IRQCHIP),
    VH_CAP(PIT2),
    VH_CAP(IMMEDIATE_EXIT),
    VH_CAP(READONLY_MEM),
    VH_CAP(SYNC_MMU),
    VH_CAP(COALESCED_MMIO),
    VH_CAP(IOEVENTFD),
    VH_CAP(IRQFD),
    // Dirty tracking for live migration.
    VH_CAP(MANUAL_DIRTY_LOG_PROTECT2),
    VH_CAP(DIRTY_LOG_RING),
    VH_CAP(DIRTY_LOG_RING_ACQ_REL),
    // vCPU state that must survive migration.
    VH_CAP(NESTED_STATE),
    VH_CAP(XSAVE),
    VH_CAP(XCRS),
    VH_CAP(VCPU_EVENTS),
    VH_CAP(DEBUGREGS),
    VH_CAP(MP_STATE),
    VH_CAP(ADJUST_CLOCK),
    VH_CAP(KVMCLOCK_CTRL),
    VH_CAP(TSC_CONTROL),
    VH_CAP(GET_TSC_KHZ),
    VH_CAP(TSC_DEADLINE_TIMER),
    // CPU model and MSR plumbing.
    VH_CAP(EXT_CPUID),
    VH_CAP(GET_MSR_FEATURES),
    VH_CAP(X86_USER_SPACE_MSR),
    VH_CAP(X2APIC_API),
    VH_CAP(X86_DISABLE_EXITS),
    // Windows guests.
    VH_CAP(HYPERV),
    VH_CAP(HYPERV_SYNIC),
    // Newer than Linux 6.1 (see the fallbacks above).
    VH_CAP(USER_MEMORY2),
    VH_CAP(GUEST_MEMFD),
    VH_CAP(VM_TYPES),
};

#undef VH_CAP

inline constexpr std::size_t kCapabilityCount = sizeof(kCapabilities) / sizeof(kCapabilities[0]);

}  // namespace vh

#endif  // VH_NATIVE_IOCTL_TABLE_H_
