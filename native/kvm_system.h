// KvmSystem: the /dev/kvm handle (system ioctls). Parent of every VM in the kernel's
// hierarchy (KvmSystem -> Vm -> Vcpu).
#ifndef VH_NATIVE_KVM_SYSTEM_H_
#define VH_NATIVE_KVM_SYSTEM_H_

#include <napi.h>

#include <string>

#include "ioctl_table.h"
#include "unique_fd.h"

namespace vh {

class KvmSystem : public Napi::ObjectWrap<KvmSystem> {
 public:
  // Builds the JS class `KvmSystem` for this env.
  static Napi::Function DefineClass(Napi::Env env);

  // new KvmSystem(devicePath = '/dev/kvm'): opens the device O_RDWR|O_CLOEXEC.
  explicit KvmSystem(const Napi::CallbackInfo& info);

 private:
  // KVM_GET_API_VERSION.
  Napi::Value ApiVersion(const Napi::CallbackInfo& info);
  // KVM_CHECK_EXTENSION for one name of kCapabilities.
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  // KVM_CHECK_EXTENSION for every name of kCapabilities, as { NAME: value }.
  Napi::Value Capabilities(const Napi::CallbackInfo& info);
  // KVM_GET_VCPU_MMAP_SIZE.
  Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info);
  // KVM_GET_SUPPORTED_CPUID as an array of kvm_cpuid_entry2-shaped objects.
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
  // KVM_GET_MSR_INDEX_LIST as an array of MSR numbers.
  Napi::Value MsrIndexList(const Napi::CallbackInfo& info);
  // KVM_CREATE_VM (type 0), wrapped in a Vm configured by the optional options object.
  Napi::Value CreateVm(const Napi::CallbackInfo& info);
  // Closes the fd; idempotent.
  void Close(const Napi::CallbackInfo& info);
  // True once Close() ran.
  Napi::Value Closed(const Napi::CallbackInfo& info);

  // The open fd, or throws ERR_CLOSED.
  int Fd(Napi::Env env) const;
  // An ioctl whose answer is its non-negative return value; throws with op.name on failure.
  int Query(Napi::Env env, const Ioctl& op, unsigned long arg = 0) const;

  std::string path_;
  UniqueFd fd_;
};

}  // namespace vh

#endif  // VH_NATIVE_KVM_SYSTEM_H_
