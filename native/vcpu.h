// Vcpu: a KVM vCPU fd, its kvm_run mapping and the thread that runs it. Created by
// Vm.createVcpu(id, opts) (KvmSystem -> Vm -> Vcpu).
//
// For other native code (e.g. the dirty ring, native/dirty_log.cc): VcpuCore is the native
// object. Get it from a JS Vcpu with Vcpu::CoreOf(value); it stays valid while you hold the
// shared_ptr, but its fd is closed when the Vm closes (closed() == true) - register a
// close hook to drop resources tied to the fd (e.g. the ring mmap at
// KVM_DIRTY_LOG_PAGE_OFFSET * page size of fd()), and a DirtyRingFullHandler on runner()
// to harvest without a JS round trip.
#ifndef VH_NATIVE_VCPU_H_
#define VH_NATIVE_VCPU_H_

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "guest_memory.h"
#include "ioctl_table.h"
#include "unique_fd.h"
#include "vcpu_thread.h"

namespace vh {

class VcpuCore {
 public:
  VcpuCore(UniqueFd fd, Mapping run, std::uint32_t id, GuestMemory* memory);
  ~VcpuCore() { Close(); }
  VcpuCore(const VcpuCore&) = delete;
  VcpuCore& operator=(const VcpuCore&) = delete;

  // The vCPU fd (-1 once closed). Do not close it; ioctls on it block while the thread is in
  // KVM_RUN, so use it when runner().state() is not kRunning, or from the vCPU thread.
  int fd() const noexcept { return fd_.Get(); }
  std::uint32_t id() const noexcept { return id_; }
  bool closed() const noexcept { return !fd_.Valid(); }
  kvm_run* run() const noexcept { return reinterpret_cast<kvm_run*>(run_.Data()); }
  VcpuRunner& runner() noexcept { return *runner_; }
  // The owning Vm's guest memory; null once closed.
  GuestMemory* memory() const noexcept { return memory_; }

  // Runs on Close(), after the thread is joined and before the fd is closed (JS thread).
  void AddCloseHook(std::function<void()> hook) { close_hooks_.push_back(std::move(hook)); }

  // Stops and joins the thread, runs close hooks, unmaps kvm_run, closes the fd. Idempotent.
  void Close() noexcept;

 private:
  UniqueFd fd_;
  Mapping run_;
  std::uint32_t id_;
  GuestMemory* memory_;
  std::unique_ptr<VcpuRunner> runner_;
  std::vector<std::function<void()>> close_hooks_;
};

class Vcpu : public Napi::ObjectWrap<Vcpu> {
 public:
  // Builds the JS class `Vcpu` for this env.
  static Napi::Function DefineClass(Napi::Env env);

  // KVM_CREATE_VCPU(id) on vm_fd, maps kvm_run, applies KVM_SET_CPUID2 (opts.cpuid). `vm` is the
  // JS Vm, kept alive by the Vcpu. `*core` receives the native object for the Vm's list.
  static Napi::Object Create(Napi::Env env, Napi::Object vm, int vm_fd, GuestMemory* memory,
                             Napi::Value id, Napi::Value options, std::shared_ptr<VcpuCore>* core);

  // The native core of a JS Vcpu, or null when `value` is not one.
  static std::shared_ptr<VcpuCore> CoreOf(Napi::Value value);

  explicit Vcpu(const Napi::CallbackInfo& info);
  ~Vcpu() override;

 private:
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value GetRegs(const Napi::CallbackInfo& info);
  void SetRegs(const Napi::CallbackInfo& info);
  Napi::Value GetSregs(const Napi::CallbackInfo& info);
  void SetSregs(const Napi::CallbackInfo& info);
  Napi::Value GetFpu(const Napi::CallbackInfo& info);
  void SetFpu(const Napi::CallbackInfo& info);
  Napi::Value GetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value GetLapic(const Napi::CallbackInfo& info);
  void SetLapic(const Napi::CallbackInfo& info);
  Napi::Value GetMpState(const Napi::CallbackInfo& info);
  void SetMpState(const Napi::CallbackInfo& info);
  Napi::Value GetVcpuEvents(const Napi::CallbackInfo& info);
  void SetVcpuEvents(const Napi::CallbackInfo& info);
  void SetupRealMode(const Napi::CallbackInfo& info);
  void SetupProtectedMode(const Napi::CallbackInfo& info);
  void SetupLongMode(const Napi::CallbackInfo& info);
  void Start(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  void Stop(const Napi::CallbackInfo& info);
  void Complete(const Napi::CallbackInfo& info);
  void ClaimPorts(const Napi::CallbackInfo& info);
  void ReleasePorts(const Napi::CallbackInfo& info);
  Napi::Value ReadPorts(const Napi::CallbackInfo& info);

  // The open core whose thread is not inside KVM_RUN, or throws ERR_CLOSED / ERR_BUSY.
  VcpuCore& Idle(Napi::Env env);
  VcpuCore& Open(Napi::Env env);
  // The fd for a state ioctl, with the same checks as Idle().
  int StateFd(Napi::Env env) { return Idle(env).fd(); }

  std::shared_ptr<VcpuCore> core_;
  Napi::ObjectReference vm_;  // keeps the Vm (and its guest memory) alive
};

}  // namespace vh

#endif  // VH_NATIVE_VCPU_H_
