// vCPU register state <-> plain JS objects. 64-bit values are BigInt, everything else Number;
// field names are the kernel's (struct kvm_regs, kvm_sregs, ...) in camelCase, so save/restore
// and migration code can be read next to <asm/kvm.h>. Every To*/From* pair round-trips exactly.
#ifndef VH_NATIVE_VCPU_STATE_H_
#define VH_NATIVE_VCPU_STATE_H_

#include <napi.h>

#include <cstdint>

#include "ioctl_table.h"

namespace vh {

// { rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15, rip, rflags } (all BigInt).
Napi::Object RegsToJs(Napi::Env env, const kvm_regs& regs);
// Missing fields keep the value already in `regs` (so callers can patch a GET result).
void RegsFromJs(Napi::Env env, Napi::Value value, kvm_regs* regs);

// { cs, ds, es, fs, gs, ss, tr, ldt: Segment, gdt, idt: {base: bigint, limit}, cr0, cr2, cr3,
//   cr4, cr8, efer, apicBase: bigint, interruptBitmap: bigint[4] }.
// Segment = { base: bigint, limit, selector, type, present, dpl, db, s, l, g, avl, unusable }.
Napi::Object SregsToJs(Napi::Env env, const kvm_sregs& sregs);
void SregsFromJs(Napi::Env env, Napi::Value value, kvm_sregs* sregs);

// { fpr: Buffer(128), fcw, fsw, ftwx, lastOpcode, lastIp: bigint, lastDp: bigint,
//   xmm: Buffer(256), mxcsr }.
Napi::Object FpuToJs(Napi::Env env, const kvm_fpu& fpu);
void FpuFromJs(Napi::Env env, Napi::Value value, kvm_fpu* fpu);

// { exception: {injected, nr, hasErrorCode, pending, errorCode}, interrupt: {injected, nr,
//   soft, shadow}, nmi: {injected, pending, masked}, sipiVector, flags, smi: {smm, pending,
//   smmInsideNmi, latchedInit}, tripleFault: {pending}, exceptionHasPayload,
//   exceptionPayload: bigint }.
Napi::Object VcpuEventsToJs(Napi::Env env, const kvm_vcpu_events& events);
void VcpuEventsFromJs(Napi::Env env, Napi::Value value, kvm_vcpu_events* events);

}  // namespace vh

#endif  // VH_NATIVE_VCPU_STATE_H_
