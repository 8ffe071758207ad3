#include "vcpu_thread.h"

#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <utility>

#include "errors.h"

namespace vh {
namespace {

// Leaked on purpose: std::atexit handlers and vCPU threads may use them while static
// destructors run.
std::mutex& RegistryMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::set<VcpuRunner*>& Registry() {
  static auto* runners = new std::set<VcpuRunner*>;
  return *runners;
}

// The kick signal: a realtime signal with a no-op handler installed without SA_RESTART, so
// a vCPU thread inside KVM_RUN returns EINTR. Only ever sent with pthread_kill to a vCPU
// thread, so no other thread needs to block it.
int KickSignal() { return SIGRTMIN + 6; }

void NoopHandler(int) {}

void InstallOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = NoopHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ::sigaction(KickSignal(), &sa, nullptr);
    std::atexit([] { VcpuRunner::StopAll(); });
  });
}

}  // namespace

VcpuRunner::VcpuRunner(int vcpu_fd, kvm_run* run, std::uint32_t id) noexcept
    : fd_(vcpu_fd), run_(run), id_(id) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  Registry().insert(this);
}

VcpuRunner::~VcpuRunner() {
  Stop();
  std::lock_guard<std::mutex> lock(RegistryMutex());
  Registry().erase(this);
}

void VcpuRunner::StopAll() noexcept {
  std::vector<VcpuRunner*> runners;
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    runners.assign(Registry().begin(), Registry().end());
  }
  // Only joins: at process exit the env (and its ThreadSafeFunctions) may already be gone.
  for (VcpuRunner* r : runners) {
    {
      std::lock_guard<std::mutex> lock(r->mu_);
      r->stop_requested_ = true;
      if (r->thread_.joinable()) r->KickLocked();
    }
    r->cv_.notify_all();
    if (r->thread_.joinable() && r->thread_.get_id() != std::this_thread::get_id()) r->thread_.join();
  }
}

void VcpuRunner::Start(Napi::Env env, Napi::Function on_exit, HltPolicy hlt) {
  InstallOnce();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kIdle && state_ != State::kStopped) {
      ThrowError(env, ErrorFacts::Misuse("ERR_BUSY", "vCPU " + std::to_string(id_) + " is already started"));
    }
  }
  Stop();  // joins a thread that ended on its own and releases its ThreadSafeFunction
  tsfn_ = Napi::ThreadSafeFunction::New(env, on_exit, "vh-vcpu", 0, 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = State::kRunning;
    pause_requested_ = false;
    stop_requested_ = false;
    hlt_ = hlt;
  }
  env_ = env;
  // Registered after the ThreadSafeFunction's own hook, so it runs before it (LIFO).
  if (napi_add_env_cleanup_hook(env, &VcpuRunner::EnvCleanup, this) == napi_ok) cleanup_hook_ = true;
  try {
    thread_ = std::thread([this] { Loop(); });
  } catch (const std::system_error& e) {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = State::kStopped;
    ThrowError(env, ErrorFacts::FromErrno(e.code().value(), "pthread_create"));
  }
}

void VcpuRunner::EnvCleanup(void* arg) {
  auto* self = static_cast<VcpuRunner*>(arg);
  self->cleanup_hook_ = false;  // being run; Stop() must not remove it
  self->Stop();
}

void VcpuRunner::KickLocked() {
  run_->immediate_exit = 1;
  if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), KickSignal());
}

bool VcpuRunner::Pause() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kIdle || state_ == State::kStopped || state_ == State::kParked) {
    pause_requested_ = state_ == State::kParked;
    return true;
  }
  pause_requested_ = true;
  KickLocked();
  return false;
}

bool VcpuRunner::Resume() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pause_requested_ && state_ != State::kParked) return false;
  pause_requested_ = false;
  cv_.notify_all();
  return true;
}

void VcpuRunner::Stop() noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
    if (thread_.joinable()) KickLocked();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kIdle) state_ = State::kStopped;
  }
  if (tsfn_) {
    tsfn_.Release();
    tsfn_ = Napi::ThreadSafeFunction();
  }
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(env_, &VcpuRunner::EnvCleanup, this);
    cleanup_hook_ = false;
  }
}

long VcpuRunner::Complete(const std::uint8_t* data, std::size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kWaitingReply || reply_ready_) return -1;
  if (len != reply_len_) return static_cast<long>(reply_len_);
  reply_.assign(data, data + len);
  reply_ready_ = true;
  cv_.notify_all();
  return static_cast<long>(reply_len_);
}

VcpuRunner::State VcpuRunner::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

const char* VcpuRunner::StateName(State state) {
  switch (state) {
    case State::kIdle: return "idle";
    case State::kRunning: return "running";
    case State::kWaitingReply: return "waiting";
    case State::kParked: return "parked";
    case State::kStopped: return "stopped";
  }
  return "unknown";
}

bool VcpuRunner::ClaimPorts(std::uint16_t first, std::uint32_t count, PortHandlerKind kind,
                            std::size_t capacity) {
  std::lock_guard<std::mutex> lock(claims_mu_);
  std::uint32_t end = first + count;
  for (const auto& [start, claim] : claims_) {
    if (first < start + claim.count && start < end) return false;
  }
  Claim claim;
  claim.count = count;
  claim.kind = kind;
  claim.capacity = capacity;
  claims_.emplace(first, std::move(claim));
  return true;
}

bool VcpuRunner::ReleasePorts(std::uint16_t first) {
  std::lock_guard<std::mutex> lock(claims_mu_);
  return claims_.erase(first) > 0;
}

bool VcpuRunner::ReadClaim(std::uint16_t first, std::uint64_t* total, std::vector<std::uint8_t>* bytes,
                           bool drain) {
  std::lock_guard<std::mutex> lock(claims_mu_);
  auto it = claims_.find(first);
  if (it == claims_.end()) return false;
  *total = it->second.total;
  if (drain) {
    bytes->swap(it->second.bytes);
    it->second.bytes.clear();
  } else {
    *bytes = it->second.bytes;
  }
  return true;
}

void VcpuRunner::SetDirtyRingFullHandler(DirtyRingFullHandler handler) {
  dirty_ring_full_ = std::move(handler);
}

bool VcpuRunner::Post(VcpuExit exit) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    exit.seq = ++seq_;
  }
  auto* boxed = new VcpuExit(std::move(exit));
  if (tsfn_.NonBlockingCall(boxed, &VcpuRunner::CallJs) != napi_ok) {
    delete boxed;
    return false;
  }
  return true;
}

void VcpuRunner::FinishPendingLocked() {
  if (!pending_completion_) return;
  pending_completion_ = false;
  run_->immediate_exit = 1;
  ::ioctl(fd_, kRun.request, 0);  // EINTR expected; the IO/MMIO is now retired into the registers
}

void VcpuRunner::Loop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  std::string why = "stop";
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (pause_requested_ && !stop_requested_) {
        FinishPendingLocked();
        state_ = State::kParked;
        lock.unlock();
        VcpuExit parked;
        parked.kind = VcpuExit::Kind::kParked;
        if (!Post(std::move(parked))) {
          why = "closing";
          break;
        }
        lock.lock();
        cv_.wait(lock, [this] { return !pause_requested_ || stop_requested_; });
      }
      if (stop_requested_) break;
      state_ = State::kRunning;
      run_->immediate_exit = 0;
      pending_completion_ = false;  // this entry retires the last IO/MMIO itself
    }
    int r = ::ioctl(fd_, kRun.request, 0);
    if (r < 0) {
      int err = errno;
      if (err == EINTR || err == EAGAIN) {
        std::unique_lock<std::mutex> lock(mu_);
        if (pause_requested_ || stop_requested_) continue;
        lock.unlock();
        VcpuExit intr;
        intr.kind = VcpuExit::Kind::kIntr;
        if (!Post(std::move(intr))) break;
        continue;
      }
      VcpuExit error;
      error.kind = VcpuExit::Kind::kError;
      error.errnum = err;
      error.detail = kRun.name;
      Post(std::move(error));
      why = "error";
      break;
    }
    if (!HandleExit(&why)) break;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    FinishPendingLocked();
    state_ = State::kStopped;
  }
  VcpuExit stopped;
  stopped.kind = VcpuExit::Kind::kStopped;
  stopped.detail = why;
  Post(std::move(stopped));
}

bool VcpuRunner::HandleExit(std::string* why) {
  VcpuExit e;
  switch (run_->exit_reason) {
    case KVM_EXIT_IO:
      if (!HandleIo()) {
        *why = "stop";
        return false;
      }
      return true;
    case KVM_EXIT_MMIO:
      if (!HandleMmio()) {
        *why = "stop";
        return false;
      }
      return true;
    case KVM_EXIT_HLT: {
      e.kind = VcpuExit::Kind::kHlt;
      if (!Post(std::move(e))) return false;
      if (hlt_ == HltPolicy::kStop) {
        *why = "hlt";
        return false;
      }
      std::lock_guard<std::mutex> lock(mu_);
      pause_requested_ = true;
      return true;
    }
    case KVM_EXIT_DIRTY_RING_FULL: {
      if (dirty_ring_full_ && dirty_ring_full_()) return true;
      e.kind = VcpuExit::Kind::kDirtyRingFull;
      if (!Post(std::move(e))) return false;
      std::lock_guard<std::mutex> lock(mu_);
      pause_requested_ = true;  // the ring owner harvests, resets, then resume()s
      return true;
    }
    case KVM_EXIT_SYSTEM_EVENT: {
      e.kind = VcpuExit::Kind::kSystemEvent;
      e.code = run_->system_event.type;
      std::uint32_t n = std::min<std::uint32_t>(run_->system_event.ndata, 16);
      e.words.assign(run_->system_event.data, run_->system_event.data + n);
      if (!Post(std::move(e))) return false;
      std::lock_guard<std::mutex> lock(mu_);
      pause_requested_ = true;
      return true;
    }
    case KVM_EXIT_INTR:
      e.kind = VcpuExit::Kind::kIntr;
      return Post(std::move(e));
    case KVM_EXIT_SHUTDOWN:
      e.kind = VcpuExit::Kind::kShutdown;
      *why = "shutdown";
      Post(std::move(e));
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      e.kind = VcpuExit::Kind::kFailEntry;
      e.hardware_reason = run_->fail_entry.hardware_entry_failure_reason;
      e.cpu = run_->fail_entry.cpu;
      *why = "failEntry";
      Post(std::move(e));
      return false;
    case KVM_EXIT_INTERNAL_ERROR: {
      e.kind = VcpuExit::Kind::kInternalError;
      e.code = run_->internal.suberror;
      std::uint32_t n = std::min<std::uint32_t>(run_->internal.ndata, 16);
      e.words.assign(run_->internal.data, run_->internal.data + n);
      *why = "internalError";
      Post(std::move(e));
      return false;
    }
    default:
      e.kind = VcpuExit::Kind::kUnknown;
      e.code = run_->exit_reason;
      *why = "unknown";
      Post(std::move(e));
      return false;
  }
}

bool VcpuRunner::HandleIo() {
  auto& io = run_->io;
  std::uint8_t* data = reinterpret_cast<std::uint8_t*>(run_) + io.data_offset;
  std::size_t len = static_cast<std::size_t>(io.size) * io.count;
  bool in = io.direction == KVM_EXIT_IO_IN;
  {
    std::lock_guard<std::mutex> lock(claims_mu_);
    auto it = claims_.upper_bound(io.port);
    if (it != claims_.begin()) {
      --it;
      if (io.port < it->first + it->second.count) {
        Claim& claim = it->second;
        if (in) {
          std::memset(data, 0xff, len);  // a claimed port reads as floating bus
        } else {
          claim.total += len;
          if (claim.kind == PortHandlerKind::kConsole) {
            std::size_t room = claim.capacity - std::min(claim.capacity, claim.bytes.size());
            claim.bytes.insert(claim.bytes.end(), data, data + std::min(room, len));
          }
        }
        std::lock_guard<std::mutex> state_lock(mu_);
        pending_completion_ = true;
        return true;
      }
    }
  }
  VcpuExit e;
  e.kind = VcpuExit::Kind::kIo;
  e.port = io.port;
  e.size = io.size;
  e.count = io.count;
  e.in = in;
  if (!in) e.data.assign(data, data + len);
  if (!Post(std::move(e))) return false;
  if (in && !WaitReply(data, len)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  pending_completion_ = true;
  return true;
}

bool VcpuRunner::HandleMmio() {
  auto& mmio = run_->mmio;
  std::uint32_t len = std::min<std::uint32_t>(mmio.len, sizeof(mmio.data));
  VcpuExit e;
  e.kind = VcpuExit::Kind::kMmio;
  e.address = mmio.phys_addr;
  e.length = len;
  e.in = mmio.is_write == 0;
  if (!e.in) e.data.assign(mmio.data, mmio.data + len);
  if (!Post(std::move(e))) return false;
  if (mmio.is_write == 0 && !WaitReply(mmio.data, len)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  pending_completion_ = true;
  return true;
}

bool VcpuRunner::WaitReply(std::uint8_t* dst, std::size_t len) {
  std::unique_lock<std::mutex> lock(mu_);
  state_ = State::kWaitingReply;
  reply_ready_ = false;
  reply_len_ = len;
  cv_.wait(lock, [this] { return reply_ready_ || stop_requested_; });
  reply_len_ = 0;
  if (!reply_ready_) return false;
  reply_ready_ = false;
  std::memcpy(dst, reply_.data(), len);
  state_ = State::kRunning;
  return true;
}

void VcpuRunner::CallJs(Napi::Env env, Napi::Function fn, VcpuExit* raw) {
  std::unique_ptr<VcpuExit> exit(raw);
  if (env == nullptr || fn.IsEmpty()) return;
  Napi::Object o = VcpuExitToJs(env, *exit);
  try {
    fn.Call({o});
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();  // surfaces as an uncaught exception, as from any callback
  }
}

}  // namespace vh
