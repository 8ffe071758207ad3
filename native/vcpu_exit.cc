#include "vcpu_exit.h"

#include "errors.h"

namespace vh {
namespace {

const char* KindName(VcpuExit::Kind kind) {
  switch (kind) {
    case VcpuExit::Kind::kIo: return "io";
    case VcpuExit::Kind::kMmio: return "mmio";
    case VcpuExit::Kind::kHlt: return "hlt";
    case VcpuExit::Kind::kShutdown: return "shutdown";
    case VcpuExit::Kind::kFailEntry: return "failEntry";
    case VcpuExit::Kind::kInternalError: return "internalError";
    case VcpuExit::Kind::kSystemEvent: return "systemEvent";
    case VcpuExit::Kind::kDirtyRingFull: return "dirtyRingFull";
    case VcpuExit::Kind::kIntr: return "intr";
    case VcpuExit::Kind::kUnknown: return "unknown";
    case VcpuExit::Kind::kParked: return "parked";
    case VcpuExit::Kind::kStopped: return "stopped";
    case VcpuExit::Kind::kError: return "error";
  }
  return "unknown";
}

Napi::Array Words(Napi::Env env, const std::vector<std::uint64_t>& words) {
  Napi::Array out = Napi::Array::New(env, words.size());
  for (std::size_t i = 0; i < words.size(); ++i) {
    out.Set(static_cast<std::uint32_t>(i), Napi::BigInt::New(env, words[i]));
  }
  return out;
}

}  // namespace

Napi::Object VcpuExitToJs(Napi::Env env, const VcpuExit& exit) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("reason", KindName(exit.kind));
  o.Set("seq", static_cast<double>(exit.seq));
  switch (exit.kind) {
    case VcpuExit::Kind::kIo:
      o.Set("port", exit.port);
      o.Set("size", exit.size);
      o.Set("count", exit.count);
      o.Set("direction", exit.in ? "in" : "out");
      if (!exit.in) o.Set("data", Napi::Buffer<std::uint8_t>::Copy(env, exit.data.data(), exit.data.size()));
      break;
    case VcpuExit::Kind::kMmio:
      o.Set("address", Napi::BigInt::New(env, exit.address));
      o.Set("length", exit.length);
      o.Set("direction", exit.in ? "read" : "write");
      if (!exit.in) o.Set("data", Napi::Buffer<std::uint8_t>::Copy(env, exit.data.data(), exit.data.size()));
      break;
    case VcpuExit::Kind::kFailEntry:
      o.Set("hardwareEntryFailureReason", Napi::BigInt::New(env, exit.hardware_reason));
      o.Set("cpu", exit.cpu);
      break;
    case VcpuExit::Kind::kInternalError:
      o.Set("suberror", exit.code);
      o.Set("data", Words(env, exit.words));
      break;
    case VcpuExit::Kind::kSystemEvent:
      o.Set("type", exit.code);
      o.Set("data", Words(env, exit.words));
      break;
    case VcpuExit::Kind::kUnknown:
      o.Set("exitReason", exit.code);
      break;
    case VcpuExit::Kind::kStopped:
      o.Set("cause", exit.detail);
      break;
    case VcpuExit::Kind::kError: {
      ErrorFacts facts = ErrorFacts::FromErrno(exit.errnum, exit.detail);
      o.Set("code", facts.code);
      o.Set("errno", exit.errnum);
      o.Set("syscall", exit.detail);
      break;
    }
    default:
      break;
  }
  return o;
}

}  // namespace vh
