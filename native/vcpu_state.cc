#include "vcpu_state.h"

#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "js_args.h"

namespace vh {
namespace {

// 64-bit fields leave as BigInt, narrower ones as Number.
template <typename T>
Napi::Value Out(Napi::Env env, T v) {
  if constexpr (sizeof(T) == 8) {
    return Napi::BigInt::New(env, static_cast<std::uint64_t>(v));
  } else {
    return Napi::Number::New(env, static_cast<double>(v));
  }
}

// Reads o[name] into *dst when present; absent fields keep their value.
template <typename T>
void In(Napi::Env env, Napi::Object o, const char* name, T* dst) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return;
  *dst = static_cast<T>(JsToUint(env, v, name, std::numeric_limits<T>::max()));
}

Napi::Buffer<std::uint8_t> Bytes(Napi::Env env, const void* src, std::size_t len) {
  return Napi::Buffer<std::uint8_t>::Copy(env, static_cast<const std::uint8_t*>(src), len);
}

void BytesIn(Napi::Env env, Napi::Object o, const char* name, void* dst, std::size_t len) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return;
  Napi::Uint8Array bytes = JsToUint8Array(env, v, name);
  if (bytes.ByteLength() != len) {
    ThrowInvalidArg(env, std::string(name) + " must be a Buffer of " + std::to_string(len) + " bytes");
  }
  std::memcpy(dst, bytes.Data(), len);
}

#define VH_REGS(X) \
  X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) X(r10) X(r11) X(r12) \
  X(r13) X(r14) X(r15) X(rip) X(rflags)

#define VH_SEGMENT(X) \
  X(base, base) X(limit, limit) X(selector, selector) X(type, type) X(present, present) \
  X(dpl, dpl) X(db, db) X(s, s) X(l, l) X(g, g) X(avl, avl) X(unusable, unusable)

#define VH_SREGS_SCALARS(X) \
  X(cr0, cr0) X(cr2, cr2) X(cr3, cr3) X(cr4, cr4) X(cr8, cr8) X(efer, efer) X(apicBase, apic_base)

Napi::Object SegmentToJs(Napi::Env env, const kvm_segment& seg) {
  Napi::Object o = Napi::Object::New(env);
#define X(js, c) o.Set(#js, Out(env, seg.c));
  VH_SEGMENT(X)
#undef X
  return o;
}

void SegmentFromJs(Napi::Env env, Napi::Value value, const char* what, kvm_segment* seg) {
  std::optional<Napi::Object> given = JsToOptionalObject(env, value, what);
  if (!given) return;
  Napi::Object o = *given;
#define X(js, c) In(env, o, #js, &seg->c);
  VH_SEGMENT(X)
#undef X
}

Napi::Object DtableToJs(Napi::Env env, const kvm_dtable& dt) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("base", Out(env, dt.base));
  o.Set("limit", Out(env, dt.limit));
  return o;
}

void DtableFromJs(Napi::Env env, Napi::Value value, const char* what, kvm_dtable* dt) {
  std::optional<Napi::Object> o = JsToOptionalObject(env, value, what);
  if (!o) return;
  In(env, *o, "base", &dt->base);
  In(env, *o, "limit", &dt->limit);
}

}  // namespace

Napi::Object RegsToJs(Napi::Env env, const kvm_regs& regs) {
  Napi::Object o = Napi::Object::New(env);
#define X(r) o.Set(#r, Out(env, regs.r));
  VH_REGS(X)
#undef X
  return o;
}

void RegsFromJs(Napi::Env env, Napi::Value value, kvm_regs* regs) {
  Napi::Object o = JsToObject(env, value, "regs");
#define X(r) In(env, o, #r, &regs->r);
  VH_REGS(X)
#undef X
}

Napi::Object SregsToJs(Napi::Env env, const kvm_sregs& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cs", SegmentToJs(env, s.cs));
  o.Set("ds", SegmentToJs(env, s.ds));
  o.Set("es", SegmentToJs(env, s.es));
  o.Set("fs", SegmentToJs(env, s.fs));
  o.Set("gs", SegmentToJs(env, s.gs));
  o.Set("ss", SegmentToJs(env, s.ss));
  o.Set("tr", SegmentToJs(env, s.tr));
  o.Set("ldt", SegmentToJs(env, s.ldt));
  o.Set("gdt", DtableToJs(env, s.gdt));
  o.Set("idt", DtableToJs(env, s.idt));
#define X(js, c) o.Set(#js, Out(env, s.c));
  VH_SREGS_SCALARS(X)
#undef X
  constexpr std::size_t n = sizeof(s.interrupt_bitmap) / sizeof(s.interrupt_bitmap[0]);
  Napi::Array bitmap = Napi::Array::New(env, n);
  for (std::size_t i = 0; i < n; ++i) bitmap.Set(static_cast<std::uint32_t>(i), Out(env, s.interrupt_bitmap[i]));
  o.Set("interruptBitmap", bitmap);
  return o;
}

void SregsFromJs(Napi::Env env, Napi::Value value, kvm_sregs* s) {
  Napi::Object o = JsToObject(env, value, "sregs");
  SegmentFromJs(env, o.Get("cs"), "cs", &s->cs);
  SegmentFromJs(env, o.Get("ds"), "ds", &s->ds);
  SegmentFromJs(env, o.Get("es"), "es", &s->es);
  SegmentFromJs(env, o.Get("fs"), "fs", &s->fs);
  SegmentFromJs(env, o.Get("gs"), "gs", &s->gs);
  SegmentFromJs(env, o.Get("ss"), "ss", &s->ss);
  SegmentFromJs(env, o.Get("tr"), "tr", &s->tr);
  SegmentFromJs(env, o.Get("ldt"), "ldt", &s->ldt);
  DtableFromJs(env, o.Get("gdt"), "gdt", &s->gdt);
  DtableFromJs(env, o.Get("idt"), "idt", &s->idt);
#define X(js, c) In(env, o, #js, &s->c);
  VH_SREGS_SCALARS(X)
#undef X
  Napi::Value bitmap = o.Get("interruptBitmap");
  if (!bitmap.IsUndefined()) {
    constexpr std::size_t n = sizeof(s->interrupt_bitmap) / sizeof(s->interrupt_bitmap[0]);
    Napi::Array words = JsToArray(env, bitmap, "interruptBitmap");
    if (words.Length() != n) {
      ThrowInvalidArg(env, "interruptBitmap must be an array of " + std::to_string(n) + " bigints");
    }
    for (std::uint32_t i = 0; i < n; ++i) s->interrupt_bitmap[i] = JsToU64(env, words.Get(i), "interruptBitmap");
  }
}

Napi::Object FpuToJs(Napi::Env env, const kvm_fpu& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fpr", Bytes(env, f.fpr, sizeof(f.fpr)));
  o.Set("fcw", Out(env, f.fcw));
  o.Set("fsw", Out(env, f.fsw));
  o.Set("ftwx", Out(env, f.ftwx));
  o.Set("lastOpcode", Out(env, f.last_opcode));
  o.Set("lastIp", Out(env, f.last_ip));
  o.Set("lastDp", Out(env, f.last_dp));
  o.Set("xmm", Bytes(env, f.xmm, sizeof(f.xmm)));
  o.Set("mxcsr", Out(env, f.mxcsr));
  return o;
}

void FpuFromJs(Napi::Env env, Napi::Value value, kvm_fpu* f) {
  Napi::Object o = JsToObject(env, value, "fpu");
  BytesIn(env, o, "fpr", f->fpr, sizeof(f->fpr));
  In(env, o, "fcw", &f->fcw);
  In(env, o, "fsw", &f->fsw);
  In(env, o, "ftwx", &f->ftwx);
  In(env, o, "lastOpcode", &f->last_opcode);
  In(env, o, "lastIp", &f->last_ip);
  In(env, o, "lastDp", &f->last_dp);
  BytesIn(env, o, "xmm", f->xmm, sizeof(f->xmm));
  In(env, o, "mxcsr", &f->mxcsr);
}

Napi::Object VcpuEventsToJs(Napi::Env env, const kvm_vcpu_events& e) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Object exc = Napi::Object::New(env);
  exc.Set("injected", Out(env, e.exception.injected));
  exc.Set("nr", Out(env, e.exception.nr));
  exc.Set("hasErrorCode", Out(env, e.exception.has_error_code));
  exc.Set("pending", Out(env, e.exception.pending));
  exc.Set("errorCode", Out(env, e.exception.error_code));
  o.Set("exception", exc);
  Napi::Object irq = Napi::Object::New(env);
  irq.Set("injected", Out(env, e.interrupt.injected));
  irq.Set("nr", Out(env, e.interrupt.nr));
  irq.Set("soft", Out(env, e.interrupt.soft));
  irq.Set("shadow", Out(env, e.interrupt.shadow));
  o.Set("interrupt", irq);
  Napi::Object nmi = Napi::Object::New(env);
  nmi.Set("injected", Out(env, e.nmi.injected));
  nmi.Set("pending", Out(env, e.nmi.pending));
  nmi.Set("masked", Out(env, e.nmi.masked));
  o.Set("nmi", nmi);
  o.Set("sipiVector", Out(env, e.sipi_vector));
  o.Set("flags", Out(env, e.flags));
  Napi::Object smi = Napi::Object::New(env);
  smi.Set("smm", Out(env, e.smi.smm));
  smi.Set("pending", Out(env, e.smi.pending));
  smi.Set("smmInsideNmi", Out(env, e.smi.smm_inside_nmi));
  smi.Set("latchedInit", Out(env, e.smi.latched_init));
  o.Set("smi", smi);
  Napi::Object tf = Napi::Object::New(env);
  tf.Set("pending", Out(env, e.triple_fault.pending));
  o.Set("tripleFault", tf);
  o.Set("exceptionHasPayload", Out(env, e.exception_has_payload));
  o.Set("exceptionPayload", Out(env, e.exception_payload));
  return o;
}

void VcpuEventsFromJs(Napi::Env env, Napi::Value value, kvm_vcpu_events* e) {
  Napi::Object o = JsToObject(env, value, "events");
  if (std::optional<Napi::Object> exc = JsToOptionalObject(env, o.Get("exception"), "exception")) {
    In(env, *exc, "injected", &e->exception.injected);
    In(env, *exc, "nr", &e->exception.nr);
    In(env, *exc, "hasErrorCode", &e->exception.has_error_code);
    In(env, *exc, "pending", &e->exception.pending);
    In(env, *exc, "errorCode", &e->exception.error_code);
  }
  if (std::optional<Napi::Object> irq = JsToOptionalObject(env, o.Get("interrupt"), "interrupt")) {
    In(env, *irq, "injected", &e->interrupt.injected);
    In(env, *irq, "nr", &e->interrupt.nr);
    In(env, *irq, "soft", &e->interrupt.soft);
    In(env, *irq, "shadow", &e->interrupt.shadow);
  }
  if (std::optional<Napi::Object> nmi = JsToOptionalObject(env, o.Get("nmi"), "nmi")) {
    In(env, *nmi, "injected", &e->nmi.injected);
    In(env, *nmi, "pending", &e->nmi.pending);
    In(env, *nmi, "masked", &e->nmi.masked);
  }
  In(env, o, "sipiVector", &e->sipi_vector);
  In(env, o, "flags", &e->flags);
  if (std::optional<Napi::Object> smi = JsToOptionalObject(env, o.Get("smi"), "smi")) {
    In(env, *smi, "smm", &e->smi.smm);
    In(env, *smi, "pending", &e->smi.pending);
    In(env, *smi, "smmInsideNmi", &e->smi.smm_inside_nmi);
    In(env, *smi, "latchedInit", &e->smi.latched_init);
  }
  if (std::optional<Napi::Object> tf = JsToOptionalObject(env, o.Get("tripleFault"), "tripleFault")) {
    In(env, *tf, "pending", &e->triple_fault.pending);
  }
  In(env, o, "exceptionHasPayload", &e->exception_has_payload);
  In(env, o, "exceptionPayload", &e->exception_payload);
}

}  // namespace vh
