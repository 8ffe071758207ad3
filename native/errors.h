// The addon's single way to fail: a JS Error carrying Node-style facts (code, errno,
// syscall, path) so the TS layer can map them to stable VhError codes without parsing text.
#ifndef VH_NATIVE_ERRORS_H_
#define VH_NATIVE_ERRORS_H_

#include <napi.h>

#include <string>

namespace vh {

// What went wrong, as facts. Build one with FromErrno() or Misuse(), then ThrowError().
struct ErrorFacts {
  std::string code;     // errno name ('ENOENT') or 'ERR_*' for addon misuse
  int errnum = 0;       // positive errno; 0 for ERR_*
  std::string syscall;  // 'open', 'KVM_CHECK_EXTENSION', ... ('' when none)
  std::string path;     // set when a path was involved
  std::string hint;     // what the operator should do, appended to the message

  // Facts for a failed syscall/ioctl; errnum is the errno it left behind.
  static ErrorFacts FromErrno(int errnum, std::string syscall, std::string path = {},
                              std::string hint = {});
  // Facts for a caller mistake (bad argument, use after close): no errno.
  static ErrorFacts Misuse(std::string code, std::string message);
  // ERR_INVALID_ARG: an argument is missing, of the wrong type, malformed or beyond a fixed
  // limit. Every argument mistake uses this one code (js_args.h raises it for JS values).
  static ErrorFacts InvalidArg(std::string message);
  // ERR_OUT_OF_RANGE: a well-formed address, offset or count that falls outside the memory it
  // names (guest memory, a slot, a tracked region, a bitmap): a fact about the current layout,
  // which the caller can only learn by asking, not a malformed argument.
  static ErrorFacts OutOfRange(std::string message);
};

// Throws (as a C++ exception, NAPI_CPP_EXCEPTIONS) a JS Error built from `facts`.
[[noreturn]] void ThrowError(Napi::Env env, const ErrorFacts& facts);

}  // namespace vh

#endif  // VH_NATIVE_ERRORS_H_
