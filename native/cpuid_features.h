// Turns CPUID leaves (as KVM_GET_SUPPORTED_CPUID reports them) into feature names. Pure: it
// needs no KVM, so it can also decode a fixture or a guest's CPUID.
#ifndef VH_NATIVE_CPUID_FEATURES_H_
#define VH_NATIVE_CPUID_FEATURES_H_

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vh {

// The registers of one CPUID leaf/subleaf (kvm_cpuid_entry2 minus the kernel's flags).
struct CpuidLeaf {
  std::uint32_t function = 0;
  std::uint32_t index = 0;
  std::uint32_t eax = 0;
  std::uint32_t ebx = 0;
  std::uint32_t ecx = 0;
  std::uint32_t edx = 0;
};

// Where a feature lives: CPUID leaf `function`/subleaf `index`, register ('a', 'b', 'c' or
// 'd' for eax..edx) and bit.
struct CpuidFeatureBit {
  std::uint32_t function = 0;
  std::uint32_t index = 0;
  char reg = 'a';
  std::uint8_t bit = 0;
};

// The bit of a feature named as DecodeCpuidFeatures() names it; nullopt for an unknown name.
std::optional<CpuidFeatureBit> FindCpuidFeature(const std::string& name);

// Feature names set in `leaves`, sorted and unique, spelled as Linux spells them in
// /proc/cpuinfo (lowercase X86_FEATURE_* names; KVM PV features as in KVM_FEATURE_*).
std::vector<std::string> DecodeCpuidFeatures(const std::vector<CpuidLeaf>& leaves);

// JS: decodeCpuidFeatures(entries: NativeCpuidEntry[]): string[].
Napi::Value DecodeCpuidFeaturesJs(const Napi::CallbackInfo& info);

}  // namespace vh

#endif  // VH_NATIVE_CPUID_FEATURES_H_
