// Readers for JS arguments shared by every class: integers from Number or BigInt, strings,
// booleans, objects, arrays, functions, byte views, required and optional fields. Every
// argument mistake - wrong type, missing, malformed, past a fixed limit - throws the one code
// ERR_INVALID_ARG naming the field, so the TS layer maps one code, not one per file. (A
// well-formed range outside the memory it names is ERR_OUT_OF_RANGE, see errors.h.)
// A missing positional argument reads as undefined (info[i] past Length()), so the readers
// below also report "not passed at all".
#ifndef VH_NATIVE_JS_ARGS_H_
#define VH_NATIVE_JS_ARGS_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "errors.h"

namespace vh {

struct Capability;  // ioctl_table.h

// Throws {code: 'ERR_INVALID_ARG', message}.
[[noreturn]] void ThrowInvalidArg(Napi::Env env, const std::string& message);

// A non-negative integer from a Number (safe integer) or a BigInt (lossless u64).
std::uint64_t JsToU64(Napi::Env env, Napi::Value value, const std::string& field);
// JsToU64 limited to `max` ("must be at most <max>").
std::uint64_t JsToUint(Napi::Env env, Napi::Value value, const std::string& field, std::uint64_t max);
// JsToU64 limited to 32 bits ("must fit in 32 bits").
std::uint32_t JsToU32(Napi::Env env, Napi::Value value, const std::string& field);

// A boolean (no truthiness: 'yes' and 1 are mistakes).
bool JsToBool(Napi::Env env, Napi::Value value, const std::string& field);
// JsToBool, or nullopt for undefined.
std::optional<bool> JsToOptionalBool(Napi::Env env, Napi::Value value, const std::string& field);
// A string.
std::string JsToString(Napi::Env env, Napi::Value value, const std::string& field);
// JsToString, or nullopt for undefined.
std::optional<std::string> JsToOptionalString(Napi::Env env, Napi::Value value, const std::string& field);
// A non-null object (arrays and functions are objects too).
Napi::Object JsToObject(Napi::Env env, Napi::Value value, const std::string& field);
// JsToObject, or nullopt for undefined: how options bags are read.
std::optional<Napi::Object> JsToOptionalObject(Napi::Env env, Napi::Value value, const std::string& field);
// An Array.
Napi::Array JsToArray(Napi::Env env, Napi::Value value, const std::string& field);
// A function.
Napi::Function JsToFunction(Napi::Env env, Napi::Value value, const std::string& field);

// The bytes of any TypedArray (Buffer, Uint8Array, Uint32Array...); data is null when empty.
struct JsBytes {
  std::uint8_t* data;
  std::size_t len;
};
JsBytes JsToBytes(Napi::Env env, Napi::Value value, const std::string& field);
// A Uint8Array (a Buffer is one).
Napi::Uint8Array JsToUint8Array(Napi::Env env, Napi::Value value, const std::string& field);
// A Uint32Array.
Napi::Uint32Array JsToUint32Array(Napi::Env env, Napi::Value value, const std::string& field);

// The kCapabilities entry a capability name (a string) names; an unknown name is
// ERR_UNKNOWN_CAPABILITY, which says where the valid names come from.
const Capability& JsToCapability(Napi::Env env, Napi::Value value);

// obj[field] as a boolean; nullopt when absent or undefined.
std::optional<bool> ReadOptionalBool(Napi::Env env, Napi::Object obj, const char* field);
// obj[field] as a string; nullopt when absent or undefined.
std::optional<std::string> ReadOptionalString(Napi::Env env, Napi::Object obj, const char* field);
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
