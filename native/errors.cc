#include "errors.h"

#include <cstring>
#include <string>
#include <utility>

namespace vh {
namespace {

// strerrorname_np/strerrordesc_np (glibc >= 2.32) give the same names Node uses and, unlike
// strerror(), are thread-safe; other libcs get a numeric code rather than a guess.
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
std::string ErrnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  return name != nullptr ? name : "ERRNO_" + std::to_string(errnum);
}
std::string ErrnoText(int errnum) {
  const char* text = strerrordesc_np(errnum);
  return text != nullptr ? text : "unknown error " + std::to_string(errnum);
}
#else
std::string ErrnoName(int errnum) { return "ERRNO_" + std::to_string(errnum); }
std::string ErrnoText(int errnum) { return "error " + std::to_string(errnum); }
#endif

}  // namespace

ErrorFacts ErrorFacts::FromErrno(int errnum, std::string syscall, std::string path,
                                 std::string hint) {
  ErrorFacts facts;
  facts.code = ErrnoName(errnum);
  facts.errnum = errnum;
  facts.syscall = std::move(syscall);
  facts.path = std::move(path);
  facts.hint = std::move(hint);
  return facts;
}

ErrorFacts ErrorFacts::Misuse(std::string code, std::string message) {
  ErrorFacts facts;
  facts.code = std::move(code);
  facts.hint = std::move(message);
  return facts;
}

ErrorFacts ErrorFacts::InvalidArg(std::string message) { return Misuse("ERR_INVALID_ARG", std::move(message)); }

ErrorFacts ErrorFacts::OutOfRange(std::string message) { return Misuse("ERR_OUT_OF_RANGE", std::move(message)); }

void ThrowError(Napi::Env env, const ErrorFacts& facts) {
  // Same shape as Node's fs errors: "ENOENT: no such file or directory, open '/dev/kvm'".
  std::string message = facts.code;
  if (facts.errnum != 0) {
    message += ": " + ErrnoText(facts.errnum);
    if (!facts.syscall.empty()) message += ", " + facts.syscall;
    if (!facts.path.empty()) message += " '" + facts.path + "'";
    if (!facts.hint.empty()) message += " (" + facts.hint + ")";
  } else if (!facts.hint.empty()) {
    message += ": " + facts.hint;
  }

  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("code", facts.code);
  obj.Set("errno", facts.errnum);
  if (!facts.syscall.empty()) obj.Set("syscall", facts.syscall);
  if (!facts.path.empty()) obj.Set("path", facts.path);
  throw error;
}

}  // namespace vh
