#!/usr/bin/env node
/**
 * vhctl: the operator's view of a running virt-handler over its gRPC unix socket: node facts,
 * health, and the VMIs (virthandler.v1.VmiService). Exit codes: see HELP.
 */
import { parseArgs } from 'node:util';
import * as path from 'node:path';
import type { DeviceInfo, NodeInfo } from '../node/types';
import { nodeInfoFromWire } from '../grpc/node-service';
import { CliError, DEFAULT_TIMEOUT_MS, EXIT, UsageError, defaultSocket, parseTimeout, preflight, table, unary, withClient, type CommonOptions } from './common';
import { cmdConsole } from './console';
import { cmdCreate } from './create';
import { cmdImage, parseImageArgs, type ImageArgs } from './image-commands';
import { ACTIONS, cmdAction, cmdDelete, cmdGet, cmdList, type ActionCommand, type VmiOutput } from './vmi-commands';
import { DV_WORDS, cmdDeleteDataVolume, cmdGetDataVolumes, cmdUploadDataVolume, type DataVolumeOptions } from './datavolume-commands';

export { EXIT, defaultSocket } from './common';

export const HELP = `Usage: vhctl <command> [options]

Node:
  node                      node facts: schedulability, KVM, CPU, memory, hugepages, THP, devices, labels
  health                    grpc.health.v1 Check of the whole server; exit 0 only when SERVING

VMIs (namespace: -n NAMESPACE, default "default"):
  create -f FILE [-f FILE...] [--dry-run]
                            every document of the files (YAML '---' documents, JSON, kind List;
                            -f - reads stdin): VirtualMachineInstances are sent as they are;
                            VirtualMachines are expanded to their VMI (template, runStrategy or
                            running, instancetype and preference as virt-controller applies
                            them) and sent; instancetypes and preferences are recorded for later
                            calls in $XDG_CACHE_HOME/virt-handler/instancetypes (default
                            ~/.cache); cluster-only kinds (pools, replica sets, presets...) are
                            refused saying why. One line per document; each rejected field as
                            "  <field>: <message>". --dry-run sends and records nothing: defaults
                            each VMI as KubeVirt does, checks it with the daemon's validator and
                            this node's configuration (VH_CONFIG, VH_*) and prints it as YAML,
                            secrets redacted
  get NAME                  one VMI (-o table|wide|json|yaml)
  list                      the VMIs of a namespace, or of all with -A (-o table|wide|json|yaml)
  delete NAME [--wait]      delete; --wait watches until it is gone (up to --timeout, default 2m)
  pause NAME                pause the guest
  unpause NAME              resume a paused guest
  soft-reboot NAME          ask the guest to reboot (ACPI)
  shutdown NAME             graceful shutdown without deleting
  console NAME              serial console; on a terminal Ctrl-] detaches. From a pipe, stdin is
                            sent and vhctl exits once it ended and the output went quiet

Images (the node image store: containerDisk and kernelBoot.container images):
  image list                the stored images: REFERENCE DIGEST SIZE IN-USE AGE (-o table|json)
  image pull REF [--policy Always|IfNotPresent|Never]
                            pull (or find) REF with progress; concurrent pulls of REF share one
                            download. --disk-path / --kernel-path / --initrd-path select what is
                            taken out of the image (default: the containerDisk /disk/*)
  image import FILE [--tag REF] [--format oci-archive|docker-archive]
                            stream an archive (skopeo copy ... oci-archive:FILE) to the daemon for
                            an air-gapped node; --tag names it (without: stored by digest only)
  image rm REF|DIGEST       remove; refused while a VMI uses it (the VMI is named)
  image gc                  remove now every image no VMI uses
  Pull and import have no deadline unless --timeout is given.
DataVolumes (CDI cdi.kubevirt.io/v1beta1; created with create -f, like a VirtualMachine's
dataVolumeTemplates; "dv" may also be written dvs, datavolume, datavolumes):
  get dv [NAME]             one DataVolume or those of a namespace (-A: all): NAME PHASE PROGRESS
                            RESTARTS AGE (-o table|json|yaml)
  delete dv NAME            delete the DataVolume and its claim (refused while a VMI uses it)
  upload dv NAME --image-path FILE
                            stream FILE (raw or qcow2) into an upload DataVolume (spec.source.upload)

Options:
  -o, --output FORMAT       node/health: table|json; create: table|json|yaml;
                            get/list: table|wide|json|yaml (default: table)
  -n, --namespace NS        the VMI's namespace (default: default)
  -A, --all-namespaces      list: every namespace
  -f, --file FILE           create: a manifest file, or - for stdin (repeatable)
      --dry-run             create: validate locally and print the VMIs; change nothing
      --wait                delete: wait until the VMI is gone
      --image-path FILE     upload dv: the disk image to send
      --socket PATH         gRPC socket (default: $VH_GRPC_SOCKET, else $VH_RUN_DIR/grpc.sock,
                            else /run/virt-handler/grpc.sock if it exists, else the daemon's
                            default for this user: <dev runDir>/grpc.sock when not root)
      --timeout DURATION    per-call deadline: 5, 5s, 500ms or 2m (default: 5s); for delete --wait
                            the whole wait (default: 2m); for console the session length (default: none)
  -h, --help                show this help

Exit codes:
  0  ok (health: SERVING; console: detached, closed by the daemon, or --timeout reached)
  1  error: daemon unreachable or not serving, VMI not found, manifest rejected (the violations are
     listed; create: any document refused), refused request (e.g. pause of a VMI that is not Running), delete --wait timed out
  2  usage error (unknown command or option, option not valid for the command, bad value)
`;

type Command = 'node' | 'health' | 'create' | 'get' | 'list' | 'delete' | 'console' | 'upload' | 'image' | ActionCommand;
const COMMANDS: readonly Command[] = ['node', 'health', 'create', 'get', 'list', 'delete', 'console', 'upload', 'image', ...(Object.keys(ACTIONS) as ActionCommand[])];
type Flag = 'output' | 'namespace' | 'all-namespaces' | 'file' | 'dry-run' | 'wait' | 'timeout' | 'image-path';

/** Per command: its options (besides --socket, --timeout, --help), -o formats and positional NAME. */
const SPEC: Record<Command, { flags: readonly Flag[]; outputs: readonly string[]; name: boolean }> = {
  node: { flags: ['output'], outputs: ['table', 'json'], name: false },
  health: { flags: ['output'], outputs: ['table', 'json'], name: false },
  create: { flags: ['output', 'file', 'dry-run'], outputs: ['table', 'json', 'yaml'], name: false },
  get: { flags: ['output', 'namespace'], outputs: ['table', 'wide', 'json', 'yaml'], name: true },
  list: { flags: ['output', 'namespace', 'all-namespaces'], outputs: ['table', 'wide', 'json', 'yaml'], name: false },
  delete: { flags: ['namespace', 'wait'], outputs: ['table'], name: true },
  console: { flags: ['namespace'], outputs: ['table'], name: true },
  pause: { flags: ['namespace'], outputs: ['table'], name: true },
  unpause: { flags: ['namespace'], outputs: ['table'], name: true },
  'soft-reboot': { flags: ['namespace'], outputs: ['table'], name: true },
  shutdown: { flags: ['namespace'], outputs: ['table'], name: true },
  image: { flags: ['output'], outputs: ['table', 'json'], name: false },
  upload: { flags: ['namespace', 'image-path'], outputs: ['table'], name: true },
};

/** The DataVolume forms of get/delete/upload (`<command> dv [NAME]`). */
const DV_SPEC: Partial<Record<Command, { flags: readonly Flag[]; outputs: readonly string[]; name: 'optional' | 'required' }>> = {
  get: { flags: ['output', 'namespace', 'all-namespaces'], outputs: ['table', 'json', 'yaml'], name: 'optional' },
  delete: { flags: ['namespace'], outputs: ['table'], name: 'required' },
  upload: { flags: ['namespace', 'image-path'], outputs: ['table'], name: 'required' },
};

const FLAG_SPELLING: Record<Flag, string> = {
  output: '-o/--output', namespace: '-n/--namespace', 'all-namespaces': '-A/--all-namespaces', file: '-f/--file', 'dry-run': '--dry-run', wait: '--wait', timeout: '--timeout',
  'image-path': '--image-path',
};

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Kubernetes' DNS-1123 label, as the daemon and the HTTP API require of namespaces and names. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function checkLabel(what: string, value: string): string {
  if (value.length > 63 || !DNS1123_LABEL.test(value)) {
    throw new UsageError(`${what}: expected a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters), got ${JSON.stringify(value.slice(0, 70))}`);
  }
  return value;
}

export interface Options extends DataVolumeOptions {
  command: Command;
  /** `image ...`: the subcommand and its arguments. */
  image?: ImageArgs;
  /** What get/delete/upload act on: a VMI, or a DataVolume (`dv`). */
  resource: 'vmi' | 'dv';
}

/** Options only `image` subcommands take. */
const IMAGE_FLAGS = ['policy', 'tag', 'format', 'disk-path', 'kernel-path', 'initrd-path'] as const;

/** Parses argv strictly; returns null when help was asked for. */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Options | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: true,
      options: {
        output: { type: 'string', short: 'o' },
        namespace: { type: 'string', short: 'n' },
        'all-namespaces': { type: 'boolean', short: 'A' },
        file: { type: 'string', short: 'f', multiple: true },
        'dry-run': { type: 'boolean' },
        wait: { type: 'boolean' },
        'image-path': { type: 'string' },
        socket: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        policy: { type: 'string' },
        tag: { type: 'string' },
        format: { type: 'string' },
        'disk-path': { type: 'string' },
        'kernel-path': { type: 'string' },
        'initrd-path': { type: 'string' },
      },
    });
  } catch (e) {
    // parseArgs' own text suggests '--' quoting, which only confuses here.
    const msg = (e as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(msg);
    const missing = /Option '(?:-(\w), )?--([\w-]+) <value>' argument missing/.exec(msg);
    const ambiguous = /Option '([^']+)' argument is ambiguous/.exec(msg);
    if (unknown) throw new UsageError(`unknown option '${unknown[1]}'`);
    if (missing) throw new UsageError(`option '--${missing[2]}' needs a value`);
    if (ambiguous) throw new UsageError(`option '${ambiguous[1]}' needs a value (got another option instead)`);
    throw new UsageError(msg);
  }
  const { values, positionals } = parsed;
  if (values.help) return null;
  const command = positionals[0] as Command | undefined;
  if (command === undefined) throw new UsageError('missing command (node, health, create, get, list, delete, console, upload, image, pause, unpause, soft-reboot or shutdown)');
  if (!COMMANDS.includes(command)) throw new UsageError(`unknown command '${command}' (expected ${COMMANDS.join(', ')})`);
  const dvSpec = DV_SPEC[command];
  const dv = dvSpec !== undefined && DV_WORDS.includes(positionals[1] ?? '');
  if (command === 'upload' && !dv) throw new UsageError("upload: expected 'upload dv NAME --image-path FILE'");
  const spec = dv ? { ...dvSpec!, name: true } : SPEC[command];
  for (const flag of ['output', 'namespace', 'all-namespaces', 'file', 'dry-run', 'wait', 'image-path'] as const) {
    if (values[flag] !== undefined && !spec.flags.includes(flag)) throw new UsageError(`option ${FLAG_SPELLING[flag]} is not valid for '${command}${dv ? ' dv' : ''}'`);
  }
  if (command !== 'image') {
    for (const flag of IMAGE_FLAGS) if (values[flag] !== undefined) throw new UsageError(`option --${flag} is not valid for '${command}'`);
  }
  const image = command === 'image' ? parseImageArgs(positionals.slice(1), Object.fromEntries(IMAGE_FLAGS.map((f) => [f, values[f]]))) : undefined;
  const args = dv ? positionals.slice(1) : positionals;
  const want = command === 'image' ? positionals.length : spec.name ? 2 : 1;
  if (args.length < want && !(dv && dvSpec!.name === 'optional')) throw new UsageError(`${command}: missing NAME (the ${dv ? 'DataVolume' : "VMI"}'s name)`);
  if (command !== 'image' && args.length > want) throw new UsageError(`unexpected argument '${args[want]}'`);
  if (command === 'upload' && !values['image-path']) throw new UsageError('upload dv: --image-path FILE is required');
  const output = values.output ?? 'table';
  if (!spec.outputs.includes(output)) throw new UsageError(`-o/--output: expected ${spec.outputs.join(' or ')} for '${command}', got '${output}'`);
  if (values.socket === '') throw new UsageError('--socket: empty path');
  if (command === 'create' && values.file === undefined) throw new UsageError('create: -f/--file FILE is required (- for stdin)');
  if (values.file?.includes('')) throw new UsageError('-f/--file: empty path');
  if ((values.file ?? []).filter((f) => f === '-').length > 1) throw new UsageError('-f/--file: stdin (-) can be read once');
  if (values['all-namespaces'] && values.namespace !== undefined) throw new UsageError('-n/--namespace and -A/--all-namespaces exclude each other');
  return {
    command,
    output: output as VmiOutput,
    socket: path.resolve(values.socket ?? defaultSocket(env)),
    timeoutMs: values.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseTimeout(values.timeout),
    timeoutSet: values.timeout !== undefined,
    namespace: checkLabel('-n/--namespace', values.namespace ?? 'default'),
    allNamespaces: values['all-namespaces'] === true,
    name: dv ? checkSubdomain(args[1]) : spec.name ? checkLabel('NAME', positionals[1]!) : '',
    files: values.file ?? [],
    dryRun: values['dry-run'] === true,
    wait: values.wait === true,
    ...(image ? { image } : {}),
    resource: dv ? 'dv' : 'vmi',
    imagePath: values['image-path'] ?? '',
  };
}

function checkSubdomain(value: string | undefined): string {
  if (value === undefined) return '';
  if (value.length > 253 || !DNS1123_SUBDOMAIN.test(value)) throw new UsageError(`NAME: expected a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'), got ${JSON.stringify(value.slice(0, 70))}`);
  return value;
}

type NodeOptions = CommonOptions & { output: VmiOutput };

const GiB = 1024 ** 3;
/** 1.5 GiB / 2 MiB / 512 B: the unit an operator expects for each magnitude. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['TiB', 1024 * GiB], ['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= size) return `${Number.isInteger(n / size) ? n / size : (n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}


function deviceRow(d: DeviceInfo): string[] {
  const owner = d.uid === null ? '-' : `${d.uid}:${d.gid ?? '-'}`;
  return [d.path, d.present ? 'yes' : 'no', d.kind || '-', d.mode || '-', owner, d.accessible ? 'rw' : 'no'];
}

/** The `vhctl node` table: key facts first, then devices, then labels. */
export function renderNodeTable(n: NodeInfo): string {
  const c = n.cpu;
  const k = n.kvm;
  const kvm = k.available
    ? `available, API version ${k.apiVersion ?? '?'}` + (k.capabilities.NR_VCPUS !== undefined ? `, ${k.capabilities.NR_VCPUS} vCPUs recommended max` : '')
    : `unavailable: ${k.reason ?? 'unknown reason'}${k.errorCode ? ` (${k.errorCode})` : ''}`;
  const ident = [c.family, c.model, c.stepping].every((v) => v !== null) ? ` (family ${c.family} model ${c.model} stepping ${c.stepping})` : '';
  const hp = n.hugepages.length ? n.hugepages.map((h) => `${formatBytes(h.sizeBytes)}: ${h.free}/${h.total} free`).join('; ') : 'none';
  const facts: string[][] = [
    ['NODE', n.nodeName],
    ['SCHEDULABLE', n.schedulable ? 'yes' : 'no'],
    ...n.reasons.map((r) => ['', `- ${r}`]),
    ...n.warnings.map((w, i) => [i === 0 ? 'WARNINGS' : '', `- ${w}`]),
    ['KVM', kvm],
    ['CPU', `${c.vendor} ${c.modelName}${ident}`],
    ['TOPOLOGY', `${c.sockets} socket(s) x ${c.coresPerSocket} core(s) x ${c.threadsPerCore} thread(s) = ${c.logicalCpus} logical CPUs; ${n.numa.length} NUMA node(s)`],
    ['MEMORY', `${formatBytes(n.memory.totalBytes)} total, ${formatBytes(n.memory.availableBytes)} available`],
    ['HUGEPAGES', hp],
    ['THP', `enabled=${n.thp.enabled || '-'} defrag=${n.thp.defrag || '-'}`],
    ['KERNEL', n.kernel.release],
    ['PROBED', `${n.probedAt} (${Math.round(n.probeDurationMs * 10) / 10} ms)`],
  ];
  const d = n.devices;
  const devices = [['DEVICE', 'PRESENT', 'KIND', 'MODE', 'OWNER', 'ACCESS'], ...[d.kvm, d.tun, d.vhostNet, d.vhostVsock, d.userfaultfd].map(deviceRow)];
  const labels = Object.keys(n.labels).sort().map((key) => `  ${key}=${n.labels[key]}`);
  return [...table(facts), '', ...table(devices), '', `LABELS (${labels.length})`, ...labels, ''].join('\n');
}

async function cmdNode(opts: NodeOptions): Promise<number> {
  preflight(opts.socket);
  const res = await withClient(opts, 'NodeClient', (c) => unary<{ node: unknown }>(c, 'GetNodeInfo', {}, opts.timeoutMs));
  const info = nodeInfoFromWire(res.node);
  process.stdout.write(opts.output === 'json' ? JSON.stringify(info, null, 2) + '\n' : renderNodeTable(info));
  return EXIT.OK;
}

async function cmdHealth(opts: NodeOptions): Promise<number> {
  let status: string;
  let error: string | undefined;
  try {
    preflight(opts.socket);
    const res = await withClient(opts, 'HealthClient', (c) => unary<{ status: string }>(c, 'Check', { service: '' }, opts.timeoutMs));
    status = res.status;
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    status = 'unreachable';
    error = e.message;
  }
  if (opts.output === 'json') process.stdout.write(JSON.stringify({ status, socket: opts.socket, ...(error ? { error } : {}) }) + '\n');
  else process.stdout.write(status + '\n');
  if (error) process.stderr.write(`vhctl: ${error}\n`);
  return status === 'SERVING' ? EXIT.OK : EXIT.ERROR;
}


function dispatch(opts: Options): Promise<number> {
  switch (opts.command) {
    case 'node': return cmdNode(opts);
    case 'health': return cmdHealth(opts);
    case 'create': return cmdCreate(opts);
    case 'get': return opts.resource === 'dv' ? cmdGetDataVolumes(opts) : cmdGet(opts);
    case 'list': return cmdList(opts);
    case 'delete': return opts.resource === 'dv' ? cmdDeleteDataVolume(opts) : cmdDelete(opts);
    case 'upload': return cmdUploadDataVolume(opts);
    case 'console': return cmdConsole(opts);
    case 'image': return cmdImage({ ...opts, image: opts.image as ImageArgs });
    default: return cmdAction(opts.command, opts);
  }
}

/** Runs one invocation and returns its exit code; never throws. */
export async function run(argv: readonly string[]): Promise<number> {
  try {
    const opts = parseCli(argv);
    if (!opts) {
      process.stdout.write(HELP);
      return EXIT.OK;
    }
    return await dispatch(opts);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`vhctl: ${e.message}\nRun 'vhctl --help' for usage.\n`);
      return EXIT.USAGE;
    }
    process.stderr.write(`vhctl: ${e instanceof CliError ? e.message : (e as Error)?.stack ?? String(e)}\n`);
    return EXIT.ERROR;
  }
}

if (require.main === module) {
  // exitCode, not exit(): lets stdout drain when it is a pipe; the client is closed, so nothing lingers.
  void run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
