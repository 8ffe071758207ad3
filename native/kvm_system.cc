#include "kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "errors.h"
#include "ioctl_table.h"
#include "js_args.h"
#include "vm.h"

namespace vh {
namespace {

constexpr const char* kDefaultDevice = "/dev/kvm";

// KVM_GET_SUPPORTED_CPUID fails with E2BIG without saying how many entries it needs, so we
// double from a size that fits today's CPUs in one try. The kernel caps the answer at
// KVM_MAX_CPUID_ENTRIES (256); the cap here only stops a misbehaving kernel from making us
// allocate without bound.
constexpr std::uint32_t kCpuidInitialEntries = 128;
constexpr std::uint32_t kCpuidMaxEntries = 4096;

// The MSR list can only change between the count probe and the fetch on a kernel module
// reload; a few retries cover that without looping forever.
constexpr int kMsrListAttempts = 3;

// What to tell the operator when the device cannot be opened.
std::string OpenHint(int errnum) {
  switch (errnum) {
    case ENOENT:
      return "load kvm_intel or kvm_amd; is virtualization enabled in firmware?";
    case EACCES:
    case EPERM:
      return "run as root or add the user to group kvm";
    case ENXIO:
    case ENODEV:
      return "the KVM module is not loaded or virtualization is disabled in firmware";
    default:
      return {};
  }
}

int SysIoctl(int fd, const Ioctl& op, unsigned long arg) { return ::ioctl(fd, op.request, arg); }

int SysIoctl(int fd, const Ioctl& op, void* arg) { return ::ioctl(fd, op.request, arg); }

// A kvm_cpuid2 header followed by room for `n` entries (the struct ends in a flexible array).
std::vector<std::byte> CpuidBuffer(std::uint32_t n) {
  std::vector<std::byte> buf(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
  reinterpret_cast<kvm_cpuid2*>(buf.data())->nent = n;
  return buf;
}

Napi::Object CpuidEntryToJs(Napi::Env env, const kvm_cpuid_entry2& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("function", e.function);
  o.Set("index", e.index);
  o.Set("flags", e.flags);
  o.Set("eax", e.eax);
  o.Set("ebx", e.ebx);
  o.Set("ecx", e.ecx);
  o.Set("edx", e.edx);
  return o;
}

}  // namespace

Napi::Function KvmSystem::DefineClass(Napi::Env env) {
  return ObjectWrap<KvmSystem>::DefineClass(
      env, "KvmSystem",
      {
          InstanceMethod<&KvmSystem::ApiVersion>("apiVersion"),
          InstanceMethod<&KvmSystem::CheckExtension>("checkExtension"),
          InstanceMethod<&KvmSystem::Capabilities>("capabilities"),
          InstanceMethod<&KvmSystem::VcpuMmapSize>("vcpuMmapSize"),
          InstanceMethod<&KvmSystem::SupportedCpuid>("supportedCpuid"),
          InstanceMethod<&KvmSystem::MsrIndexList>("msrIndexList"),
          InstanceMethod<&KvmSystem::CreateVm>("createVm"),
          InstanceMethod<&KvmSystem::Close>("close"),
          InstanceAccessor<&KvmSystem::Closed>("closed"),
      });
}

KvmSystem::KvmSystem(const Napi::CallbackInfo& info) : ObjectWrap<KvmSystem>(info) {
  Napi::Env env = info.Env();
  path_ = JsToOptionalString(env, info[0], "devicePath").value_or(kDefaultDevice);
  if (path_.empty() || path_.find('\0') != std::string::npos) {
    ThrowInvalidArg(env, "devicePath must be a non-empty path without NUL bytes");
  }

  int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, "open", path_, OpenHint(err)));
  }
  fd_.Reset(fd);
}

int KvmSystem::Fd(Napi::Env env) const {
  if (!fd_.Valid()) {
    ThrowError(env, ErrorFacts::Misuse("ERR_CLOSED", "KvmSystem for " + path_ + " is closed"));
  }
  return fd_.Get();
}

int KvmSystem::Query(Napi::Env env, const Ioctl& op, unsigned long arg) const {
  int r = SysIoctl(Fd(env), op, arg);
  if (r < 0) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, op.name, path_));
  }
  return r;
}

Napi::Value KvmSystem::ApiVersion(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Query(info.Env(), kGetApiVersion));
}

Napi::Value KvmSystem::CheckExtension(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Capability& cap = JsToCapability(env, info[0]);
  return Napi::Number::New(env, Query(env, kCheckExtension, cap.id));
}

Napi::Value KvmSystem::Capabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  for (const Capability& cap : kCapabilities) {
    out.Set(cap.name, Query(env, kCheckExtension, cap.id));
  }
  return out;
}

Napi::Value KvmSystem::VcpuMmapSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Query(info.Env(), kGetVcpuMmapSize));
}

Napi::Value KvmSystem::SupportedCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  for (std::uint32_t n = kCpuidInitialEntries;; n *= 2) {
    std::vector<std::byte> buf = CpuidBuffer(n);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    if (SysIoctl(fd, kGetSupportedCpuid, cpuid) == 0) {
      Napi::Array out = Napi::Array::New(env, cpuid->nent);
      for (std::uint32_t i = 0; i < cpuid->nent; ++i) {
        out.Set(i, CpuidEntryToJs(env, cpuid->entries[i]));
      }
      return out;
    }
    int err = errno;
    if (err != E2BIG || n >= kCpuidMaxEntries) {
      ThrowError(env, ErrorFacts::FromErrno(err, kGetSupportedCpuid.name, path_));
    }
  }
}

Napi::Value KvmSystem::MsrIndexList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  // With nmsrs = 0 the kernel writes back the count it needs and fails with E2BIG.
  kvm_msr_list probe{};
  if (SysIoctl(fd, kGetMsrIndexList, &probe) == 0) return Napi::Array::New(env, 0);
  if (int err = errno; err != E2BIG) {
    ThrowError(env, ErrorFacts::FromErrno(err, kGetMsrIndexList.name, path_));
  }

  std::uint32_t n = probe.nmsrs;
  for (int attempt = 0; attempt < kMsrListAttempts; ++attempt) {
    // kvm_msr_list is a u32 count followed by u32 indices, so a u32 vector lays it out exactly.
    std::vector<std::uint32_t> buf(1 + static_cast<std::size_t>(n));
    auto* list = reinterpret_cast<kvm_msr_list*>(buf.data());
    list->nmsrs = n;
    if (SysIoctl(fd, kGetMsrIndexList, list) == 0) {
      Napi::Array out = Napi::Array::New(env, list->nmsrs);
      for (std::uint32_t i = 0; i < list->nmsrs; ++i) out.Set(i, list->indices[i]);
      return out;
    }
    int err = errno;
    if (err != E2BIG) ThrowError(env, ErrorFacts::FromErrno(err, kGetMsrIndexList.name, path_));
    n = list->nmsrs;
  }
  ThrowError(env, ErrorFacts::FromErrno(E2BIG, kGetMsrIndexList.name, path_,
                                        "MSR list kept growing while being read"));
}

Napi::Value KvmSystem::CreateVm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int r = SysIoctl(Fd(env), kCreateVm, 0UL);
  if (r < 0) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, kCreateVm.name, path_,
                                          err == EMFILE || err == ENFILE ? "raise the open-file limit" : ""));
  }
  return Vm::NewInstance(env, UniqueFd(r), info.Length() > 0 ? info[0] : env.Undefined());
}

void KvmSystem::Close(const Napi::CallbackInfo&) { fd_.Reset(); }

Napi::Value KvmSystem::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !fd_.Valid());
}

}  // namespace vh
