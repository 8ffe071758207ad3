#!/usr/bin/env python3
"""Prove that /dev/kvm is usable: open it, ask the API version, create (and drop) one VM.

Exit 0 and print one line of facts when it works; exit 1 with the reason otherwise. Needs no
addon, so it can decide where the native suite runs before anything is built.
Usage: kvm-check.py [DEVICE]
"""
import errno
import fcntl
import os
import sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else "/dev/kvm"
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        hint = " (is the kvm module loaded?)" if e.errno == errno.ENOENT else ""
        if e.errno == errno.EACCES:
            hint = " (make sure this user has read/write access to it)"
        print(f"kvm-check: cannot open {device}: {e.strerror}{hint}")
        return 1
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            print(f"kvm-check: {device}: KVM_GET_API_VERSION returned {version}, expected {KVM_API_VERSION}")
            return 1
        try:
            vm_fd = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        except OSError as e:
            print(f"kvm-check: {device}: KVM_CREATE_VM failed: {e.strerror}")
            return 1
        os.close(vm_fd)
        print(f"kvm-check: {device} ok, api version {version}, KVM_CREATE_VM ok")
        return 0
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
