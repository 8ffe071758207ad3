/** deploy/daemonset.yaml: structure, and coherence with the daemon's config and the systemd unit. */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KEYS, envName } from '../../src/config/defaults';
import { META_ENV, layerFromEnv, resolve } from '../../src/config/load';

const REPO = path.resolve(__dirname, '../../..');

/** Manifests are untyped YAML: the assertions below are the schema. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const docs = parseAllDocuments(fs.readFileSync(path.join(REPO, 'deploy/daemonset.yaml'), 'utf8'));
const objects: Any[] = docs.map((d) => d.toJS());
const byKind = (kind: string): Any => {
  const found = objects.filter((o) => o?.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}`);
  return found[0];
};
const ds = byKind('DaemonSet');
const pod = ds.spec.template.spec;
const container = pod.containers[0];
const envList: Any[] = container.env;
const envVar = (name: string): Any => envList.find((e) => e.name === name);

/** Sample values the kubelet would put into fieldRef variables. */
const FIELD_SAMPLES: Record<string, string> = { 'spec.nodeName': 'node-a', 'status.podIP': '10.244.1.7' };

/** The environment the daemon would see in the pod. */
function podEnv(): Record<string, string> {
  return Object.fromEntries(envList.map((e) => [e.name, e.value ?? FIELD_SAMPLES[e.valueFrom.fieldRef.fieldPath]]));
}

describe('daemonset manifest', () => {
  it('parses without YAML errors or warnings', () => {
    for (const d of docs) {
      assert.deepEqual(d.errors, []);
      assert.deepEqual(d.warnings, []);
    }
  });

  it('holds a Namespace, a ServiceAccount and a DaemonSet in namespace kubevirt', () => {
    assert.deepEqual(objects.map((o) => o.kind), ['Namespace', 'ServiceAccount', 'DaemonSet']);
    assert.equal(byKind('Namespace').metadata.name, 'kubevirt');
    assert.equal(byKind('Namespace').metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
    for (const o of objects.slice(1)) assert.equal(o.metadata.namespace, 'kubevirt');
    assert.equal(pod.serviceAccountName, byKind('ServiceAccount').metadata.name);
  });

  it('selects its own pods and rolls one node at a time', () => {
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) assert.equal(ds.spec.template.metadata.labels[k], v);
    assert.equal(ds.spec.updateStrategy.type, 'RollingUpdate');
    assert.equal(ds.spec.updateStrategy.rollingUpdate.maxUnavailable, 1);
  });

  it('runs everywhere via tolerations, never gated on the label it sets', () => {
    assert.ok(pod.tolerations.some((t: Any) => t.operator === 'Exists' && !t.key));
    assert.equal(JSON.stringify(pod.nodeSelector ?? {}).includes('kubevirt.io/schedulable'), false);
    assert.equal(JSON.stringify(pod.affinity ?? {}).includes('kubevirt.io/schedulable'), false);
  });

  it('mounts the host paths with the right hostPath types, each volume used', () => {
    const want: Record<string, string> = {
      '/dev/kvm': 'CharDevice', '/dev/net/tun': 'CharDevice', '/run/virt-handler': 'DirectoryOrCreate',
      '/var/lib/virt-handler': 'DirectoryOrCreate', '/sys': 'Directory',
    };
    const hostPaths = Object.fromEntries(pod.volumes.filter((v: Any) => v.hostPath).map((v: Any) => [v.hostPath.path, v.hostPath.type]));
    assert.deepEqual(hostPaths, want);
    const mounted = new Set(container.volumeMounts.map((m: Any) => m.name));
    for (const v of pod.volumes) assert.ok(mounted.has(v.name), `volume ${v.name} not mounted`);
    for (const m of container.volumeMounts) assert.ok(pod.volumes.some((v: Any) => v.name === m.name), `mount ${m.name} has no volume`);
    const sys = container.volumeMounts.find((m: Any) => m.name === 'sys');
    assert.equal(sys.readOnly, true);
    assert.equal(podEnv().VH_PROBE_SYS_ROOT, sys.mountPath);
  });

  it('is privileged (device cgroup access) with a read-only root and no API token', () => {
    assert.equal(container.securityContext.privileged, true);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(pod.automountServiceAccountToken, false);
    assert.notEqual(pod.hostPID, true);
  });

  it('takes NODE_NAME from spec.nodeName and only sets variables the daemon accepts', () => {
    assert.equal(envVar('NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName');
    const known = new Set([...KEYS.map((k) => envName(k.key)), ...META_ENV, 'NODE_NAME', 'NODE_ENV']);
    for (const e of envList) assert.ok(known.has(e.name), `unknown variable ${e.name}`);
  });

  it('yields a valid daemon config: status API on the pod IP, sockets and state on host paths', () => {
    const env = podEnv();
    const ctx = { env, uid: 0, hostname: 'ignored', tmpdir: '/tmp' };
    const { config } = resolve(env.VH_PROFILE as 'production', ctx, [layerFromEnv(env)]);
    assert.equal(config.nodeName, 'node-a');
    assert.deepEqual(config.http.tcp, { host: '10.244.1.7', port: 8185 });
    assert.equal(config.runDir, '/run/virt-handler');
    assert.equal(config.stateDir, '/var/lib/virt-handler');
    assert.equal(config.grpc.socket, '/run/virt-handler/grpc.sock', 'vhctl on the host finds it by default');
  });

  it('probes /healthz and /readyz on the port and address the daemon listens on', () => {
    assert.notEqual(pod.hostNetwork, true, 'probes target the pod IP; see the header comment');
    assert.equal(envVar('VH_HTTP_TCP_HOST').valueFrom.fieldRef.fieldPath, 'status.podIP');
    const port = (p: string | number): number => (typeof p === 'number' ? p : container.ports.find((x: Any) => x.name === p).containerPort);
    for (const [probe, pathWant] of [['livenessProbe', '/healthz'], ['readinessProbe', '/readyz'], ['startupProbe', '/healthz']] as const) {
      const get = container[probe].httpGet;
      assert.equal(get.path, pathWant);
      assert.equal(port(get.port), Number(podEnv().VH_HTTP_TCP_PORT));
      assert.equal(get.host, undefined, `${probe} must hit the pod IP the daemon binds`);
    }
  });

  it('requests little, bounds memory, and has no CPU limit', () => {
    assert.deepEqual(container.resources.requests, { cpu: '10m', memory: '96Mi' });
    assert.ok(container.resources.limits.memory);
    assert.equal(container.resources.limits.cpu, undefined);
  });

  it('gives the same stop budget as the systemd unit, above the drain deadline', () => {
    const drainS = Number(podEnv().VH_SHUTDOWN_DRAIN_TIMEOUT_MS) / 1000;
    assert.ok(pod.terminationGracePeriodSeconds >= drainS + 10);
    const unit = fs.readFileSync(path.join(REPO, 'systemd/virt-handler.service'), 'utf8');
    assert.equal(`${pod.terminationGracePeriodSeconds}s`, /^TimeoutStopSec=(.+)$/m.exec(unit)?.[1]);
  });

  it('runs the same entry point as package.json and tags the image with its version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
    assert.equal(pkg.bin['virt-handler'], 'dist/virt-handler.cjs');
    assert.deepEqual(container.command, ['node', `/opt/virt-handler/${pkg.bin['virt-handler']}`]);
    assert.equal(container.image.split(':').pop(), pkg.version);
  });
});
