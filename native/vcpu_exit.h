// The record a vCPU thread posts for each KVM exit or runner notice, and its JS form. The
// record is plain C++ data because it crosses threads (through the ThreadSafeFunction); only
// the JS thread, in VcpuExitToJs(), builds Napi values from it.
#ifndef VH_NATIVE_VCPU_EXIT_H_
#define VH_NATIVE_VCPU_EXIT_H_

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vh {

// One exit or runner notice; `kind` says which of the fields below are set.
struct VcpuExit {
  enum class Kind : std::uint8_t {
    kIo, kMmio, kHlt, kShutdown, kFailEntry, kInternalError, kSystemEvent, kDirtyRingFull,
    kIntr, kUnknown,
    kParked,   // the thread is parked (after pause() or a parking exit)
    kStopped,  // the thread left its loop; `detail` says why
    kError,    // KVM_RUN itself failed; errnum set
  };
  Kind kind = Kind::kUnknown;
  std::uint64_t seq = 0;
  // io / mmio
  std::uint16_t port = 0;
  std::uint8_t size = 0;
  std::uint32_t count = 0;
  bool in = false;  // io in / mmio read: JS must call complete() with size*count (len) bytes
  std::uint64_t address = 0;
  std::uint32_t length = 0;
  std::vector<std::uint8_t> data;  // out / write payload
  // fail entry, internal error, system event, unknown
  std::uint64_t hardware_reason = 0;
  std::uint32_t cpu = 0;
  std::uint32_t code = 0;  // suberror / system event type / raw exit reason
  std::vector<std::uint64_t> words;
  int errnum = 0;
  std::string detail;
};

// The JS event for `exit`: {reason, seq, ...the fields of that reason} (see NativeVcpuExit).
Napi::Object VcpuExitToJs(Napi::Env env, const VcpuExit& exit);

}  // namespace vh

#endif  // VH_NATIVE_VCPU_EXIT_H_
