/** The daemon's validated, frozen configuration (see src/config/ for loading and README for keys). */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** Kubernetes node name (NODE_NAME from the downward API), defaults to the hostname. */
  nodeName: string;
  /** Durable state (per-VMI records later): /var/lib/virt-handler in production. */
  stateDir: string;
  /** Sockets and pid-scoped files: /run/virt-handler in production. */
  runDir: string;
  log: { level: LogLevel };
  http: {
    /** Unix socket path for the status API (mode 0660). */
    socket: string;
    /** Loopback TCP listener; null disables it. Binding a non-loopback host requires allowNonLoopback. */
    tcp: { host: string; port: number } | null;
    allowNonLoopback: boolean;
  };
  grpc: {
    /** Unix socket path for gRPC (mode 0660). */
    socket: string;
    /**
     * Optional TCP listener (null: off, the default) that requires mutual TLS and serves only the
     * controller-facing services (Node, Health, VmiService); launchers always use the unix socket.
     */
    tcp: { host: string; port: number; tls: { cert: string; key: string; ca: string } } | null;
  };
  shutdown: {
    /** How long to wait for in-flight requests after SIGTERM before forcing close. */
    drainTimeoutMs: number;
  };
  probe: {
    procRoot: string;
    sysRoot: string;
    devRoot: string;
    kvmDevice: string;
  };
  vmi: {
    /** Relative kernelBoot/containerDisk paths resolve under this directory. */
    imageRoot: string;
    /** Further roots absolute VMI host paths may point into. */
    hostPathRoots: string[];
    /** Run VMIs under TCG when the node has no usable hardware KVM. */
    allowTcg: boolean;
    /** Without a connected node libvirtd, run VMIs through qemu:///embed inside their launcher. */
    embeddedLibvirt: boolean;
    maxVmis: number;
    /** Host bridge for 'bridge' interfaces; null: such VMIs are refused. */
    bridge: string | null;
    reconcileWorkers: number;
  };
  libvirt: {
    /** Validated libvirt URI (src/libvirt/uri.ts), or null when libvirt is switched off. */
    uri: string | null;
    /** When true, the daemon is not ready while libvirt is unreachable. */
    required: boolean;
    /** Connection handles (calls that run at once). */
    lanes: number;
  };
  /** The image store (src/images/): where pulled containerDisk images live and how they are fetched. */
  images: {
    root: string;
    /** Reference prefix rewrites (longest prefix wins). */
    rewrites: Readonly<Record<string, string>>;
    /** Per registry host, mirrors tried in order before it. */
    mirrors: Readonly<Record<string, readonly string[]>>;
    authFile: string | null;
    /** Registries reached over plain HTTP; loopback hosts only. */
    insecureRegistries: readonly string[];
    maxImageSize: number;
  };
  /** Node-local storage and Kubernetes objects served as VMI volumes. */
  volumes: {
    /** `<claimRoot>/<namespace>/<claimName>/` holds a claim's disk.img (filesystem mode) or its block device node `disk`. */
    claimRoot: string;
    /** `<objectRoot>/<namespace>/{configmaps,secrets,serviceaccounts}/<name>/<key>`: objects the node serves as volumes. */
    objectRoot: string;
  };
}
