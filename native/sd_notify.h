// systemd's readiness protocol (sd_notify(3)) without linking libsystemd: one datagram to the
// AF_UNIX socket named by $NOTIFY_SOCKET.
#ifndef VH_NATIVE_SD_NOTIFY_H_
#define VH_NATIVE_SD_NOTIFY_H_

#include <napi.h>

namespace vh {

// JS: sdNotify(message: string, socketPath?: string): boolean.
Napi::Value SdNotifyJs(const Napi::CallbackInfo& info);

}  // namespace vh

#endif  // VH_NATIVE_SD_NOTIFY_H_
