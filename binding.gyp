{
  "targets": [
    {
      "target_name": "virt_handler_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/js_args.cc",
        "native/kvm_system.cc",
        "native/vm.cc",
        "native/vcpu.cc",
        "native/x86_boot.cc",
        "native/vcpu_state.cc",
        "native/vcpu_thread.cc",
        "native/vcpu_exit.cc",
        "native/guest_memory.cc",
        "native/cpuid_features.cc",
        "native/sd_notify.cc",
        "native/userspace_tracker.cc",
        "native/dirty_bitmap.cc",
        "native/dirty_log.cc",
        "native/vm_dirty_log.cc",
        "native/vm_dirty_ring.cc"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      # node-addon-api is a system include so -Wshadow/-Wconversion (errors here) apply to our
      # code only; exceptions are on by policy: ThrowError() throws Napi::Error as C++.
      "cflags_cc": [
        "-isystem", "<!(node -p \"require('path').resolve(require('node-addon-api').include_dir)\")",
        "-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion", "-Wno-sign-conversion", "-fvisibility=hidden"]
    }
  ]
}
