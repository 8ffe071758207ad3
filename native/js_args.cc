#include "js_args.h"

#include <cmath>

#include "errors.h"

namespace vh {
namespace {

// JS numbers are exact up to 2^53 - 1; larger values must come as BigInt.
constexpr double kMaxSafeInteger = 9007199254740991.0;

}  // namespace

void ThrowInvalidArg(Napi::Env env, const std::string& message) {
  ThrowError(env, ErrorFacts::Misuse("ERR_INVALID_ARG", message));
}

bool IsSafeIndex(double d) { return d >= 0 && d <= kMaxSafeInteger && std::floor(d) == d; }

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

std::optional<bool> ReadOptionalBool(Napi::Env env, Napi::Object obj, const char* field) {
  Napi::Value v = obj.Get(field);
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsBoolean()) ThrowInvalidArg(env, std::string(field) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
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
