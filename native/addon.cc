// Module entry: the only place that knows the export names of virt_handler_native.node.
// Their TypeScript shape is src/native/binding.ts (NativeBinding); keep the two in step.
#include <napi.h>
#include <unistd.h>

#include <cerrno>

#include "cpuid_features.h"
#include "dirty_bitmap.h"
#include "errors.h"
#include "ioctl_table.h"
#include "kvm_system.h"
#include "sd_notify.h"
#include "vcpu.h"
#include "vm.h"
#include "userspace_tracker.h"

namespace vh {
namespace {

// capabilityNames(): the names checkExtension() accepts, in table order.
Napi::Value CapabilityNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, kCapabilityCount);
  for (std::size_t i = 0; i < kCapabilityCount; ++i) {
    out.Set(static_cast<std::uint32_t>(i), kCapabilities[i].name);
  }
  return out;
}

// hostPageSize(): sysconf(_SC_PAGESIZE); guest memory and mmap sizes are multiples of it.
Napi::Value HostPageSize(const Napi::CallbackInfo& info) {
  long size = ::sysconf(_SC_PAGESIZE);
  if (size <= 0) {
    int err = errno != 0 ? errno : EINVAL;
    ThrowError(info.Env(), ErrorFacts::FromErrno(err, "sysconf"));
  }
  return Napi::Number::New(info.Env(), static_cast<double>(size));
}

}  // namespace
}  // namespace vh

// At global scope because NODE_API_MODULE pastes the name into an identifier.
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace vh;
  exports.Set("KvmSystem", KvmSystem::DefineClass(env));
  exports.Set("Vm", Vm::DefineClass(env));  // for instanceof only; KvmSystem.createVm() makes them
  exports.Set("Vcpu", Vcpu::DefineClass(env));  // for instanceof only; Vm.createVcpu() makes them
  exports.Set("capabilityNames", Napi::Function::New<CapabilityNames>(env, "capabilityNames"));
  exports.Set("decodeCpuidFeatures",
              Napi::Function::New<DecodeCpuidFeaturesJs>(env, "decodeCpuidFeatures"));
  exports.Set("sdNotify", Napi::Function::New<SdNotifyJs>(env, "sdNotify"));
  exports.Set("hostPageSize", Napi::Function::New<HostPageSize>(env, "hostPageSize"));
  exports.Set("UserspaceDirtyTracker", UserspaceDirtyTracker::DefineClass(env));
  exports.Set("bitmapToRuns", Napi::Function::New<BitmapToRunsJs>(env, "bitmapToRuns"));
  exports.Set("bitmapPopcount", Napi::Function::New<BitmapPopcountJs>(env, "bitmapPopcount"));
  return exports;
}

NODE_API_MODULE(virt_handler_native, Init)
