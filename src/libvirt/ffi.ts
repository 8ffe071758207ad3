/**
 * The raw libvirt binding through koffi, loaded lazily: the daemon starts without libvirt and
 * loadLibvirt() then throws VhError(LIBVIRT_UNAVAILABLE) naming the package to install.
 * Only declarations live here; call ordering, error capture and handle ownership live in
 * queue.ts, connection.ts and domain.ts.
 */
import { ErrorCodes, VhError, errorFirstLine } from '../errors';

/** The shared object every libvirt client links against (Debian: package libvirt0). */
export const LIBVIRT_SONAME = 'libvirt.so.0';

/** An opaque libvirt handle as koffi hands it out (virConnectPtr, virDomainPtr). */
export type Handle = unknown;

/** A koffi foreign function: a synchronous call plus `.async(...args, cb)` on a worker thread. */
export interface ForeignFn {
  (...args: unknown[]): unknown;
  async: (...args: unknown[]) => void;
}

/** virDomainInfo as decoded by koffi. */
export interface RawDomainInfo {
  state: number;
  maxMem: number;
  memory: number;
  nrVirtCpu: number;
  cpuTime: number | bigint;
}

/** virError as decoded by koffi (deprecated conn/dom/net pointers omitted from use). */
export interface RawError {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

/** virDomainStatsRecord as decoded by koffi: the domain handle and its typed-parameter array. */
export interface RawStatsRecord {
  dom: Handle;
  params: Handle;
  nparams: number;
}

/** Every libvirt entry point the binding uses, typed separately from the public API. */
export interface LibvirtBinding {
  /** koffi and the loaded libvirt.so.0, for modules that declare more functions (event-loop.ts). */
  koffi: typeof import('koffi');
  lib: ReturnType<typeof import('koffi')['load']>;
  /** libvirt's library version, e.g. 9000000 for 9.0.0. */
  version: number;
  /** sizeof(virError): callers allocate zeroed buffers of this size for error capture. */
  errorSize: number;
  decodeError(buf: Buffer): RawError;
  decodeDomainPtrArray(ptr: Handle, count: number): Handle[];
  /** libc free() for arrays libvirt allocates (virConnectListAllDomains). */
  freeArray(ptr: Handle): void;
  /** Native address of virResetError: used as a do-nothing error handler (see connection.ts). */
  noopErrorHandler: bigint;
  fn: {
    virConnectOpen: ForeignFn;
    virConnectClose: ForeignFn;
    virConnSetErrorFunc: ForeignFn;
    virConnCopyLastError: ForeignFn;
    virConnResetLastError: ForeignFn;
    virResetError: ForeignFn;
    virConnectListAllDomains: ForeignFn;
    virConnectGetCapabilities: ForeignFn;
    virConnectGetDomainCapabilities: ForeignFn;
    virDomainLookupByName: ForeignFn;
    virDomainLookupByUUIDString: ForeignFn;
    virDomainDefineXML: ForeignFn;
    virDomainUndefine: ForeignFn;
    virDomainCreate: ForeignFn;
    virDomainDestroy: ForeignFn;
    virDomainSuspend: ForeignFn;
    virDomainResume: ForeignFn;
    virDomainGetInfo: ForeignFn;
    virDomainGetState: ForeignFn;
    virDomainGetXMLDesc: ForeignFn;
    virDomainGetName: ForeignFn;
    virDomainGetUUIDString: ForeignFn;
    virDomainFree: ForeignFn;
    virDomainCreateXML: ForeignFn;
    virDomainCreateWithFlags: ForeignFn;
    virDomainUndefineFlags: ForeignFn;
    virDomainShutdownFlags: ForeignFn;
    virDomainDestroyFlags: ForeignFn;
    virDomainReboot: ForeignFn;
    virDomainReset: ForeignFn;
    virDomainMemoryStats: ForeignFn;
    virConnectGetAllDomainStats: ForeignFn;
    virDomainListGetStats: ForeignFn;
    virDomainStatsRecordListFree: ForeignFn;
    virDomainStartDirtyRateCalc: ForeignFn;
    virDomainMigrateToURI3: ForeignFn;
    virDomainGetJobStats: ForeignFn;
    virTypedParamsFree: ForeignFn;
  };
  /** sizeof(virTypedParameter) (96 on LP64: char[80], int, 8-byte union at offset 88). */
  typedParamSize: number;
  /** Decodes one virDomainStatsRecord at `ptr` (pointer fields as koffi hands them out). */
  decodeStatsRecord(ptr: Handle): RawStatsRecord;
  /** Decodes `count` pointers stored at `ptr` (a libvirt-allocated pointer array). */
  decodePtrArray(ptr: Handle, count: number): Handle[];
  /**
   * The buffer the process-wide error handler copies connection-less errors into (only
   * virConnectOpen/virConnectClose reach it; they are serialised, see connection.ts).
   */
  globalErrorBuf: Buffer;
}

type Koffi = typeof import('koffi');

let cached: { binding: LibvirtBinding | null; failure: VhError | null } | null = null;

function bind(koffi: Koffi, lib: ReturnType<Koffi['load']>): LibvirtBinding {
  koffi.opaque('virConnect');
  koffi.opaque('virDomain');
  // Registered by name; the prototypes below refer to it as virDomainInfo.
  koffi.struct('virDomainInfo', {
    state: 'unsigned char',
    maxMem: 'unsigned long',
    memory: 'unsigned long',
    nrVirtCpu: 'unsigned short',
    cpuTime: 'unsigned long long',
  });
  const errorType = koffi.struct('virError', {
    code: 'int',
    domain: 'int',
    message: 'const char *',
    level: 'int',
    conn: 'void *',
    dom: 'void *',
    str1: 'const char *',
    str2: 'const char *',
    str3: 'const char *',
    int1: 'int',
    int2: 'int',
    net: 'void *',
  });
  const f = (decl: string): ForeignFn => lib.func(decl) as unknown as ForeignFn;
  const libc = koffi.load(null);
  const free = libc.func('void free(void *ptr)') as unknown as ForeignFn;

  const fn = {
    virConnectOpen: f('virConnect *virConnectOpen(const char *name)'),
    virConnectClose: f('int virConnectClose(virConnect *conn)'),
    virConnSetErrorFunc: f('void virConnSetErrorFunc(virConnect *conn, void *userData, void *handler)'),
    virConnCopyLastError: f('int virConnCopyLastError(virConnect *conn, void *to)'),
    virConnResetLastError: f('void virConnResetLastError(virConnect *conn)'),
    virResetError: f('void virResetError(void *err)'),
    virConnectListAllDomains: f('int virConnectListAllDomains(virConnect *conn, _Out_ void **domains, unsigned int flags)'),
    virConnectGetCapabilities: f('char *! virConnectGetCapabilities(virConnect *conn)'),
    virConnectGetDomainCapabilities: f(
      'char *! virConnectGetDomainCapabilities(virConnect *conn, const char *emulatorbin, const char *arch, const char *machine, const char *virttype, unsigned int flags)',
    ),
    virDomainLookupByName: f('virDomain *virDomainLookupByName(virConnect *conn, const char *name)'),
    virDomainLookupByUUIDString: f('virDomain *virDomainLookupByUUIDString(virConnect *conn, const char *uuid)'),
    virDomainDefineXML: f('virDomain *virDomainDefineXML(virConnect *conn, const char *xml)'),
    virDomainUndefine: f('int virDomainUndefine(virDomain *dom)'),
    virDomainCreate: f('int virDomainCreate(virDomain *dom)'),
    virDomainDestroy: f('int virDomainDestroy(virDomain *dom)'),
    virDomainSuspend: f('int virDomainSuspend(virDomain *dom)'),
    virDomainResume: f('int virDomainResume(virDomain *dom)'),
    virDomainGetInfo: f('int virDomainGetInfo(virDomain *dom, _Out_ virDomainInfo *info)'),
    virDomainGetState: f('int virDomainGetState(virDomain *dom, _Out_ int *state, _Out_ int *reason, unsigned int flags)'),
    // char *! : the string is copied into JS and libvirt's allocation is freed by koffi.
    virDomainGetXMLDesc: f('char *! virDomainGetXMLDesc(virDomain *dom, unsigned int flags)'),
    // Owned by the domain object: not freed.
    virDomainGetName: f('const char *virDomainGetName(virDomain *dom)'),
    virDomainGetUUIDString: f('int virDomainGetUUIDString(virDomain *dom, void *buf)'),
    virDomainFree: f('int virDomainFree(virDomain *dom)'),
    virDomainCreateXML: f('virDomain *virDomainCreateXML(virConnect *conn, const char *xml, unsigned int flags)'),
    virDomainCreateWithFlags: f('int virDomainCreateWithFlags(virDomain *dom, unsigned int flags)'),
    virDomainUndefineFlags: f('int virDomainUndefineFlags(virDomain *dom, unsigned int flags)'),
    virDomainShutdownFlags: f('int virDomainShutdownFlags(virDomain *dom, unsigned int flags)'),
    virDomainDestroyFlags: f('int virDomainDestroyFlags(virDomain *dom, unsigned int flags)'),
    virDomainReboot: f('int virDomainReboot(virDomain *dom, unsigned int flags)'),
    virDomainReset: f('int virDomainReset(virDomain *dom, unsigned int flags)'),
    // stats: caller-owned array of virDomainMemoryStatStruct {int tag; unsigned long long val}
    // (16 bytes each), passed as a Buffer; libvirt fills at most nr_stats entries.
    virDomainMemoryStats: f('int virDomainMemoryStats(virDomain *dom, void *stats, unsigned int nr_stats, unsigned int flags)'),
    // retStats: a NULL-terminated array of virDomainStatsRecordPtr that libvirt allocates; the
    // caller frees the whole list (records, their typed params and domain refs) with
    // virDomainStatsRecordListFree.
    virConnectGetAllDomainStats: f('int virConnectGetAllDomainStats(virConnect *conn, unsigned int stats, _Out_ void **retStats, unsigned int flags)'),
    // doms: a NULL-terminated array of virDomainPtr (stats.ts builds it in a Buffer); same
    // record list as above.
    virDomainListGetStats: f('int virDomainListGetStats(void *doms, unsigned int stats, _Out_ void **retStats, unsigned int flags)'),
    virDomainStatsRecordListFree: f('void virDomainStatsRecordListFree(void *stats)'),
    virDomainStartDirtyRateCalc: f('int virDomainStartDirtyRateCalc(virDomain *dom, int seconds, unsigned int flags)'),
    // params: a caller-owned virTypedParameter array (typed-params.ts builds it in a Buffer).
    virDomainMigrateToURI3: f('int virDomainMigrateToURI3(virDomain *dom, const char *dconnuri, void *params, unsigned int nparams, unsigned int flags)'),
    // params: libvirt allocates; free with virTypedParamsFree.
    virDomainGetJobStats: f('int virDomainGetJobStats(virDomain *dom, _Out_ int *type, _Out_ void **params, _Out_ int *nparams, unsigned int flags)'),
    // Frees the strings inside the array and the array itself (for arrays libvirt allocated).
    virTypedParamsFree: f('void virTypedParamsFree(void *params, int nparams)'),
  };

  // The union is 8 bytes and 8-aligned, so `value` sits at offset 88 and the struct is 96 bytes
  // on LP64; typed-params.ts reads and writes that layout directly and checks it against this.
  const typedParamValue = koffi.union('virTypedParameterValue', {
    i: 'int',
    ui: 'unsigned int',
    l: 'long long',
    ul: 'unsigned long long',
    d: 'double',
    b: 'char',
    s: 'char *',
  });
  const typedParamType = koffi.struct('virTypedParameter', { field: 'char[80]', type: 'int', value: typedParamValue });
  const statsRecordType = koffi.struct('virDomainStatsRecord', { dom: 'virDomain *', params: 'void *', nparams: 'int' });

  // Silence libvirt's default stderr printer for the whole process. The global handler is the
  // native virCopyLastError: libvirt calls handler(userData, err) on the thread that raised the
  // error, so virCopyLastError(userData) copies that thread's error into globalErrorBuf without
  // a hop to the JS thread. Connections install their own no-op handler (see connection.ts), so
  // only connection-less calls (open/close), which are serialised, ever write this buffer.
  const virSetErrorFunc = f('void virSetErrorFunc(void *userData, void *handler)');
  const globalErrorBuf = Buffer.alloc(koffi.sizeof(errorType));
  virSetErrorFunc(globalErrorBuf, lib.symbol('virCopyLastError'));

  const getVersion = f('int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)');
  const ver = [0];
  getVersion(ver, null, null);

  return {
    koffi,
    lib,
    version: Number(ver[0]),
    errorSize: koffi.sizeof(errorType),
    decodeError: (buf) => koffi.decode(buf, errorType) as RawError,
    decodeDomainPtrArray: (ptr, count) => (count > 0 ? (koffi.decode(ptr, 'virDomain *', count) as Handle[]) : []),
    freeArray: (ptr) => void free(ptr),
    typedParamSize: koffi.sizeof(typedParamType),
    decodeStatsRecord: (ptr) => koffi.decode(ptr, statsRecordType) as RawStatsRecord,
    decodePtrArray: (ptr, count) => (count > 0 ? (koffi.decode(ptr, 'void *', count) as Handle[]) : []),
    noopErrorHandler: lib.symbol('virResetError') as bigint,
    fn,
    globalErrorBuf,
  };
}

/** Opens koffi and `soname`, or returns the operator-readable reason it cannot. */
function openLibrary(soname: string): { koffi: Koffi; lib: ReturnType<Koffi['load']> } | VhError {
  let koffi: Koffi;
  try {
    koffi = require('koffi') as Koffi;
  } catch (e) {
    return new VhError(
      ErrorCodes.LIBVIRT_UNAVAILABLE,
      `libvirt unavailable: koffi (the FFI used for libvirt) failed to load: ${errorFirstLine(e)}. ` +
        'Run `npm install` with optional dependencies (the binary comes from @koromix/koffi-linux-x64).',
      {},
      { cause: e },
    );
  }
  try {
    return { koffi, lib: koffi.load(soname) };
  } catch (e) {
    return new VhError(
      ErrorCodes.LIBVIRT_UNAVAILABLE,
      `libvirt unavailable: cannot load ${soname} (${errorFirstLine(e)}). Install it with \`apt-get install libvirt0\`.`,
      { library: soname },
      { cause: e },
    );
  }
}

function load(): NonNullable<typeof cached> {
  if (!cached) {
    const opened = openLibrary(LIBVIRT_SONAME);
    cached = opened instanceof VhError ? { binding: null, failure: opened } : { binding: bind(opened.koffi, opened.lib), failure: null };
  }
  return cached;
}

/** The LIBVIRT_UNAVAILABLE error loading `soname` would give, or null if it loads (for tests). */
export function probeLibvirtLoad(soname: string): VhError | null {
  const opened = openLibrary(soname);
  return opened instanceof VhError ? opened : null;
}

/** The libvirt binding, loaded once; throws VhError(LIBVIRT_UNAVAILABLE) naming what to install. */
export function loadLibvirt(): LibvirtBinding {
  const { binding, failure } = load();
  if (binding) return binding;
  throw failure ?? new VhError(ErrorCodes.LIBVIRT_UNAVAILABLE, 'libvirt unavailable');
}

/** Like loadLibvirt() but never throws: `error` is the operator-readable reason. */
export function tryLoadLibvirt(): { libvirt: LibvirtBinding | null; error: string | null } {
  const { binding, failure } = load();
  return { libvirt: binding, error: failure ? failure.message : null };
}
