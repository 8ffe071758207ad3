// The dirty-log methods of Vm: argument checking and JS conversion around DirtyLog
// (dirty_log.cc). Harvests can run on the libuv pool; they hold a dup of the VM fd and the
// shared DirtyLog, so a close() meanwhile cannot pull either from under them.
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "dirty_bitmap.h"
#include "errors.h"
#include "ioctl_table.h"
#include "js_args.h"
#include "vm.h"

namespace vh {
namespace {

// options[field] of the options bag at info[index]; `fallback` when either is absent.
bool BoolOption(Napi::Env env, const Napi::CallbackInfo& info, std::size_t index, const char* field, bool fallback) {
  std::optional<Napi::Object> opts = JsToOptionalObject(env, info[index], "options");
  return opts ? ReadOptionalBool(env, *opts, field).value_or(fallback) : fallback;
}

void CheckOk(Napi::Env env, const std::optional<ErrorFacts>& error) {
  if (error) ThrowError(env, *error);
}

// The JS harvest object ({bitmap, runs, dirtyPages, scanNs, clearNs, buildNs}).
Napi::Object HarvestToJs(Napi::Env env, const DirtyHarvestData& h) {
  if (h.error) ThrowError(env, *h.error);
  Napi::Object out = Napi::Object::New(env);
  out.Set("bitmap", Napi::Buffer<std::uint8_t>::Copy(env, reinterpret_cast<const std::uint8_t*>(h.bitmap.data()),
                                                     h.bitmap.size() * sizeof(std::uint64_t)));
  Napi::Uint32Array runs = Napi::Uint32Array::New(env, h.runs.size());
  if (!h.runs.empty()) std::memcpy(runs.Data(), h.runs.data(), h.runs.size() * sizeof(std::uint32_t));
  out.Set("runs", runs);
  out.Set("dirtyPages", static_cast<double>(h.dirty));
  out.Set("scanNs", static_cast<double>(h.scan_ns));
  out.Set("clearNs", static_cast<double>(h.clear_ns));
  out.Set("buildNs", static_cast<double>(h.build_ns));
  return out;
}

// Runs DirtyLog::Harvest on the libuv pool; only plain C++ data crosses threads.
class HarvestWorker : public Napi::AsyncWorker {
 public:
  HarvestWorker(Napi::Env env, std::shared_ptr<DirtyLog> log, UniqueFd fd, DirtySlot slot, std::vector<DirtySlot> all)
      : Napi::AsyncWorker(env, "Vm.harvestDirtyAsync"),
        log_(std::move(log)),
        fd_(std::move(fd)),
        slot_(slot),
        all_(std::move(all)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { result_ = log_->Harvest(fd_.Get(), slot_, all_); }

  void OnOK() override {
    try {
      deferred_.Resolve(HarvestToJs(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::shared_ptr<DirtyLog> log_;
  UniqueFd fd_;
  DirtySlot slot_;
  std::vector<DirtySlot> all_;
  Napi::Promise::Deferred deferred_;
  DirtyHarvestData result_;
};

}  // namespace

DirtySlot Vm::RequireDirtySlot(Napi::Env env, Napi::Value slot_value, bool need_logging, std::vector<DirtySlot>* all) {
  std::uint64_t id = JsToU64(env, slot_value, "slot");
  const std::uint64_t page = HostPageSize();
  std::optional<DirtySlot> found;
  bool logging = false;
  for (const Region* r : memory_->List()) {
    DirtySlot s{r->spec.slot, r->spec.size / page};
    if (r->spec.log_dirty_pages && all != nullptr) all->push_back(s);
    if (r->spec.slot == id) {
      found = s;
      logging = r->spec.log_dirty_pages;
    }
  }
  if (!found) ThrowInvalidArg(env, "slot " + std::to_string(id) + " has no memory region");
  if (need_logging && !logging) {
    ThrowError(env, ErrorFacts::Misuse("ERR_DIRTY_LOG_OFF",
                                       "slot " + std::to_string(id) +
                                           " does not log dirty pages: register it with logDirtyPages or call "
                                           "setDirtyLogging()"));
  }
  return *found;
}

void Vm::NoteVmmWrite(std::uint64_t gpa, std::uint64_t len) {
  if (len == 0) return;
  const std::uint64_t page = HostPageSize();
  for (const Region* r : memory_->List()) {
    if (!r->spec.log_dirty_pages || gpa < r->spec.guest_phys_addr || gpa >= r->End()) continue;
    std::uint64_t first = (gpa - r->spec.guest_phys_addr) / page;
    std::uint64_t last = (gpa - r->spec.guest_phys_addr + len - 1) / page;
    dirty_log_->NoteWrite(DirtySlot{r->spec.slot, r->spec.size / page}, first, last - first + 1);
    return;
  }
}

Napi::Value Vm::EnableManualDirtyProtect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  bool want = BoolOption(env, info, 0, "initiallySet", true);
  bool initially_set = false;
  CheckOk(env, dirty_log_->EnableManualProtect(fd, want, &initially_set));
  Napi::Object out = Napi::Object::New(env);
  out.Set("initiallySet", initially_set);
  return out;
}

Napi::Value Vm::EnableDirtyRing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  if (info.Length() < 1) ThrowInvalidArg(env, "enableDirtyRing(bytes) needs the ring size");
  std::uint64_t bytes = JsToU64(env, info[0], "bytes");
  bool prefer = BoolOption(env, info, 1, "acqRel", true);
  bool handle_full = BoolOption(env, info, 1, "handleFull", false);
  bool acq_rel = false;
  CheckOk(env, dirty_log_->EnableRing(fd, bytes, prefer, handle_full, &acq_rel));
  Napi::Object out = Napi::Object::New(env);
  out.Set("bytes", static_cast<double>(bytes));
  out.Set("acqRel", acq_rel);
  return out;
}

Napi::Value Vm::GetDirtyLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  DirtySlot slot = RequireDirtySlot(env, info[0], false, nullptr);
  std::vector<std::uint64_t> bits;
  CheckOk(env, dirty_log_->GetLog(fd, slot, &bits));
  return Napi::Buffer<std::uint8_t>::Copy(env, reinterpret_cast<const std::uint8_t*>(bits.data()),
                                          bits.size() * sizeof(std::uint64_t));
}

void Vm::ClearDirtyLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  if (info.Length() < 3) ThrowInvalidArg(env, "clearDirtyLog(slot, firstPage, numPages) needs three arguments");
  DirtySlot slot = RequireDirtySlot(env, info[0], false, nullptr);
  std::uint64_t first = JsToU64(env, info[1], "firstPage");
  std::uint64_t count = JsToU64(env, info[2], "numPages");
  CheckOk(env, dirty_log_->Clear(fd, slot, first, count));
}

Napi::Value Vm::HarvestDirty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  std::vector<DirtySlot> all;
  DirtySlot slot = RequireDirtySlot(env, info[0], true, &all);
  return HarvestToJs(env, dirty_log_->Harvest(fd, slot, all));
}

Napi::Value Vm::HarvestDirtyAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Fd(env);
  std::vector<DirtySlot> all;
  DirtySlot slot = RequireDirtySlot(env, info[0], true, &all);
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.Valid()) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, "fcntl"));
  }
  auto* worker = new HarvestWorker(env, dirty_log_, std::move(dup), slot, std::move(all));
  worker->Queue();  // deletes itself after OnOK/OnError
  return worker->Promise();
}

Napi::Value Vm::DirtyLogModeJs(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DirtyLogModeName(dirty_log_->Mode()));
}

}  // namespace vh
