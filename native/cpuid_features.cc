#include "cpuid_features.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "js_args.h"

namespace vh {
namespace {

enum class Reg : std::uint8_t { kEax, kEbx, kEcx, kEdx };

struct FeatureBit {
  std::uint32_t function;
  std::uint32_t index;
  Reg reg;
  std::uint8_t bit;
  const char* name;
};

// Names follow arch/x86/include/asm/cpufeatures.h so labels match what operators see in
// /proc/cpuinfo. Bits Linux hides there (the "" entries) are left out unless a VM CPU model
// needs them (the AMD speculation-control bits), in which case the X86_FEATURE_* name is used.
// 0x80000001 EDX bits that merely mirror leaf 1 are left out, as Linux does.
constexpr FeatureBit kFeatureBits[] = {
    // Leaf 1 EDX.
    {0x1, 0, Reg::kEdx, 0, "fpu"},        {0x1, 0, Reg::kEdx, 1, "vme"},
    {0x1, 0, Reg::kEdx, 2, "de"},         {0x1, 0, Reg::kEdx, 3, "pse"},
    {0x1, 0, Reg::kEdx, 4, "tsc"},        {0x1, 0, Reg::kEdx, 5, "msr"},
    {0x1, 0, Reg::kEdx, 6, "pae"},        {0x1, 0, Reg::kEdx, 7, "mce"},
    {0x1, 0, Reg::kEdx, 8, "cx8"},        {0x1, 0, Reg::kEdx, 9, "apic"},
    {0x1, 0, Reg::kEdx, 11, "sep"},       {0x1, 0, Reg::kEdx, 12, "mtrr"},
    {0x1, 0, Reg::kEdx, 13, "pge"},       {0x1, 0, Reg::kEdx, 14, "mca"},
    {0x1, 0, Reg::kEdx, 15, "cmov"},      {0x1, 0, Reg::kEdx, 16, "pat"},
    {0x1, 0, Reg::kEdx, 17, "pse36"},     {0x1, 0, Reg::kEdx, 18, "pn"},
    {0x1, 0, Reg::kEdx, 19, "clflush"},   {0x1, 0, Reg::kEdx, 21, "dts"},
    {0x1, 0, Reg::kEdx, 22, "acpi"},      {0x1, 0, Reg::kEdx, 23, "mmx"},
    {0x1, 0, Reg::kEdx, 24, "fxsr"},      {0x1, 0, Reg::kEdx, 25, "sse"},
    {0x1, 0, Reg::kEdx, 26, "sse2"},      {0x1, 0, Reg::kEdx, 27, "ss"},
    {0x1, 0, Reg::kEdx, 28, "ht"},        {0x1, 0, Reg::kEdx, 29, "tm"},
    {0x1, 0, Reg::kEdx, 30, "ia64"},      {0x1, 0, Reg::kEdx, 31, "pbe"},
    // Leaf 1 ECX ("pni" is SSE3; OSXSAVE, bit 27, is OS state, not a feature).
    {0x1, 0, Reg::kEcx, 0, "pni"},        {0x1, 0, Reg::kEcx, 1, "pclmulqdq"},
    {0x1, 0, Reg::kEcx, 2, "dtes64"},     {0x1, 0, Reg::kEcx, 3, "monitor"},
    {0x1, 0, Reg::kEcx, 4, "ds_cpl"},     {0x1, 0, Reg::kEcx, 5, "vmx"},
    {0x1, 0, Reg::kEcx, 6, "smx"},        {0x1, 0, Reg::kEcx, 7, "est"},
    {0x1, 0, Reg::kEcx, 8, "tm2"},        {0x1, 0, Reg::kEcx, 9, "ssse3"},
    {0x1, 0, Reg::kEcx, 10, "cid"},       {0x1, 0, Reg::kEcx, 11, "sdbg"},
    {0x1, 0, Reg::kEcx, 12, "fma"},       {0x1, 0, Reg::kEcx, 13, "cx16"},
    {0x1, 0, Reg::kEcx, 14, "xtpr"},      {0x1, 0, Reg::kEcx, 15, "pdcm"},
    {0x1, 0, Reg::kEcx, 17, "pcid"},      {0x1, 0, Reg::kEcx, 18, "dca"},
    {0x1, 0, Reg::kEcx, 19, "sse4_1"},    {0x1, 0, Reg::kEcx, 20, "sse4_2"},
    {0x1, 0, Reg::kEcx, 21, "x2apic"},    {0x1, 0, Reg::kEcx, 22, "movbe"},
    {0x1, 0, Reg::kEcx, 23, "popcnt"},    {0x1, 0, Reg::kEcx, 24, "tsc_deadline_timer"},
    {0x1, 0, Reg::kEcx, 25, "aes"},       {0x1, 0, Reg::kEcx, 26, "xsave"},
    {0x1, 0, Reg::kEcx, 28, "avx"},       {0x1, 0, Reg::kEcx, 29, "f16c"},
    {0x1, 0, Reg::kEcx, 30, "rdrand"},    {0x1, 0, Reg::kEcx, 31, "hypervisor"},
    // Leaf 7 subleaf 0 EBX.
    {0x7, 0, Reg::kEbx, 0, "fsgsbase"},   {0x7, 0, Reg::kEbx, 1, "tsc_adjust"},
    {0x7, 0, Reg::kEbx, 2, "sgx"},        {0x7, 0, Reg::kEbx, 3, "bmi1"},
    {0x7, 0, Reg::kEbx, 4, "hle"},        {0x7, 0, Reg::kEbx, 5, "avx2"},
    {0x7, 0, Reg::kEbx, 7, "smep"},       {0x7, 0, Reg::kEbx, 8, "bmi2"},
    {0x7, 0, Reg::kEbx, 9, "erms"},       {0x7, 0, Reg::kEbx, 10, "invpcid"},
    {0x7, 0, Reg::kEbx, 11, "rtm"},       {0x7, 0, Reg::kEbx, 12, "cqm"},
    {0x7, 0, Reg::kEbx, 14, "mpx"},       {0x7, 0, Reg::kEbx, 15, "rdt_a"},
    {0x7, 0, Reg::kEbx, 16, "avx512f"},   {0x7, 0, Reg::kEbx, 17, "avx512dq"},
    {0x7, 0, Reg::kEbx, 18, "rdseed"},    {0x7, 0, Reg::kEbx, 19, "adx"},
    {0x7, 0, Reg::kEbx, 20, "smap"},      {0x7, 0, Reg::kEbx, 21, "avx512ifma"},
    {0x7, 0, Reg::kEbx, 23, "clflushopt"}, {0x7, 0, Reg::kEbx, 24, "clwb"},
    {0x7, 0, Reg::kEbx, 25, "intel_pt"},  {0x7, 0, Reg::kEbx, 26, "avx512pf"},
    {0x7, 0, Reg::kEbx, 27, "avx512er"},  {0x7, 0, Reg::kEbx, 28, "avx512cd"},
    {0x7, 0, Reg::kEbx, 29, "sha_ni"},    {0x7, 0, Reg::kEbx, 30, "avx512bw"},
    {0x7, 0, Reg::kEbx, 31, "avx512vl"},
    // Leaf 7 subleaf 0 ECX.
    {0x7, 0, Reg::kEcx, 1, "avx512vbmi"}, {0x7, 0, Reg::kEcx, 2, "umip"},
    {0x7, 0, Reg::kEcx, 3, "pku"},        {0x7, 0, Reg::kEcx, 4, "ospke"},
    {0x7, 0, Reg::kEcx, 5, "waitpkg"},    {0x7, 0, Reg::kEcx, 6, "avx512_vbmi2"},
    {0x7, 0, Reg::kEcx, 8, "gfni"},       {0x7, 0, Reg::kEcx, 9, "vaes"},
    {0x7, 0, Reg::kEcx, 10, "vpclmulqdq"}, {0x7, 0, Reg::kEcx, 11, "avx512_vnni"},
    {0x7, 0, Reg::kEcx, 12, "avx512_bitalg"}, {0x7, 0, Reg::kEcx, 13, "tme"},
    {0x7, 0, Reg::kEcx, 14, "avx512_vpopcntdq"}, {0x7, 0, Reg::kEcx, 16, "la57"},
    {0x7, 0, Reg::kEcx, 22, "rdpid"},     {0x7, 0, Reg::kEcx, 24, "bus_lock_detect"},
    {0x7, 0, Reg::kEcx, 25, "cldemote"},  {0x7, 0, Reg::kEcx, 27, "movdiri"},
    {0x7, 0, Reg::kEcx, 28, "movdir64b"}, {0x7, 0, Reg::kEcx, 29, "enqcmd"},
    {0x7, 0, Reg::kEcx, 30, "sgx_lc"},
    // Leaf 7 subleaf 0 EDX.
    {0x7, 0, Reg::kEdx, 2, "avx512_4vnniw"}, {0x7, 0, Reg::kEdx, 3, "avx512_4fmaps"},
    {0x7, 0, Reg::kEdx, 4, "fsrm"},       {0x7, 0, Reg::kEdx, 8, "avx512_vp2intersect"},
    {0x7, 0, Reg::kEdx, 10, "md_clear"},  {0x7, 0, Reg::kEdx, 14, "serialize"},
    {0x7, 0, Reg::kEdx, 16, "tsxldtrk"},  {0x7, 0, Reg::kEdx, 18, "pconfig"},
    {0x7, 0, Reg::kEdx, 19, "arch_lbr"},  {0x7, 0, Reg::kEdx, 20, "ibt"},
    {0x7, 0, Reg::kEdx, 22, "amx_bf16"},  {0x7, 0, Reg::kEdx, 23, "avx512_fp16"},
    {0x7, 0, Reg::kEdx, 24, "amx_tile"},  {0x7, 0, Reg::kEdx, 25, "amx_int8"},
    {0x7, 0, Reg::kEdx, 28, "flush_l1d"}, {0x7, 0, Reg::kEdx, 29, "arch_capabilities"},
    // Leaf 7 subleaf 1 EAX.
    {0x7, 1, Reg::kEax, 4, "avx_vnni"},   {0x7, 1, Reg::kEax, 5, "avx512_bf16"},
    {0x7, 1, Reg::kEax, 7, "cmpccxadd"},  {0x7, 1, Reg::kEax, 21, "amx_fp16"},
    {0x7, 1, Reg::kEax, 23, "avx_ifma"},  {0x7, 1, Reg::kEax, 26, "lam"},
    // Leaf 0xD subleaf 1 EAX (XSAVE variants).
    {0xD, 1, Reg::kEax, 0, "xsaveopt"},   {0xD, 1, Reg::kEax, 1, "xsavec"},
    {0xD, 1, Reg::kEax, 2, "xgetbv1"},    {0xD, 1, Reg::kEax, 3, "xsaves"},
    {0xD, 1, Reg::kEax, 4, "xfd"},
    // Leaf 0x80000001 EDX.
    {0x80000001, 0, Reg::kEdx, 11, "syscall"}, {0x80000001, 0, Reg::kEdx, 19, "mp"},
    {0x80000001, 0, Reg::kEdx, 20, "nx"},      {0x80000001, 0, Reg::kEdx, 22, "mmxext"},
    {0x80000001, 0, Reg::kEdx, 25, "fxsr_opt"}, {0x80000001, 0, Reg::kEdx, 26, "pdpe1gb"},
    {0x80000001, 0, Reg::kEdx, 27, "rdtscp"},  {0x80000001, 0, Reg::kEdx, 29, "lm"},
    {0x80000001, 0, Reg::kEdx, 30, "3dnowext"}, {0x80000001, 0, Reg::kEdx, 31, "3dnow"},
    // Leaf 0x80000001 ECX.
    {0x80000001, 0, Reg::kEcx, 0, "lahf_lm"},  {0x80000001, 0, Reg::kEcx, 1, "cmp_legacy"},
    {0x80000001, 0, Reg::kEcx, 2, "svm"},      {0x80000001, 0, Reg::kEcx, 3, "extapic"},
    {0x80000001, 0, Reg::kEcx, 4, "cr8_legacy"}, {0x80000001, 0, Reg::kEcx, 5, "abm"},
    {0x80000001, 0, Reg::kEcx, 6, "sse4a"},    {0x80000001, 0, Reg::kEcx, 7, "misalignsse"},
    {0x80000001, 0, Reg::kEcx, 8, "3dnowprefetch"}, {0x80000001, 0, Reg::kEcx, 9, "osvw"},
    {0x80000001, 0, Reg::kEcx, 10, "ibs"},     {0x80000001, 0, Reg::kEcx, 11, "xop"},
    {0x80000001, 0, Reg::kEcx, 12, "skinit"},  {0x80000001, 0, Reg::kEcx, 13, "wdt"},
    {0x80000001, 0, Reg::kEcx, 15, "lwp"},     {0x80000001, 0, Reg::kEcx, 16, "fma4"},
    {0x80000001, 0, Reg::kEcx, 17, "tce"},     {0x80000001, 0, Reg::kEcx, 19, "nodeid_msr"},
    {0x80000001, 0, Reg::kEcx, 21, "tbm"},     {0x80000001, 0, Reg::kEcx, 22, "topoext"},
    {0x80000001, 0, Reg::kEcx, 23, "perfctr_core"}, {0x80000001, 0, Reg::kEcx, 24, "perfctr_nb"},
    {0x80000001, 0, Reg::kEcx, 26, "bpext"},   {0x80000001, 0, Reg::kEcx, 27, "ptsc"},
    {0x80000001, 0, Reg::kEcx, 28, "perfctr_llc"}, {0x80000001, 0, Reg::kEcx, 29, "mwaitx"},
    // Leaf 0x80000007 EDX: an invariant TSC is what Linux reports as constant + nonstop.
    {0x80000007, 0, Reg::kEdx, 7, "hw_pstate"}, {0x80000007, 0, Reg::kEdx, 8, "constant_tsc"},
    {0x80000007, 0, Reg::kEdx, 8, "nonstop_tsc"}, {0x80000007, 0, Reg::kEdx, 9, "cpb"},
    {0x80000007, 0, Reg::kEdx, 11, "proc_feedback"},
    // Leaf 0x80000008 EBX (AMD extended features and speculation controls).
    {0x80000008, 0, Reg::kEbx, 0, "clzero"},   {0x80000008, 0, Reg::kEbx, 1, "irperf"},
    {0x80000008, 0, Reg::kEbx, 2, "xsaveerptr"}, {0x80000008, 0, Reg::kEbx, 4, "rdpru"},
    {0x80000008, 0, Reg::kEbx, 9, "wbnoinvd"}, {0x80000008, 0, Reg::kEbx, 12, "amd_ibpb"},
    {0x80000008, 0, Reg::kEbx, 14, "amd_ibrs"}, {0x80000008, 0, Reg::kEbx, 15, "amd_stibp"},
    {0x80000008, 0, Reg::kEbx, 23, "amd_ppin"}, {0x80000008, 0, Reg::kEbx, 24, "amd_ssbd"},
    {0x80000008, 0, Reg::kEbx, 25, "virt_ssbd"}, {0x80000008, 0, Reg::kEbx, 26, "amd_ssb_no"},
    // Leaf 0x8000000A EDX (SVM features a nested guest hypervisor can use).
    {0x8000000A, 0, Reg::kEdx, 0, "npt"},      {0x8000000A, 0, Reg::kEdx, 1, "lbrv"},
    {0x8000000A, 0, Reg::kEdx, 2, "svm_lock"}, {0x8000000A, 0, Reg::kEdx, 3, "nrip_save"},
    {0x8000000A, 0, Reg::kEdx, 4, "tsc_scale"}, {0x8000000A, 0, Reg::kEdx, 5, "vmcb_clean"},
    {0x8000000A, 0, Reg::kEdx, 6, "flushbyasid"}, {0x8000000A, 0, Reg::kEdx, 7, "decodeassists"},
    {0x8000000A, 0, Reg::kEdx, 10, "pausefilter"}, {0x8000000A, 0, Reg::kEdx, 12, "pfthreshold"},
    {0x8000000A, 0, Reg::kEdx, 13, "avic"},    {0x8000000A, 0, Reg::kEdx, 15, "v_vmsave_vmload"},
    {0x8000000A, 0, Reg::kEdx, 16, "vgif"},    {0x8000000A, 0, Reg::kEdx, 18, "x2avic"},
    {0x8000000A, 0, Reg::kEdx, 20, "v_spec_ctrl"}, {0x8000000A, 0, Reg::kEdx, 25, "vnmi"},
    // Leaf 0x40000001 EAX: KVM paravirtual features (KVM_FEATURE_* names).
    {0x40000001, 0, Reg::kEax, 0, "kvmclock"}, {0x40000001, 0, Reg::kEax, 1, "nop_io_delay"},
    {0x40000001, 0, Reg::kEax, 2, "mmu_op"},   {0x40000001, 0, Reg::kEax, 3, "kvmclock2"},
    {0x40000001, 0, Reg::kEax, 4, "async_pf"}, {0x40000001, 0, Reg::kEax, 5, "steal_time"},
    {0x40000001, 0, Reg::kEax, 6, "pv_eoi"},   {0x40000001, 0, Reg::kEax, 7, "pv_unhalt"},
    {0x40000001, 0, Reg::kEax, 9, "pv_tlb_flush"},
    {0x40000001, 0, Reg::kEax, 10, "async_pf_vmexit"},
    {0x40000001, 0, Reg::kEax, 11, "pv_send_ipi"},
    {0x40000001, 0, Reg::kEax, 12, "poll_control"},
    {0x40000001, 0, Reg::kEax, 13, "pv_sched_yield"},
    {0x40000001, 0, Reg::kEax, 14, "async_pf_int"},
    {0x40000001, 0, Reg::kEax, 15, "msi_ext_dest_id"},
    {0x40000001, 0, Reg::kEax, 16, "hc_map_gpa_range"},
    {0x40000001, 0, Reg::kEax, 17, "migration_control"},
    {0x40000001, 0, Reg::kEax, 24, "kvmclock_stable_bit"},
};

constexpr std::uint32_t kKvmSignatureLeaf = 0x40000000;
constexpr std::uint32_t kKvmFeatureLeaf = 0x40000001;

std::uint32_t RegValue(const CpuidLeaf& leaf, Reg reg) {
  switch (reg) {
    case Reg::kEax: return leaf.eax;
    case Reg::kEbx: return leaf.ebx;
    case Reg::kEcx: return leaf.ecx;
    case Reg::kEdx: return leaf.edx;
  }
  return 0;
}

// 0x40000001 only means "KVM features" under KVM's signature; another hypervisor (Hyper-V,
// Xen) puts something else there. An input without 0x40000000 is trusted as KVM's own answer.
bool KvmLeavesAreKvm(const std::vector<CpuidLeaf>& leaves) {
  for (const CpuidLeaf& leaf : leaves) {
    if (leaf.function != kKvmSignatureLeaf) continue;
    const char expected[12] = {'K', 'V', 'M', 'K', 'V', 'M', 'K', 'V', 'M', 0, 0, 0};
    const std::uint32_t regs[3] = {leaf.ebx, leaf.ecx, leaf.edx};
    for (int i = 0; i < 12; ++i) {
      auto byte = static_cast<char>((regs[i / 4] >> (8 * (i % 4))) & 0xffu);
      if (byte != expected[i]) return false;
    }
    return true;
  }
  return true;
}

// entries[i][field] as a u32: a CPUID register.
std::uint32_t RequireU32(Napi::Env env, const Napi::Object& entry, const char* field, std::uint32_t i) {
  return JsToU32(env, entry.Get(field), "entries[" + std::to_string(i) + "]." + field);
}

}  // namespace

std::vector<std::string> DecodeCpuidFeatures(const std::vector<CpuidLeaf>& leaves) {
  bool kvm = KvmLeavesAreKvm(leaves);
  std::vector<std::string> names;
  for (const CpuidLeaf& leaf : leaves) {
    if (leaf.function == kKvmFeatureLeaf && !kvm) continue;
    for (const FeatureBit& f : kFeatureBits) {
      if (f.function != leaf.function || f.index != leaf.index) continue;
      if ((RegValue(leaf, f.reg) >> f.bit) & 1u) names.emplace_back(f.name);
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::optional<CpuidFeatureBit> FindCpuidFeature(const std::string& name) {
  for (const FeatureBit& f : kFeatureBits) {
    if (name != f.name) continue;
    constexpr char kRegNames[] = {'a', 'b', 'c', 'd'};
    return CpuidFeatureBit{f.function, f.index, kRegNames[static_cast<std::size_t>(f.reg)], f.bit};
  }
  return std::nullopt;
}

Napi::Value DecodeCpuidFeaturesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array arr = JsToArray(env, info[0], "entries");
  std::vector<CpuidLeaf> leaves;
  leaves.reserve(arr.Length());
  for (std::uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Object o = JsToObject(env, arr.Get(i), "entries[" + std::to_string(i) + "]");
    CpuidLeaf leaf;
    leaf.function = RequireU32(env, o, "function", i);
    leaf.index = RequireU32(env, o, "index", i);
    leaf.eax = RequireU32(env, o, "eax", i);
    leaf.ebx = RequireU32(env, o, "ebx", i);
    leaf.ecx = RequireU32(env, o, "ecx", i);
    leaf.edx = RequireU32(env, o, "edx", i);
    leaves.push_back(leaf);
  }
  std::vector<std::string> names = DecodeCpuidFeatures(leaves);
  Napi::Array out = Napi::Array::New(env, names.size());
  for (std::size_t i = 0; i < names.size(); ++i) out.Set(static_cast<std::uint32_t>(i), names[i]);
  return out;
}

}  // namespace vh
