// VcpuRunner: the dedicated std::thread that loops on KVM_RUN for one vCPU (never the libuv
// pool). Exits reach JS as plain-data VcpuExit records through a ThreadSafeFunction; IO-in and
// MMIO-read exits wait (condition variable) for Complete() from JS. pause/resume/stop are
// messages: a flag under the mutex plus a kick (kvm_run.immediate_exit + a realtime signal).
#ifndef VH_NATIVE_VCPU_THREAD_H_
#define VH_NATIVE_VCPU_THREAD_H_

#include <napi.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ioctl_table.h"
#include "vcpu_exit.h"

namespace vh {

// Where a HLT exit leaves the thread.
enum class HltPolicy { kPark, kStop };

// A native handler for a range of ports (no JS round trip).
enum class PortHandlerKind { kSink, kConsole };

class VcpuRunner {
 public:
  enum class State { kIdle, kRunning, kWaitingReply, kParked, kStopped };

  // Returns true when it handled the DIRTY_RING_FULL exit (harvested + reset): the thread then
  // re-enters the guest without telling JS. Called on the vCPU thread.
  using DirtyRingFullHandler = std::function<bool()>;

  VcpuRunner(int vcpu_fd, kvm_run* run, std::uint32_t id) noexcept;
  ~VcpuRunner();  // Stop()
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  // Spawns the thread; `on_exit(event)` receives every VcpuExit. Throws ERR_BUSY if running.
  void Start(Napi::Env env, Napi::Function on_exit, HltPolicy hlt);
  // Asks the thread to park; true when it is already parked/idle/stopped (no 'parked' event
  // will follow), false when a 'parked' event will report it.
  bool Pause();
  // Un-parks; false when it was not parked or paused.
  bool Resume();
  // Ends the loop, joins the thread and releases the ThreadSafeFunction. Idempotent; any thread.
  void Stop() noexcept;
  // Supplies the bytes of a pending IO-in/MMIO-read. Returns the length expected, or -1 when
  // nothing is pending (then nothing is written).
  long Complete(const std::uint8_t* data, std::size_t len);

  State state() const;
  static const char* StateName(State state);

  // Claims [first, first + count) for a native handler; false when it overlaps a claim.
  bool ClaimPorts(std::uint16_t first, std::uint32_t count, PortHandlerKind kind, std::size_t capacity);
  // Drops the claim starting at `first`; false when there is none.
  bool ReleasePorts(std::uint16_t first);
  // Bytes OUT-ed to the claim so far, and (console) the retained bytes, optionally drained.
  bool ReadClaim(std::uint16_t first, std::uint64_t* total, std::vector<std::uint8_t>* bytes, bool drain);

  // Hook for the dirty-ring owner (see DirtyRingFullHandler). Set before Start().
  void SetDirtyRingFullHandler(DirtyRingFullHandler handler);

  // Stops every live runner of the process (std::atexit, so process.exit() with running vCPUs
  // is clean). Installed once by the first Start().
  static void StopAll() noexcept;

 private:
  struct Claim {
    std::uint32_t count = 0;
    PortHandlerKind kind = PortHandlerKind::kSink;
    std::size_t capacity = 0;
    std::uint64_t total = 0;
    std::vector<std::uint8_t> bytes;
  };

  void Loop();
  // Handles kvm_run's exit; false when the loop must end (with `why`).
  bool HandleExit(std::string* why);
  bool HandleIo();
  bool HandleMmio();
  // Waits for Complete(); copies the reply to dst. False when stopping.
  bool WaitReply(std::uint8_t* dst, std::size_t len);
  // Posts to JS; false when the ThreadSafeFunction is closing.
  bool Post(VcpuExit exit);
  // Sets immediate_exit and signals the thread; mu_ held.
  void KickLocked();
  // KVM_RUN with immediate_exit=1 so a pending IO/MMIO completes before state is read.
  void FinishPendingLocked();
  static void CallJs(Napi::Env env, Napi::Function fn, VcpuExit* exit);
  static void EnvCleanup(void* arg);

  const int fd_;
  kvm_run* const run_;
  const std::uint32_t id_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kIdle;
  bool pause_requested_ = false;
  bool stop_requested_ = false;
  bool pending_completion_ = false;
  bool reply_ready_ = false;
  std::size_t reply_len_ = 0;
  std::vector<std::uint8_t> reply_;
  HltPolicy hlt_ = HltPolicy::kPark;
  std::uint64_t seq_ = 0;

  std::mutex claims_mu_;
  std::map<std::uint16_t, Claim> claims_;  // by first port
  DirtyRingFullHandler dirty_ring_full_;

  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  napi_env env_ = nullptr;
  bool cleanup_hook_ = false;
};

}  // namespace vh

#endif  // VH_NATIVE_VCPU_THREAD_H_
