/** systemd/virt-handler.service: the directives the daemon's design depends on (see comments in the unit). */
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KEYS, defaultValues, envName, processContext } from '../../src/config/defaults';

const REPO = path.resolve(__dirname, '../../..');
const UNIT = path.join(REPO, 'systemd/virt-handler.service');

type Unit = Map<string, Map<string, string[]>>;

/** Minimal systemd unit parser: sections, repeated keys kept in order, comments, continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | null = null;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section && eq > 0, `line ${i + 1} is not key=value inside a section: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** systemd time span ("30s", "2min", "1min 30s", bare seconds) in seconds. */
function seconds(span: string): number {
  let total = 0;
  for (const part of span.split(/\s+/)) {
    const m = /^(\d+)(ms|s|sec|min|m)?$/.exec(part);
    assert.ok(m, `unparsable time span ${span}`);
    const n = Number(m[1]);
    total += m[2] === 'ms' ? n / 1000 : m[2] === 'min' || m[2] === 'm' ? n * 60 : n;
  }
  return total;
}

const unit = parseUnit(fs.readFileSync(UNIT, 'utf8'));
const service = unit.get('Service')!;
/** The single value of a key that must appear once. */
const one = (key: string): string | undefined => {
  const v = service.get(key);
  if (v === undefined) return undefined;
  assert.equal(v.length, 1, `${key} is set ${v.length} times`);
  return v[0];
};
const env = new Map((service.get('Environment') ?? []).map((e) => e.split('=', 2) as [string, string]));

describe('systemd unit', () => {
  it('has [Unit], [Service] and [Install] sections', () => {
    assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
    assert.equal(unit.get('Install')!.get('WantedBy')?.[0], 'multi-user.target');
  });

  it('is Type=notify with main-only notify access, no watchdog', () => {
    assert.equal(one('Type'), 'notify');
    assert.equal(one('NotifyAccess'), 'main');
    assert.equal(service.has('WatchdogSec'), false, 'the daemon does not send WATCHDOG=1');
  });

  it('starts the installed bundle dist/virt-handler.cjs (the package.json bin) with NODE_ENV=production', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.equal(pkg.bin['virt-handler'], 'dist/virt-handler.cjs');
    assert.equal(one('ExecStart'), `/usr/bin/node /opt/virt-handler/${pkg.bin['virt-handler']}`);
    assert.equal(one('WorkingDirectory'), '/opt/virt-handler');
    assert.equal(env.get('NODE_ENV'), 'production');
  });

  it('only sets environment variables the daemon accepts', () => {
    const known = new Set([...KEYS.map((k) => envName(k.key)), 'NODE_ENV', 'NODE_NAME']);
    for (const name of env.keys()) assert.ok(known.has(name), `unknown variable ${name}`);
  });

  it('restarts on failure, but not on a configuration error (exit 2)', () => {
    assert.equal(one('Restart'), 'on-failure');
    assert.ok(seconds(one('RestartSec') ?? '') > 0);
    assert.equal(one('RestartPreventExitStatus'), '2');
  });

  it('never kills launchers on stop/restart, and keeps their sockets', () => {
    assert.equal(one('KillMode'), 'process');
    assert.equal(one('RuntimeDirectory'), 'virt-handler');
    assert.equal(one('RuntimeDirectoryPreserve'), 'yes');
    assert.equal(one('StateDirectory'), 'virt-handler');
  });

  it('gives systemd a stop timeout longer than the drain deadline', () => {
    const drainMs = Number(env.get('VH_SHUTDOWN_DRAIN_TIMEOUT_MS') ?? defaultValues('production', processContext({}))['shutdown.drainTimeoutMs']);
    assert.equal(drainMs, defaultValues('production', processContext({}))['shutdown.drainTimeoutMs'], 'the unit restates the built-in default');
    const stop = seconds(one('TimeoutStopSec') ?? '');
    assert.ok(stop >= drainMs / 1000 + 10, `TimeoutStopSec ${stop}s leaves under 10 s beyond the ${drainMs} ms drain`);
  });

  it('allows exactly the KVM and networking devices, read-write', () => {
    assert.equal(one('DevicePolicy'), 'closed');
    const allowed = service.get('DeviceAllow') ?? [];
    for (const dev of ['/dev/kvm', '/dev/net/tun', '/dev/vhost-net', '/dev/vhost-vsock']) {
      assert.ok(allowed.includes(`${dev} rw`), `DeviceAllow=${dev} rw missing`);
    }
    assert.notEqual(one('PrivateDevices'), 'yes', 'PrivateDevices would hide /dev/kvm');
  });

  it('is sandboxed', () => {
    assert.ok(['strict', 'full'].includes(one('ProtectSystem') ?? ''));
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.deepEqual(one('RestrictAddressFamilies')?.split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    assert.ok(Number(one('LimitNOFILE')) >= 65536);
  });
});
