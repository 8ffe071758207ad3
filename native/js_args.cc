#include "js_args.h"

#include <cmath>

#include "errors.h"
#include "ioctl_table.h"

namespace vh {
namespace {

// JS numbers are exact up to 2^53 - 1; larger values must come as BigInt.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// True for a non-negative integer a JS Number holds exactly (<= 2^53 - 1).
bool IsSafeIndex(double d) { return d >= 0 && d <= kMaxSafeInteger && std::floor(d) == d; }

}  // namespace

void ThrowInvalidArg(Napi::Env env, const std::string& message) { ThrowError(env, ErrorFacts::InvalidArg(message)); }

std::uint64_t JsToU64(Napi::Env env, Napi::Value value, const std::string& field) {
  if (value.IsBigInt()) {
    bool lossless = false;
    std::uint64_t v = value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowInvalidArg(env, field + " must fit in an unsigned 64-bit integer");
    return v;
  }
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (!IsSafeIndex(d)) ThrowInvalidArg(env, field + " must be a non-negative safe integer (use a BigInt above 2^53)");
    return static_cast<std::uint64_t>(d);
  }
  ThrowInvalidArg(env, field + " must be a number or a bigint");
}

std::uint64_t JsToUint(Napi::Env env, Napi::Value value, const std::string& field, std::uint64_t max) {
  std::uint64_t v = JsToU64(env, value, field);
  if (v > max) ThrowInvalidArg(env, field + " must be at most " + std::to_string(max));
  return v;
}

std::uint32_t JsToU32(Napi::Env env, Napi::Value value, const std::string& field) {
  std::uint64_t v = JsToU64(env, value, field);
  if (v > UINT32_MAX) ThrowInvalidArg(env, field + " must fit in 32 bits");
  return static_cast<std::uint32_t>(v);
}

bool JsToBool(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsBoolean()) ThrowInvalidArg(env, field + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::optional<bool> JsToOptionalBool(Napi::Env env, Napi::Value value, const std::string& field) {
  if (value.IsUndefined()) return std::nullopt;
  return JsToBool(env, value, field);
}

std::string JsToString(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsString()) ThrowInvalidArg(env, field + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

std::optional<std::string> JsToOptionalString(Napi::Env env, Napi::Value value, const std::string& field) {
  if (value.IsUndefined()) return std::nullopt;
  return JsToString(env, value, field);
}

Napi::Object JsToObject(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsObject()) ThrowInvalidArg(env, field + " must be an object");
  return value.As<Napi::Object>();
}

std::optional<Napi::Object> JsToOptionalObject(Napi::Env env, Napi::Value value, const std::string& field) {
  if (value.IsUndefined()) return std::nullopt;
  return JsToObject(env, value, field);
}

Napi::Array JsToArray(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsArray()) ThrowInvalidArg(env, field + " must be an array");
  return value.As<Napi::Array>();
}

Napi::Function JsToFunction(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsFunction()) ThrowInvalidArg(env, field + " must be a function");
  return value.As<Napi::Function>();
}

JsBytes JsToBytes(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsTypedArray()) ThrowInvalidArg(env, field + " must be a Buffer or TypedArray");
  Napi::TypedArray ta = value.As<Napi::TypedArray>();
  auto* base = static_cast<std::uint8_t*>(ta.ArrayBuffer().Data());
  return JsBytes{base == nullptr ? nullptr : base + ta.ByteOffset(), ta.ByteLength()};
}

Napi::Uint8Array JsToUint8Array(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowInvalidArg(env, field + " must be a Buffer or Uint8Array");
  }
  return value.As<Napi::Uint8Array>();
}

Napi::Uint32Array JsToUint32Array(Napi::Env env, Napi::Value value, const std::string& field) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowInvalidArg(env, field + " must be a Uint32Array");
  }
  return value.As<Napi::Uint32Array>();
}

const Capability& JsToCapability(Napi::Env env, Napi::Value value) {
  std::string name = JsToString(env, value, "capability name");
  for (const Capability& cap : kCapabilities) {
    if (name == cap.name) return cap;
  }
  ThrowError(env, ErrorFacts::Misuse("ERR_UNKNOWN_CAPABILITY",
                                     "unknown capability '" + name + "'; see capabilityNames()"));
}

std::optional<bool> ReadOptionalBool(Napi::Env env, Napi::Object obj, const char* field) {
  return JsToOptionalBool(env, obj.Get(field), field);
}

std::optional<std::string> ReadOptionalString(Napi::Env env, Napi::Object obj, const char* field) {
  return JsToOptionalString(env, obj.Get(field), field);
}

Napi::Value RequireField(Napi::Env env, Napi::Object obj, const char* field) {
  Napi::Value v = obj.Get(field);
  if (v.IsUndefined()) ThrowInvalidArg(env, std::string(field) + " is required");
  return v;
}

void ConstructorRegistry::Register(Napi::Env env, Napi::Function ctor) {
  napi_env key = env;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ctors_[key] = std::make_unique<Napi::FunctionReference>(Napi::Persistent(ctor));
  }
  env.AddCleanupHook([this, key] {
    std::lock_guard<std::mutex> lock(mutex_);
    ctors_.erase(key);
  });
}

Napi::Function ConstructorRegistry::Get(napi_env env) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = ctors_.find(env);
  return it == ctors_.end() ? Napi::Function() : it->second->Value();
}

}  // namespace vh
