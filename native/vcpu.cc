#include "vcpu.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "cpuid_features.h"
#include "errors.h"
#include "js_args.h"
#include "vcpu_state.h"
#include "x86_boot.h"

namespace vh {
namespace {

ConstructorRegistry g_ctors;
thread_local std::shared_ptr<VcpuCore>* g_pending_core = nullptr;

[[noreturn]] void Syscall(Napi::Env env, const Ioctl& op, std::string hint = {}) {
  int err = errno;
  ThrowError(env, ErrorFacts::FromErrno(err, op.name, {}, std::move(hint)));
}

// System facts every vCPU needs (kvm_run size, supported CPUID). The Vm does not keep the
// /dev/kvm fd, so they are read once per process from /dev/kvm and cached.
struct SystemFacts {
  long mmap_size = 0;
  std::vector<kvm_cpuid_entry2> cpuid;
};

const SystemFacts& System(Napi::Env env) {
  static std::mutex mu;
  static SystemFacts* facts = nullptr;  // leaked: read by every env, never changes
  std::lock_guard<std::mutex> lock(mu);
  if (facts != nullptr) return *facts;
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.Valid()) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, "open", "/dev/kvm"));
  }
  auto f = std::make_unique<SystemFacts>();
  f->mmap_size = ::ioctl(kvm.Get(), kGetVcpuMmapSize.request, 0);
  if (f->mmap_size <= 0) Syscall(env, kGetVcpuMmapSize);
  for (std::uint32_t n = 128; n <= 4096; n *= 2) {
    std::vector<std::byte> buf(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
    c->nent = n;
    if (::ioctl(kvm.Get(), kGetSupportedCpuid.request, c) == 0) {
      f->cpuid.assign(c->entries, c->entries + c->nent);
      facts = f.release();
      return *facts;
    }
    if (errno != E2BIG) Syscall(env, kGetSupportedCpuid);
  }
  Syscall(env, kGetSupportedCpuid);
}

std::uint32_t* RegOf(kvm_cpuid_entry2& e, char reg) {
  switch (reg) {
    case 'a': return &e.eax;
    case 'b': return &e.ebx;
    case 'c': return &e.ecx;
    default: return &e.edx;
  }
}

// The supported CPUID minus opts.cpuid.disable; leaf 1 carries the APIC id. Built (and its
// options checked) before KVM_CREATE_VCPU, so a bad option does not use up the vCPU id.
std::vector<kvm_cpuid_entry2> BuildCpuid(Napi::Env env, std::uint32_t id, const std::optional<Napi::Object>& options) {
  std::vector<kvm_cpuid_entry2> entries = System(env).cpuid;
  for (kvm_cpuid_entry2& e : entries) {
    if (e.function == 1) e.ebx = (e.ebx & 0x00ffffffu) | ((id & 0xffu) << 24);
  }
  std::optional<Napi::Object> cpuid = options ? JsToOptionalObject(env, options->Get("cpuid"), "cpuid") : std::nullopt;
  Napi::Value disable = cpuid ? cpuid->Get("disable") : env.Undefined();
  if (!disable.IsUndefined()) {
    Napi::Array names = JsToArray(env, disable, "cpuid.disable");
    for (std::uint32_t i = 0; i < names.Length(); ++i) {
      std::string name = JsToString(env, names.Get(i), "cpuid.disable[" + std::to_string(i) + "]");
      // Every name decodeCpuidFeatures() reports can be disabled.
      std::optional<CpuidFeatureBit> bit = FindCpuidFeature(name);
      if (!bit) ThrowInvalidArg(env, "cpuid.disable: unknown feature '" + name + "'");
      for (kvm_cpuid_entry2& e : entries) {
        if (e.function == bit->function && e.index == bit->index) *RegOf(e, bit->reg) &= ~(1u << bit->bit);
      }
    }
  }
  return entries;
}

void SetCpuid(Napi::Env env, int fd, const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<std::byte> buf(sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2));
  auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
  c->nent = static_cast<std::uint32_t>(entries.size());
  std::memcpy(c->entries, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (::ioctl(fd, kSetCpuid2.request, c) != 0) Syscall(env, kSetCpuid2);
}

}  // namespace

VcpuCore::VcpuCore(UniqueFd fd, Mapping run, std::uint32_t id, GuestMemory* memory)
    : fd_(std::move(fd)), run_(std::move(run)), id_(id), memory_(memory) {
  runner_ = std::make_unique<VcpuRunner>(fd_.Get(), this->run(), id_);
}

void VcpuCore::Close() noexcept {
  if (!fd_.Valid()) return;
  runner_->Stop();
  for (auto& hook : close_hooks_) hook();
  close_hooks_.clear();
  memory_ = nullptr;
  run_.Reset();
  fd_.Reset();
}

Napi::Function Vcpu::DefineClass(Napi::Env env) {
  Napi::Function fn = ObjectWrap<Vcpu>::DefineClass(
      env, "Vcpu",
      {
          InstanceAccessor<&Vcpu::Id>("id"),
          InstanceAccessor<&Vcpu::State>("state"),
          InstanceAccessor<&Vcpu::Closed>("closed"),
          InstanceMethod<&Vcpu::GetRegs>("getRegs"),
          InstanceMethod<&Vcpu::SetRegs>("setRegs"),
          InstanceMethod<&Vcpu::GetSregs>("getSregs"),
          InstanceMethod<&Vcpu::SetSregs>("setSregs"),
          InstanceMethod<&Vcpu::GetFpu>("getFpu"),
          InstanceMethod<&Vcpu::SetFpu>("setFpu"),
          InstanceMethod<&Vcpu::GetMsrs>("getMsrs"),
          InstanceMethod<&Vcpu::SetMsrs>("setMsrs"),
          InstanceMethod<&Vcpu::GetLapic>("getLapic"),
          InstanceMethod<&Vcpu::SetLapic>("setLapic"),
          InstanceMethod<&Vcpu::GetMpState>("getMpState"),
          InstanceMethod<&Vcpu::SetMpState>("setMpState"),
          InstanceMethod<&Vcpu::GetVcpuEvents>("getVcpuEvents"),
          InstanceMethod<&Vcpu::SetVcpuEvents>("setVcpuEvents"),
          InstanceMethod<&Vcpu::SetupRealMode>("setupRealMode"),
          InstanceMethod<&Vcpu::SetupProtectedMode>("setupProtectedMode"),
          InstanceMethod<&Vcpu::SetupLongMode>("setupLongMode"),
          InstanceMethod<&Vcpu::Start>("start"),
          InstanceMethod<&Vcpu::Pause>("pause"),
          InstanceMethod<&Vcpu::Resume>("resume"),
          InstanceMethod<&Vcpu::Stop>("stop"),
          InstanceMethod<&Vcpu::Complete>("complete"),
          InstanceMethod<&Vcpu::ClaimPorts>("claimPorts"),
          InstanceMethod<&Vcpu::ReleasePorts>("releasePorts"),
          InstanceMethod<&Vcpu::ReadPorts>("readPorts"),
      });
  g_ctors.Register(env, fn);
  return fn;
}

Napi::Object Vcpu::Create(Napi::Env env, Napi::Object vm, int vm_fd, GuestMemory* memory,
                          Napi::Value id_value, Napi::Value options, std::shared_ptr<VcpuCore>* out) {
  std::optional<Napi::Object> opts = JsToOptionalObject(env, options, "options");
  std::uint32_t id = static_cast<std::uint32_t>(JsToUint(env, id_value, "id", UINT32_MAX));
  const SystemFacts& sys = System(env);
  const std::vector<kvm_cpuid_entry2> cpuid = BuildCpuid(env, id, opts);
  int r = ::ioctl(vm_fd, kCreateVcpu.request, static_cast<unsigned long>(id));
  if (r < 0) Syscall(env, kCreateVcpu, errno == EEXIST ? "vCPU id already in use" : "");
  UniqueFd fd(r);
  void* addr = ::mmap(nullptr, static_cast<std::size_t>(sys.mmap_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd.Get(), 0);
  if (addr == MAP_FAILED) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, "mmap", {}, "kvm_run"));
  }
  Mapping run(addr, static_cast<std::size_t>(sys.mmap_size));
  SetCpuid(env, fd.Get(), cpuid);
  auto core = std::make_shared<VcpuCore>(std::move(fd), std::move(run), id, memory);

  Napi::Object obj = g_ctors.New(env, g_pending_core, &core, "Vcpu class was not registered");
  Vcpu* self = Unwrap(obj);
  self->vm_ = Napi::Persistent(vm);
  *out = self->core_;
  return obj;
}

std::shared_ptr<VcpuCore> Vcpu::CoreOf(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  Napi::Function ctor = g_ctors.Get(value.Env());
  if (ctor.IsEmpty()) return nullptr;
  if (!value.As<Napi::Object>().InstanceOf(ctor)) return nullptr;
  return Unwrap(value.As<Napi::Object>())->core_;
}

Vcpu::Vcpu(const Napi::CallbackInfo& info) : ObjectWrap<Vcpu>(info) {
  if (g_pending_core == nullptr) {
    ThrowError(info.Env(), ErrorFacts::Misuse("ERR_ILLEGAL_CONSTRUCTOR", "create a Vcpu with vm.createVcpu()"));
  }
  core_ = std::move(*g_pending_core);
  g_pending_core = nullptr;
}

Vcpu::~Vcpu() {
  if (core_) core_->Close();
}

VcpuCore& Vcpu::Open(Napi::Env env) {
  if (!core_ || core_->closed()) ThrowError(env, ErrorFacts::Misuse("ERR_CLOSED", "Vcpu is closed (its Vm was closed)"));
  return *core_;
}

VcpuCore& Vcpu::Idle(Napi::Env env) {
  VcpuCore& core = Open(env);
  if (core.runner().state() == VcpuRunner::State::kRunning) {
    ThrowError(env, ErrorFacts::Misuse("ERR_BUSY", "vCPU is running; pause() it first"));
  }
  return core;
}

Napi::Value Vcpu::Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), core_->id()); }

Napi::Value Vcpu::State(const Napi::CallbackInfo& info) {
  if (core_->closed()) return Napi::String::New(info.Env(), "closed");
  return Napi::String::New(info.Env(), VcpuRunner::StateName(core_->runner().state()));
}

Napi::Value Vcpu::Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), core_->closed()); }

Napi::Value Vcpu::GetRegs(const Napi::CallbackInfo& info) {
  kvm_regs regs{};
  if (::ioctl(StateFd(info.Env()), kGetRegs.request, &regs) != 0) Syscall(info.Env(), kGetRegs);
  return RegsToJs(info.Env(), regs);
}

void Vcpu::SetRegs(const Napi::CallbackInfo& info) {
  int fd = StateFd(info.Env());
  kvm_regs regs{};
  if (::ioctl(fd, kGetRegs.request, &regs) != 0) Syscall(info.Env(), kGetRegs);
  RegsFromJs(info.Env(), info[0], &regs);
  if (::ioctl(fd, kSetRegs.request, &regs) != 0) Syscall(info.Env(), kSetRegs);
}

Napi::Value Vcpu::GetSregs(const Napi::CallbackInfo& info) {
  kvm_sregs sregs{};
  if (::ioctl(StateFd(info.Env()), kGetSregs.request, &sregs) != 0) Syscall(info.Env(), kGetSregs);
  return SregsToJs(info.Env(), sregs);
}

void Vcpu::SetSregs(const Napi::CallbackInfo& info) {
  int fd = StateFd(info.Env());
  kvm_sregs sregs{};
  if (::ioctl(fd, kGetSregs.request, &sregs) != 0) Syscall(info.Env(), kGetSregs);
  SregsFromJs(info.Env(), info[0], &sregs);
  if (::ioctl(fd, kSetSregs.request, &sregs) != 0) Syscall(info.Env(), kSetSregs);
}

Napi::Value Vcpu::GetFpu(const Napi::CallbackInfo& info) {
  kvm_fpu fpu{};
  if (::ioctl(StateFd(info.Env()), kGetFpu.request, &fpu) != 0) Syscall(info.Env(), kGetFpu);
  return FpuToJs(info.Env(), fpu);
}

void Vcpu::SetFpu(const Napi::CallbackInfo& info) {
  int fd = StateFd(info.Env());
  kvm_fpu fpu{};
  if (::ioctl(fd, kGetFpu.request, &fpu) != 0) Syscall(info.Env(), kGetFpu);
  FpuFromJs(info.Env(), info[0], &fpu);
  if (::ioctl(fd, kSetFpu.request, &fpu) != 0) Syscall(info.Env(), kSetFpu);
}

Napi::Value Vcpu::GetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = StateFd(env);
  Napi::Array indices = JsToArray(env, info[0], "indices");
  std::uint32_t n = indices.Length();
  std::vector<std::byte> buf(sizeof(kvm_msrs) + n * sizeof(kvm_msr_entry));
  auto* msrs = reinterpret_cast<kvm_msrs*>(buf.data());
  msrs->nmsrs = n;
  for (std::uint32_t i = 0; i < n; ++i) {
    msrs->entries[i].index = static_cast<std::uint32_t>(JsToUint(env, indices.Get(i), "index", UINT32_MAX));
  }
  int r = ::ioctl(fd, kGetMsrs.request, msrs);
  if (r < 0) Syscall(env, kGetMsrs);
  // KVM stops at the first MSR it cannot read; return exactly those it read.
  Napi::Array out = Napi::Array::New(env, static_cast<std::size_t>(r));
  for (std::uint32_t i = 0; i < static_cast<std::uint32_t>(r); ++i) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("index", msrs->entries[i].index);
    e.Set("data", Napi::BigInt::New(env, static_cast<std::uint64_t>(msrs->entries[i].data)));
    out.Set(i, e);
  }
  return out;
}

Napi::Value Vcpu::SetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = StateFd(env);
  Napi::Array entries = JsToArray(env, info[0], "entries");
  std::uint32_t n = entries.Length();
  std::vector<std::byte> buf(sizeof(kvm_msrs) + n * sizeof(kvm_msr_entry));
  auto* msrs = reinterpret_cast<kvm_msrs*>(buf.data());
  msrs->nmsrs = n;
  for (std::uint32_t i = 0; i < n; ++i) {
    Napi::Object e = JsToObject(env, entries.Get(i), "entries[" + std::to_string(i) + "]");
    msrs->entries[i].index = static_cast<std::uint32_t>(JsToUint(env, e.Get("index"), "index", UINT32_MAX));
    msrs->entries[i].data = JsToU64(env, e.Get("data"), "data");
  }
  int r = ::ioctl(fd, kSetMsrs.request, msrs);
  if (r < 0) Syscall(env, kSetMsrs);
  return Napi::Number::New(env, r);  // how many were set, in order
}

Napi::Value Vcpu::GetLapic(const Napi::CallbackInfo& info) {
  kvm_lapic_state lapic{};
  if (::ioctl(StateFd(info.Env()), kGetLapic.request, &lapic) != 0) Syscall(info.Env(), kGetLapic, "needs irqchip: true");
  return Napi::Buffer<std::uint8_t>::Copy(info.Env(), reinterpret_cast<const std::uint8_t*>(lapic.regs), sizeof(lapic.regs));
}

void Vcpu::SetLapic(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = StateFd(env);
  kvm_lapic_state lapic{};
  JsBytes regs = JsToBytes(env, info[0], "regs");
  if (regs.len != sizeof(lapic.regs)) {
    ThrowInvalidArg(env, "setLapic needs a Buffer of " + std::to_string(sizeof(lapic.regs)) + " bytes");
  }
  std::memcpy(lapic.regs, regs.data, sizeof(lapic.regs));
  if (::ioctl(fd, kSetLapic.request, &lapic) != 0) Syscall(env, kSetLapic, "needs irqchip: true");
}

Napi::Value Vcpu::GetMpState(const Napi::CallbackInfo& info) {
  kvm_mp_state mp{};
  if (::ioctl(StateFd(info.Env()), kGetMpState.request, &mp) != 0) Syscall(info.Env(), kGetMpState);
  return Napi::Number::New(info.Env(), mp.mp_state);
}

void Vcpu::SetMpState(const Napi::CallbackInfo& info) {
  int fd = StateFd(info.Env());
  kvm_mp_state mp{};
  mp.mp_state = static_cast<std::uint32_t>(JsToUint(info.Env(), info[0], "mpState", UINT32_MAX));
  if (::ioctl(fd, kSetMpState.request, &mp) != 0) Syscall(info.Env(), kSetMpState);
}

Napi::Value Vcpu::GetVcpuEvents(const Napi::CallbackInfo& info) {
  kvm_vcpu_events events{};
  if (::ioctl(StateFd(info.Env()), kGetVcpuEvents.request, &events) != 0) Syscall(info.Env(), kGetVcpuEvents);
  return VcpuEventsToJs(info.Env(), events);
}

void Vcpu::SetVcpuEvents(const Napi::CallbackInfo& info) {
  int fd = StateFd(info.Env());
  kvm_vcpu_events events{};
  if (::ioctl(fd, kGetVcpuEvents.request, &events) != 0) Syscall(info.Env(), kGetVcpuEvents);
  VcpuEventsFromJs(info.Env(), info[0], &events);
  if (::ioctl(fd, kSetVcpuEvents.request, &events) != 0) Syscall(info.Env(), kSetVcpuEvents);
}

namespace {

// Loads boot state built by x86_boot: the segments and control registers, then the entry rip.
void Apply(Napi::Env env, int fd, const kvm_sregs& sregs, std::uint64_t rip) {
  if (::ioctl(fd, kSetSregs.request, &sregs) != 0) Syscall(env, kSetSregs);
  kvm_regs regs = EntryRegs(rip);
  if (::ioctl(fd, kSetRegs.request, &regs) != 0) Syscall(env, kSetRegs);
}

// The vCPU's sregs as KVM has them: the boot setups keep what they do not set (e.g. the IDT).
kvm_sregs CurrentSregs(Napi::Env env, int fd) {
  kvm_sregs sregs{};
  if (::ioctl(fd, kGetSregs.request, &sregs) != 0) Syscall(env, kGetSregs);
  return sregs;
}

}  // namespace

void Vcpu::SetupRealMode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = StateFd(env);
  std::uint64_t entry = JsToUint(env, info[0], "entry", kRealModeEntryMax);
  kvm_sregs s = CurrentSregs(env, fd);
  std::uint64_t rip = EnterRealMode(&s, entry);
  Apply(env, fd, s, rip);
}

void Vcpu::SetupProtectedMode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = StateFd(env);
  std::uint64_t entry = JsToUint(env, info[0], "entry", kProtectedModeEntryMax);
  kvm_sregs s = CurrentSregs(env, fd);
  EnterProtectedMode(&s);
  Apply(env, fd, s, entry);
}

void Vcpu::SetupLongMode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = Idle(env);
  int fd = core.fd();
  std::uint64_t entry = JsToU64(env, info[0], "entry");
  Napi::Object opts = JsToObject(env, info[1], "layout");
  LongModeLayout layout;
  layout.page_table_gpa = JsToU64(env, opts.Get("pageTableGpa"), "pageTableGpa");
  layout.gdt_gpa = JsToU64(env, opts.Get("gdtGpa"), "gdtGpa");
  if (auto error = WriteLongModeTables(*core.memory(), layout)) ThrowError(env, *error);
  kvm_sregs s = CurrentSregs(env, fd);
  EnterLongMode(&s, layout);
  Apply(env, fd, s, entry);
}

void Vcpu::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = Open(env);
  Napi::Function on_exit = JsToFunction(env, info[0], "onExit");
  HltPolicy hlt = HltPolicy::kPark;
  if (std::optional<Napi::Object> opts = JsToOptionalObject(env, info[1], "options")) {
    if (std::optional<std::string> name = ReadOptionalString(env, *opts, "hlt")) {
      if (*name == "stop") hlt = HltPolicy::kStop;
      else if (*name != "park") ThrowInvalidArg(env, "hlt must be 'park' or 'stop'");
    }
  }
  core.runner().Start(env, on_exit, hlt);
}

Napi::Value Vcpu::Pause(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Open(info.Env()).runner().Pause());
}

Napi::Value Vcpu::Resume(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Open(info.Env()).runner().Resume());
}

void Vcpu::Stop(const Napi::CallbackInfo& info) {
  if (core_ && !core_->closed()) core_->runner().Stop();
  (void)info;
}

void Vcpu::Complete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = Open(env);
  JsBytes data = JsToBytes(env, info[0], "data");
  long expected = core.runner().Complete(data.data, data.len);
  if (expected < 0) ThrowError(env, ErrorFacts::Misuse("ERR_NOT_WAITING", "no IO-in or MMIO-read is waiting for data"));
  if (static_cast<std::size_t>(expected) != data.len) {
    ThrowInvalidArg(env, "complete() needs exactly " + std::to_string(expected) + " bytes");
  }
}

void Vcpu::ClaimPorts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  VcpuCore& core = Open(env);
  auto first = static_cast<std::uint16_t>(JsToUint(env, info[0], "first", 0xffff));
  auto count = static_cast<std::uint32_t>(JsToUint(env, info[1], "count", 0x10000 - first));
  if (count == 0) ThrowInvalidArg(env, "count must be at least 1");
  std::string kind = JsToOptionalString(env, info[2], "kind").value_or("sink");
  if (kind != "sink" && kind != "console") ThrowInvalidArg(env, "kind must be 'sink' or 'console'");
  std::size_t capacity = !info[3].IsUndefined()
                             ? static_cast<std::size_t>(JsToUint(env, info[3], "capacity", 1ull << 30))
                             : 1u << 20;
  if (!core.runner().ClaimPorts(first, count, kind == "console" ? PortHandlerKind::kConsole : PortHandlerKind::kSink, capacity)) {
    ThrowError(env, ErrorFacts::Misuse("EEXIST", "ports overlap an existing claim"));
  }
}

void Vcpu::ReleasePorts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto first = static_cast<std::uint16_t>(JsToUint(env, info[0], "first", 0xffff));
  if (!Open(env).runner().ReleasePorts(first)) ThrowInvalidArg(env, "no claim starts at port " + std::to_string(first));
}

Napi::Value Vcpu::ReadPorts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto first = static_cast<std::uint16_t>(JsToUint(env, info[0], "first", 0xffff));
  bool drain = JsToOptionalBool(env, info[1], "drain").value_or(false);
  std::uint64_t total = 0;
  std::vector<std::uint8_t> bytes;
  if (!Open(env).runner().ReadClaim(first, &total, &bytes, drain)) ThrowInvalidArg(env, "no claim starts at port " + std::to_string(first));
  Napi::Object o = Napi::Object::New(env);
  o.Set("total", static_cast<double>(total));
  o.Set("data", Napi::Buffer<std::uint8_t>::Copy(env, bytes.data(), bytes.size()));
  return o;
}

}  // namespace vh
