// Vm::AttachDirtyRing: ties each new vCPU's dirty ring (native/vcpu.h) to the VM's DirtyLog.
#include <fcntl.h>

#include <cerrno>
#include <memory>

#include "errors.h"
#include "vcpu.h"
#include "vm.h"

namespace vh {

void Vm::AttachDirtyRing(Napi::Env env, VcpuCore& core) {
  if (dirty_log_->Mode() != DirtyLogMode::kRing) return;
  if (auto error = dirty_log_->AttachRing(core.fd(), core.id())) ThrowError(env, *error);
  if (!dirty_log_->HandleRingFull()) return;
  // The handler runs on the vCPU thread and may outlive this Vm's fd: it owns a dup.
  auto vm_fd = std::make_shared<UniqueFd>(::fcntl(Fd(env), F_DUPFD_CLOEXEC, 0));
  if (!vm_fd->Valid()) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, "fcntl"));
  }
  std::weak_ptr<DirtyLog> log = dirty_log_;
  core.runner().SetDirtyRingFullHandler([log, vm_fd] {
    std::shared_ptr<DirtyLog> l = log.lock();
    return l && l->DrainRings(vm_fd->Get());
  });
}

}  // namespace vh
