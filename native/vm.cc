#include "vm.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "errors.h"
#include "ioctl_table.h"
#include "js_args.h"

namespace vh {
namespace {

// The Vm constructor of each env.
ConstructorRegistry g_ctors;

// The fd NewInstance() is handing to the constructor it is about to call; null otherwise, so
// JS cannot construct a Vm around an fd of its choosing.
thread_local UniqueFd* g_pending_fd = nullptr;

// Facts for the call that just failed, reading errno before any allocation can clobber it.
ErrorFacts SyscallError(const char* syscall) {
  int err = errno;
  return ErrorFacts::FromErrno(err, syscall);
}

Napi::Object RegionToJs(Napi::Env env, const Region& region) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("slot", region.spec.slot);
  o.Set("guestPhysAddr", static_cast<double>(region.spec.guest_phys_addr));
  o.Set("size", static_cast<double>(region.spec.size));
  o.Set("backing", BackingName(region.spec.backing));
  o.Set("logDirtyPages", region.spec.log_dirty_pages);
  o.Set("readonly", region.spec.readonly);
  if (region.spec.transparent_huge_pages.has_value()) {
    o.Set("transparentHugePages", *region.spec.transparent_huge_pages);
  }
  return o;
}

void CheckOk(Napi::Env env, const std::optional<ErrorFacts>& error) {
  if (error) ThrowError(env, *error);
}

}  // namespace

Napi::Function Vm::DefineClass(Napi::Env env) {
  Napi::Function fn = ObjectWrap<Vm>::DefineClass(
      env, "Vm",
      {
          InstanceMethod<&Vm::CheckExtension>("checkExtension"),
          InstanceMethod<&Vm::EnableCap>("enableCap"),
          InstanceMethod<&Vm::AddMemoryRegion>("addMemoryRegion"),
          InstanceMethod<&Vm::RemoveMemoryRegion>("removeMemoryRegion"),
          InstanceMethod<&Vm::SetDirtyLogging>("setDirtyLogging"),
          InstanceMethod<&Vm::ReadGuest>("readGuest"),
          InstanceMethod<&Vm::WriteGuest>("writeGuest"),
          InstanceMethod<&Vm::Regions>("regions"),
          InstanceMethod<&Vm::EnableManualDirtyProtect>("enableManualDirtyProtect"),
          InstanceMethod<&Vm::EnableDirtyRing>("enableDirtyRing"),
          InstanceMethod<&Vm::GetDirtyLog>("getDirtyLog"),
          InstanceMethod<&Vm::ClearDirtyLog>("clearDirtyLog"),
          InstanceMethod<&Vm::HarvestDirty>("harvestDirty"),
          InstanceMethod<&Vm::HarvestDirtyAsync>("harvestDirtyAsync"),
          InstanceAccessor<&Vm::DirtyLogModeJs>("dirtyLogMode"),
          InstanceMethod<&Vm::Close>("close"),
          InstanceMethod<&Vm::CreateVcpu>("createVcpu"),
          InstanceAccessor<&Vm::SlotLimit>("slotLimit"),
          InstanceAccessor<&Vm::Closed>("closed"),
      });
  g_ctors.Register(env, fn);
  return fn;
}

Napi::Object Vm::NewInstance(Napi::Env env, UniqueFd fd, Napi::Value options) {
  Napi::Object obj = g_ctors.New(env, g_pending_fd, &fd, "Vm class was not registered for this env");
  Vm* vm = Unwrap(obj);
  try {
    vm->Configure(env, options);
  } catch (...) {
    vm->CloseNow();  // the half-configured VM must not wait for the GC to release its fd
    throw;
  }
  return obj;
}

Vm::Vm(const Napi::CallbackInfo& info) : ObjectWrap<Vm>(info) {
  Napi::Env env = info.Env();
  if (g_pending_fd == nullptr) {
    ThrowError(env, ErrorFacts::Misuse("ERR_ILLEGAL_CONSTRUCTOR", "create a Vm with KvmSystem.createVm()"));
  }
  fd_ = std::move(*g_pending_fd);
  g_pending_fd = nullptr;
  int slots = ::ioctl(fd_.Get(), kVmCheckExtension.request, KVM_CAP_NR_MEMSLOTS);
  if (slots < 0) ThrowError(env, SyscallError(kVmCheckExtension.name));
  memory_ = std::make_unique<GuestMemory>(static_cast<std::uint32_t>(slots));
}

void Vm::Configure(Napi::Env env, Napi::Value options) {
  std::optional<Napi::Object> given = JsToOptionalObject(env, options, "options");
  if (!given) return;
  Napi::Object opts = *given;
  int fd = Fd(env);

  if (Napi::Value v = opts.Get("identityMapAddr"); !v.IsUndefined()) {
    std::uint64_t addr = JsToU64(env, v, "identityMapAddr");
    if (::ioctl(fd, kSetIdentityMapAddr.request, &addr) != 0) {
      ThrowError(env, SyscallError(kSetIdentityMapAddr.name));
    }
  }
  if (Napi::Value v = opts.Get("tssAddr"); !v.IsUndefined()) {
    std::uint64_t addr = JsToU64(env, v, "tssAddr");
    if (::ioctl(fd, kSetTssAddr.request, static_cast<unsigned long>(addr)) != 0) {
      ThrowError(env, SyscallError(kSetTssAddr.name));
    }
  }
  if (ReadOptionalBool(env, opts, "irqchip").value_or(false)) {
    if (::ioctl(fd, kCreateIrqchip.request, 0) != 0) {
      ThrowError(env, SyscallError(kCreateIrqchip.name));
    }
  }
  if (ReadOptionalBool(env, opts, "pit2").value_or(false)) {
    // A dummy speaker port, as Firecracker and QEMU's -no-hpet setups use.
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    if (::ioctl(fd, kCreatePit2.request, &pit) != 0) {
      int err = errno;
      ThrowError(env, ErrorFacts::FromErrno(err, kCreatePit2.name, {},
                                            err == ENOENT ? "PIT2 needs irqchip: true" : ""));
    }
  }
}

int Vm::Fd(Napi::Env env) const {
  if (!fd_.Valid()) ThrowError(env, ErrorFacts::Misuse("ERR_CLOSED", "Vm is closed"));
  return fd_.Get();
}

void Vm::CloseNow() noexcept {
  for (auto& vcpu : vcpus_) vcpu->Close();  // joins vCPU threads: none may run on a closed VM
  vcpus_.clear();
  // The fd first: once KVM has dropped the VM (or its slots) nothing can reach the mappings.
  fd_.Reset();
  dirty_log_->ReleaseRings();  // ring mappings pin the vCPU files and so the VM
  if (memory_) memory_->Clear();
}

Napi::Value Vm::CheckExtension(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  const Capability& cap = JsToCapability(env, info[0]);
  int r = ::ioctl(fd, kVmCheckExtension.request, cap.id);
  if (r < 0) ThrowError(env, SyscallError(kVmCheckExtension.name));
  return Napi::Number::New(env, r);
}

void Vm::EnableCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  const Capability& cap = JsToCapability(env, info[0]);
  kvm_enable_cap req{};
  req.cap = static_cast<std::uint32_t>(cap.id);
  if (!info[1].IsUndefined()) {
    Napi::Array args = JsToArray(env, info[1], "args");
    if (args.Length() > 4) ThrowInvalidArg(env, "args must be an array of at most 4 integers");
    for (std::uint32_t i = 0; i < args.Length(); ++i) {
      req.args[i] = JsToU64(env, args.Get(i), "args[" + std::to_string(i) + "]");
    }
  }
  if (::ioctl(fd, kEnableCap.request, &req) != 0) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, kEnableCap.name, {}, std::string("capability ") + cap.name));
  }
}

Napi::Value Vm::AddMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  Napi::Object opts = JsToObject(env, info[0], "region");

  RegionSpec spec;
  spec.slot = JsToU32(env, RequireField(env, opts, "slot"), "slot");
  spec.guest_phys_addr = JsToU64(env, RequireField(env, opts, "guestPhysAddr"), "guestPhysAddr");
  spec.size = JsToU64(env, RequireField(env, opts, "size"), "size");
  spec.log_dirty_pages = ReadOptionalBool(env, opts, "logDirtyPages").value_or(false);
  spec.readonly = ReadOptionalBool(env, opts, "readonly").value_or(false);
  spec.transparent_huge_pages = ReadOptionalBool(env, opts, "transparentHugePages");
  if (std::optional<std::string> name = ReadOptionalString(env, opts, "backing")) {
    std::optional<Backing> backing = ParseBacking(*name);
    if (!backing) ThrowInvalidArg(env, "backing must be 'anonymous', 'memfd', 'hugetlb2M' or 'hugetlb1G'");
    spec.backing = *backing;
  }
  CheckOk(env, memory_->Add(fd, spec));
  for (const Region* region : memory_->List()) {
    if (region->spec.slot == spec.slot) return RegionToJs(env, *region);
  }
  return env.Undefined();
}

void Vm::RemoveMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  if (info.Length() < 1) ThrowInvalidArg(env, "slot is required");
  std::uint32_t slot = JsToU32(env, info[0], "slot");
  CheckOk(env, memory_->Remove(fd, slot));
  dirty_log_->ForgetSlot(slot);
}

void Vm::SetDirtyLogging(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  bool on = JsToBool(env, info[1], "on");
  CheckOk(env, memory_->SetDirtyLogging(fd, JsToU32(env, info[0], "slot"), on));
}

Napi::Value Vm::ReadGuest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd(env);
  if (info.Length() < 2) ThrowInvalidArg(env, "readGuest(gpa, length) needs both arguments");
  std::uint64_t gpa = JsToU64(env, info[0], "gpa");
  std::uint64_t len = JsToU64(env, info[1], "length");
  ErrorFacts error;
  const std::byte* src = memory_->Locate(gpa, len, &error);
  if (src == nullptr) ThrowError(env, error);
  return Napi::Buffer<std::uint8_t>::Copy(env, reinterpret_cast<const std::uint8_t*>(src),
                                          static_cast<std::size_t>(len));
}

void Vm::WriteGuest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd(env);
  if (info.Length() < 2) ThrowInvalidArg(env, "writeGuest(gpa, data) needs both arguments");
  std::uint64_t gpa = JsToU64(env, info[0], "gpa");
  Napi::Uint8Array data = JsToUint8Array(env, info[1], "data");
  ErrorFacts error;
  std::byte* dst = memory_->Locate(gpa, data.ByteLength(), &error);
  if (dst == nullptr) ThrowError(env, error);
  std::memcpy(dst, data.Data(), data.ByteLength());
  NoteVmmWrite(gpa, data.ByteLength());  // KVM cannot see writes made through the host mapping
}

Napi::Value Vm::Regions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Fd(env);
  std::vector<const Region*> regions = memory_->List();
  Napi::Array out = Napi::Array::New(env, regions.size());
  for (std::size_t i = 0; i < regions.size(); ++i) {
    out.Set(static_cast<std::uint32_t>(i), RegionToJs(env, *regions[i]));
  }
  return out;
}

Napi::Value Vm::SlotLimit(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), memory_->SlotLimit());
}

void Vm::Close(const Napi::CallbackInfo&) { CloseNow(); }

Vm::~Vm() { CloseNow(); }

Napi::Value Vm::CreateVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  std::shared_ptr<VcpuCore> core;
  Napi::Object vcpu = Vcpu::Create(env, Value(), fd, memory_.get(), info.Length() > 0 ? info[0] : env.Undefined(),
                                   info.Length() > 1 ? info[1] : env.Undefined(), &core);
  vcpus_.erase(std::remove_if(vcpus_.begin(), vcpus_.end(), [](const auto& c) { return c->closed(); }), vcpus_.end());
  vcpus_.push_back(std::move(core));
  AttachDirtyRing(env, *vcpus_.back());  // ring mode: map its ring before the vCPU can run
  return vcpu;
}

Napi::Value Vm::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !fd_.Valid());
}

}  // namespace vh
