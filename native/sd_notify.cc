#include "sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "errors.h"
#include "js_args.h"
#include "unique_fd.h"

namespace vh {
namespace {

// Fills `addr` for `path` and returns the socklen to pass. A filesystem path carries its NUL
// inside sun_path; an abstract name ('@' -> leading NUL) must not, because the kernel treats
// every byte up to socklen as part of the name.
socklen_t FillAddress(Napi::Env env, const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  const bool abstract = path[0] == '@';
  if (!abstract && path[0] != '/') {
    ThrowInvalidArg(env, "notify socket '" + path + "' must be an absolute path or an '@' abstract name");
  }
  if (path.find('\0') != std::string::npos) ThrowInvalidArg(env, "notify socket path contains a NUL byte");
  // Abstract names use every byte of sun_path; filesystem paths need one for the NUL.
  const std::size_t max = abstract ? sizeof(addr->sun_path) : sizeof(addr->sun_path) - 1;
  if (path.size() > max) {
    ThrowInvalidArg(env, "notify socket '" + path + "' is longer than " + std::to_string(max) + " bytes");
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  if (abstract) addr->sun_path[0] = '\0';
  const std::size_t len = offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1);
  return static_cast<socklen_t>(len);
}

}  // namespace

Napi::Value SdNotifyJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string message = JsToString(env, info[0], "message");

  std::string path;
  if (std::optional<std::string> given = JsToOptionalString(env, info[1], "socketPath")) {
    path = *given;
  } else if (const char* env_path = std::getenv("NOTIFY_SOCKET")) {
    path = env_path;
  }
  // Not started by systemd (Type=notify) or explicitly disabled: nothing to tell anyone.
  if (path.empty()) return Napi::Boolean::New(env, false);

  sockaddr_un addr;
  socklen_t addr_len = FillAddress(env, path, &addr);

  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.Valid()) ThrowError(env, ErrorFacts::FromErrno(errno, "socket", path));

  ssize_t sent;
  do {
    // MSG_NOSIGNAL: a vanished receiver must be an error, not a SIGPIPE that kills the daemon.
    sent = ::sendto(fd.Get(), message.data(), message.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&addr), addr_len);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    int err = errno;
    ThrowError(env, ErrorFacts::FromErrno(err, "sendto", path,
                                          err == ENOENT || err == ECONNREFUSED
                                              ? "is systemd (or the receiver) still listening?"
                                              : ""));
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace vh
