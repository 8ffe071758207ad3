// Readers for JS arguments shared by every class: integers from Number or BigInt, optional
// booleans, required fields. Each throws ERR_INVALID_ARG naming the field on a bad value.
#ifndef VH_NATIVE_JS_ARGS_H_
#define VH_NATIVE_JS_ARGS_H_

#include <napi.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "errors.h"

namespace vh {

// Throws {code: 'ERR_INVALID_ARG', message}.
[[noreturn]] void ThrowInvalidArg(Napi::Env env, const std::string& message);

// True for a non-negative integer a JS Number holds exactly (<= 2^53 - 1).
bool IsSafeIndex(double d);

// A non-negative integer from a Number (safe integer) or a BigInt (lossless u64).
std::uint64_t JsToU64(Napi::Env env, Napi::Value value, const std::string& field);
// JsToU64 limited to `max` ("must be at most <max>").
std::uint64_t JsToUint(Napi::Env env, Napi::Value value, const std::string& field, std::uint64_t max);
// JsToU64 limited to 32 bits ("must fit in 32 bits").
std::uint32_t JsToU32(Napi::Env env, Napi::Value value, const std::string& field);

// obj[field] as a boolean; nullopt when absent or undefined.
std::optional<bool> ReadOptionalBool(Napi::Env env, Napi::Object obj, const char* field);
// obj[field]; throws "<field> is required" when undefined.
Napi::Value RequireField(Napi::Env env, Napi::Object obj, const char* field);

// The JS constructor of one ObjectWrap class per env (the main thread and every worker load
// the addon separately), so native code can create instances and check instanceof.
class ConstructorRegistry {
 public:
  // Remembers `ctor` for `env` until the env is torn down.
  void Register(Napi::Env env, Napi::Function ctor);
  // The constructor registered for `env`; empty when there is none.
  Napi::Function Get(napi_env env);

  // A new instance whose constructor finds `value` in `pending` (how native code hands it
  // state JS cannot forge); `pending` is cleared again, also on throw. ERR_INTERNAL with
  // `missing` when no constructor was registered for `env`.
  template <typename T>
  Napi::Object New(Napi::Env env, T*& pending, T* value, const char* missing) {
    Napi::Function ctor = Get(env);
    if (ctor.IsEmpty()) ThrowError(env, ErrorFacts::Misuse("ERR_INTERNAL", missing));
    pending = value;
    try {
      Napi::Object obj = ctor.New({});
      pending = nullptr;
      return obj;
    } catch (...) {
      pending = nullptr;
      throw;
    }
  }

 private:
  std::mutex mutex_;
  std::unordered_map<napi_env, std::unique_ptr<Napi::FunctionReference>> ctors_;
};

}  // namespace vh

#endif  // VH_NATIVE_JS_ARGS_H_
