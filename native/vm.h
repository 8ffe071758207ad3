// Vm: a KVM VM fd and the guest memory registered with it. Created by KvmSystem.createVm();
// parent of every vCPU in the kernel's hierarchy (KvmSystem -> Vm -> Vcpu).
#ifndef VH_NATIVE_VM_H_
#define VH_NATIVE_VM_H_

#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "dirty_log.h"
#include "guest_memory.h"
#include "unique_fd.h"
#include "vcpu.h"

namespace vh {

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  // Builds the JS class `Vm` for this env and remembers it for NewInstance().
  static Napi::Function DefineClass(Napi::Env env);

  // Wraps a fresh KVM_CREATE_VM fd and applies `options` (tssAddr, identityMapAddr, irqchip,
  // pit2). On any failure the fd is closed before the error propagates.
  static Napi::Object NewInstance(Napi::Env env, UniqueFd fd, Napi::Value options);

  // Only reachable through NewInstance(); `new Vm()` from JS throws ERR_ILLEGAL_CONSTRUCTOR.
  explicit Vm(const Napi::CallbackInfo& info);
  // Stops and joins every vCPU thread before the fds close (GC and env teardown).
  ~Vm() override;

 private:
  // Applies createVm() options in the order KVM needs (irqchip before PIT2).
  void Configure(Napi::Env env, Napi::Value options);

  // KVM_CHECK_EXTENSION on the VM fd (answers may differ from /dev/kvm's).
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  // KVM_ENABLE_CAP(name, args[<=4]).
  void EnableCap(const Napi::CallbackInfo& info);
  // Maps and registers one memory slot; returns its description.
  Napi::Value AddMemoryRegion(const Napi::CallbackInfo& info);
  // Unregisters a slot and unmaps it.
  void RemoveMemoryRegion(const Napi::CallbackInfo& info);
  // Turns KVM_MEM_LOG_DIRTY_PAGES on or off for a live slot.
  void SetDirtyLogging(const Napi::CallbackInfo& info);
  // Copies guest bytes out into a new Buffer.
  Napi::Value ReadGuest(const Napi::CallbackInfo& info);
  // Copies a Buffer/Uint8Array into guest memory.
  void WriteGuest(const Napi::CallbackInfo& info);
  // Every region as { slot, guestPhysAddr, size, backing, logDirtyPages, readonly }.
  Napi::Value Regions(const Napi::CallbackInfo& info);
  // KVM_CAP_NR_MEMSLOTS as seen by this VM.
  Napi::Value SlotLimit(const Napi::CallbackInfo& info);
  // Closes the VM fd, then unmaps all guest memory; idempotent.
  void Close(const Napi::CallbackInfo& info);
  // True once Close() ran.
  Napi::Value Closed(const Napi::CallbackInfo& info);
  // createVcpu(id, {cpuid?: {disable?: string[]}}): KVM_CREATE_VCPU wrapped in a Vcpu.
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);

  // Dirty log (implemented in vm_dirty_log.cc, logic in dirty_log.cc).
  // enableManualDirtyProtect({initiallySet?}): KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 -> {initiallySet}.
  Napi::Value EnableManualDirtyProtect(const Napi::CallbackInfo& info);
  // enableDirtyRing(bytes, {acqRel?, handleFull?}): KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) -> {bytes, acqRel}.
  Napi::Value EnableDirtyRing(const Napi::CallbackInfo& info);
  // getDirtyLog(slot): the raw KVM_GET_DIRTY_LOG bitmap as a Buffer.
  Napi::Value GetDirtyLog(const Napi::CallbackInfo& info);
  // clearDirtyLog(slot, firstPage, numPages): KVM_CLEAR_DIRTY_LOG of the range, chunked.
  void ClearDirtyLog(const Napi::CallbackInfo& info);
  // harvestDirty(slot) / harvestDirtyAsync(slot): collect + re-arm + merge VMM writes.
  Napi::Value HarvestDirty(const Napi::CallbackInfo& info);
  Napi::Value HarvestDirtyAsync(const Napi::CallbackInfo& info);
  // Ring mode: maps the new vCPU's ring and, with handleFull, installs the handler that drains
  // the rings on KVM_EXIT_DIRTY_RING_FULL on the vCPU thread. No-op in other modes.
  void AttachDirtyRing(Napi::Env env, VcpuCore& core);
  // dirtyLogMode: 'bitmap' | 'manual' | 'ring'.
  Napi::Value DirtyLogModeJs(const Napi::CallbackInfo& info);
  // Records a writeGuest() of [gpa, gpa + len) in the VMM write bitmap of a dirty-logged slot.
  void NoteVmmWrite(std::uint64_t gpa, std::uint64_t len);
  // The dirty-logged slot `slot` (ERR_INVALID_ARG / ERR_DIRTY_LOG_OFF otherwise) and all of them.
  DirtySlot RequireDirtySlot(Napi::Env env, Napi::Value slot, bool need_logging, std::vector<DirtySlot>* all);

  // The open fd, or throws ERR_CLOSED.
  int Fd(Napi::Env env) const;
  void CloseNow() noexcept;

  UniqueFd fd_;
  std::unique_ptr<GuestMemory> memory_;
  // Closed (threads joined, fds closed) before the VM fd; the JS Vcpus may outlive the Vm.
  std::vector<std::shared_ptr<VcpuCore>> vcpus_;
  // Shared with harvest workers, which may outlive a close().
  std::shared_ptr<DirtyLog> dirty_log_ = std::make_shared<DirtyLog>();
};

}  // namespace vh

#endif  // VH_NATIVE_VM_H_
