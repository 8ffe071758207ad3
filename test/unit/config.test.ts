import { test, describe } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KEYS, envName, flagName, parseCommandLine, type Command, type DefaultsContext } from '../../src/config';
import { ErrorCodes, VhError } from '../../src/errors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-config-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function ctx(env: Record<string, string> = {}, uid = 1000): DefaultsContext {
  return { env, uid, hostname: 'Node-A', tmpdir: '/tmp' };
}

function run(argv: string[], c: DefaultsContext = ctx()): Extract<Command, { kind: 'run' }> {
  const cmd = parseCommandLine(argv, c);
  assert.equal(cmd.kind, 'run');
  return cmd as Extract<Command, { kind: 'run' }>;
}

function writeFile(name: string, text: string): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  return p;
}

function rejects(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof VhError, `expected VhError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('defaults and profiles', () => {
  test('dev profile for non-root: paths under <tmpdir>/virt-handler-<uid>, sockets under runDir', () => {
    const { config, profile } = run([]);
    assert.equal(profile, 'dev');
    assert.equal(config.stateDir, '/tmp/virt-handler-1000/state');
    assert.equal(config.runDir, '/tmp/virt-handler-1000/run');
    assert.equal(config.http.socket, '/tmp/virt-handler-1000/run/http.sock');
    assert.equal(config.grpc.socket, '/tmp/virt-handler-1000/run/grpc.sock');
    assert.equal(config.grpc.tcp, null, 'gRPC over TCP is off by default');
    assert.deepEqual(config.http.tcp, { host: '127.0.0.1', port: 8185 });
    assert.equal(config.http.allowNonLoopback, false);
    assert.equal(config.log.level, 'info');
    assert.equal(config.shutdown.drainTimeoutMs, 10000);
    assert.deepEqual(config.probe, { procRoot: '/proc', sysRoot: '/sys', devRoot: '/dev', kvmDevice: '/dev/kvm' });
    assert.equal(config.nodeName, 'node-a', 'hostname lower-cased');
  });

  test('dev profile prefers $XDG_RUNTIME_DIR', () => {
    const { config } = run([], ctx({ XDG_RUNTIME_DIR: '/run/user/1000' }));
    assert.equal(config.runDir, '/run/user/1000/virt-handler/run');
  });

  test('production for root, and under systemd directories', () => {
    assert.equal(run([], ctx({}, 0)).config.stateDir, '/var/lib/virt-handler');
    assert.equal(run([], ctx({}, 0)).config.runDir, '/run/virt-handler');
    const sd = run([], ctx({ STATE_DIRECTORY: '/var/lib/vh:/var/lib/other', RUNTIME_DIRECTORY: '/run/vh' }));
    assert.equal(sd.profile, 'production');
    assert.equal(sd.config.stateDir, '/var/lib/vh');
    assert.equal(sd.config.http.socket, '/run/vh/http.sock');
  });

  test('--profile and VH_PROFILE override detection', () => {
    assert.equal(run(['--profile=production']).config.runDir, '/run/virt-handler');
    assert.equal(run(['--profile', 'dev'], ctx({}, 0)).config.runDir, '/tmp/virt-handler-0/run');
    assert.equal(run([], ctx({ VH_PROFILE: 'dev' }, 0)).profile, 'dev');
    rejects(() => run(['--profile=prod']), ErrorCodes.FLAG_INVALID, /--profile: must be production or dev/);
    rejects(() => run([], ctx({ VH_PROFILE: 'x' })), ErrorCodes.CONFIG_INVALID, /^VH_PROFILE:/);
  });

  test('NODE_NAME beats the hostname; a bad hostname only matters when it wins', () => {
    assert.equal(run([], ctx({ NODE_NAME: 'worker-1' })).config.nodeName, 'worker-1');
    const bad: DefaultsContext = { ...ctx(), hostname: 'under_score' };
    rejects(() => run([], bad), ErrorCodes.CONFIG_INVALID, /^nodeName: .*"under_score" \(from hostname; set NODE_NAME/);
    assert.equal(run(['--node-name', 'ok'], bad).config.nodeName, 'ok');
  });
});

describe('precedence: flags > env > file > defaults', () => {
  test('each layer overrides the one below, key by key', () => {
    const file = writeFile('p.yaml', 'http:\n  tcp:\n    port: 1001\n    host: "::1"\nlog:\n  level: warn\nnodeName: from-file\n');
    const c = ctx({ VH_HTTP_TCP_PORT: '1002', VH_LOG_LEVEL: 'error' });
    const { config, origins } = run(['--config', file, '--http-tcp-port=1003'], c);
    assert.equal(config.http.tcp?.port, 1003);
    assert.equal(origins['http.tcp.port'], '--http-tcp-port');
    assert.equal(config.log.level, 'error');
    assert.equal(origins['log.level'], 'VH_LOG_LEVEL');
    assert.equal(config.http.tcp?.host, '::1');
    assert.equal(config.nodeName, 'from-file');
    assert.equal(run(['--config', file], c).config.http.tcp?.port, 1002);
    assert.equal(run(['--config', file]).config.http.tcp?.port, 1001);
  });

  test('VH_CONFIG names the file; JSON files work too', () => {
    const file = writeFile('c.json', JSON.stringify({ shutdown: { drainTimeoutMs: 5 }, http: { allowNonLoopback: true } }));
    const { config } = run([], ctx({ VH_CONFIG: file }));
    assert.equal(config.shutdown.drainTimeoutMs, 5);
    assert.equal(config.http.allowNonLoopback, true);
  });

  test('socket paths follow an overridden runDir unless set themselves', () => {
    const { config } = run(['--run-dir', '/srv/run', '--grpc-socket', '/srv/g.sock']);
    assert.equal(config.http.socket, '/srv/run/http.sock');
    assert.equal(config.grpc.socket, '/srv/g.sock');
  });

  test('the TCP listener can be switched off from each source', () => {
    assert.equal(run(['--http-tcp=off']).config.http.tcp, null);
    assert.equal(run([], ctx({ VH_HTTP_TCP: 'off' })).config.http.tcp, null);
    assert.equal(run(['--config', writeFile('off.yaml', 'http:\n  tcp: null\n')]).config.http.tcp, null);
    assert.notEqual(run(['--config', writeFile('off2.yaml', 'http:\n  tcp: null\n'), '--http-tcp', 'on']).config.http.tcp, null);
  });

  test('boolean flags: bare, =true and =false', () => {
    assert.equal(run(['--http-allow-non-loopback']).config.http.allowNonLoopback, true);
    assert.equal(run(['--http-allow-non-loopback=false']).config.http.allowNonLoopback, false);
  });
});

describe('every invalid value names its key and its source', () => {
  const bad: Record<string, unknown> = {
    nodeName: 'UPPER_case', stateDir: 'relative/dir', runDir: '', 'log.level': 'verbose',
    'http.socket': '/' + 'x'.repeat(120), 'http.tcp': 'maybe', 'http.tcp.host': 'not a host!', 'http.tcp.port': 'abc',
    'http.allowNonLoopback': 'yes', 'grpc.socket': 'g.sock', 'shutdown.drainTimeoutMs': '-5',
    'grpc.tcp': 'maybe', 'grpc.tcp.host': 'bad host', 'grpc.tcp.port': '70000',
    'grpc.tls.cert': 'server.crt', 'grpc.tls.key': './server.key', 'grpc.tls.ca': 'ca/ca.crt',
    'probe.procRoot': 'proc', 'probe.sysRoot': './sys', 'probe.devRoot': 'dev', 'probe.kvmDevice': 'kvm',
    'libvirt.uri': 'qemu+ssh://evil.example/system', 'libvirt.required': 'maybe', 'libvirt.lanes': '0',
    'vmi.imageRoot': 'images', 'vmi.hostPathRoots': '/ok:relative', 'vmi.allowTcg': 'perhaps', 'vmi.embeddedLibvirt': 'sometimes', 'vmi.maxVmis': '0',
    'vmi.bridge': 'br0;rm -rf', 'vmi.reconcileWorkers': '65',
    'images.root': 'store', 'images.rewrites': 'quay.io', 'images.mirrors': 'quay.io=', 'images.authFile': 'auth.json',
    'images.insecureRegistries': 'registry.example:5000', 'images.maxImageSize': '12parsecs',
    'volumes.claimRoot': 'claims', 'volumes.objectRoot': './objects',
  };
  test('the table covers every key', () => assert.deepEqual(Object.keys(bad).sort(), KEYS.map((k) => k.key).sort()));

  for (const spec of KEYS) {
    const value = String(bad[spec.key]);
    const key = spec.key.replace(/\./g, '\\.');
    test(`${spec.key} via flag and env`, () => {
      rejects(() => run([`--${flagName(spec.key)}=${value}`]), ErrorCodes.CONFIG_INVALID, new RegExp(`^${key}: .*got .*\\(from --${flagName(spec.key)}\\)`));
      rejects(() => run([], ctx({ [envName(spec.key)]: value })), ErrorCodes.CONFIG_INVALID, new RegExp(`^${key}: .*\\(from ${envName(spec.key)}\\)`));
    });
  }

  test('the documented example message', () => {
    rejects(() => run(['--http-tcp-port', 'abc']), ErrorCodes.CONFIG_INVALID, /^http\.tcp\.port: must be an integer 0-65535 \(0 picks a free port\), got "abc" \(from --http-tcp-port\)$/);
    rejects(() => run(['--http-tcp-port', '70000']), ErrorCodes.CONFIG_INVALID, /^http\.tcp\.port: .*got "70000"/);
    rejects(() => run(['--http-tcp-port', '1.5']), ErrorCodes.CONFIG_INVALID, /^http\.tcp\.port:/);
  });

  test('file values must have the right YAML type (no silent string -> number)', () => {
    const file = writeFile('t.yaml', 'http:\n  tcp:\n    port: "8080"\n');
    rejects(() => run(['--config', file]), ErrorCodes.CONFIG_INVALID, new RegExp(`^http\\.tcp\\.port: .*got "8080" \\(from file ${file}\\)`));
    rejects(() => run(['--config', writeFile('b.yaml', 'http:\n  allowNonLoopback: "true"\n')]), ErrorCodes.CONFIG_INVALID, /^http\.allowNonLoopback: must be true or false/);
    rejects(() => run(['--config', writeFile('m.yaml', 'http: 5\n')]), ErrorCodes.CONFIG_INVALID, /^http: must be a mapping, got 5/);
  });

  test('libvirt.uri: node-local URIs only, off switches libvirt off', () => {
    assert.equal(run([]).config.libvirt.uri, 'qemu:///system');
    assert.equal(run(['--libvirt-uri=off']).config.libvirt.uri, null);
    assert.equal(run(['--config', writeFile('lv.yaml', 'libvirt:\n  uri: null\n')]).config.libvirt.uri, null);
    for (const ok of ['test:///default', 'qemu:///system', 'qemu:///session', 'qemu+unix:///system?socket=/run/x/libvirt-sock', 'qemu:///embed?root=/var/lib/vh/vmis/a']) {
      assert.equal(run([`--libvirt-uri=${ok}`]).config.libvirt.uri, ok);
    }
    const bad: Array<[string, RegExp]> = [
      ['qemu+tcp:///system', /transport \+tcp is not supported/],
      ['qemu://host.example/system', /must not name a host/],
      ['qemu+unix:///system?socket=relative', /socket= must be an absolute path/],
      ['qemu+unix:///system?socket=/run/../etc/x', /socket= must not contain '\.\.'/],
      ['qemu:///system?socket=/run/x', /socket= needs the \+unix transport/],
      ['qemu:///embed', /root= is required/],
      ['qemu:///embed?root=/a&root=/b', /given twice/],
      ['qemu:///system?foo=1', /unknown query parameter foo/],
      ['xen:///system', /driver "xen" is not supported/],
      ['test:///other', /exactly test:\/\/\/default/],
      ['qemu:///system x', /must not contain spaces/],
      ['qemu:///system\'', /must not contain spaces, quotes/],
      ['nonsense', /must look like driver/],
    ];
    for (const [uri, re] of bad) rejects(() => run([`--libvirt-uri=${uri}`]), ErrorCodes.CONFIG_INVALID, new RegExp(`^libvirt\\.uri: .*${re.source}`));
  });

  test('tooling (VHDEV_*) and test (VHTEST_*) variables are never looked at; a VH_ name that is not a key stops startup', () => {
    assert.equal(run([], ctx({ VHDEV_LIBVIRT_DIR: '/tmp/vh-libvirtd', VHDEV_LIBVIRT_LOG_LEVEL: '1', VHTEST_FAILPOINTS: 'x' })).config.libvirt.uri, 'qemu:///system');
    // The scripts' old names: VH_ is the daemon's alone now.
    rejects(() => run([], ctx({ VH_LIBVIRT_LOG_LEVEL: '1' })), ErrorCodes.CONFIG_INVALID, /^VH_LIBVIRT_LOG_LEVEL: unknown environment variable/);
    rejects(() => run([], ctx({ VH_LIBVIRT_DIRR: '/x' })), ErrorCodes.CONFIG_INVALID, /VH_LIBVIRT_DIRR: unknown environment variable/);
  });

  test('vmi keys: image root follows stateDir, path lists from env and YAML, bridge name', () => {
    const c = run(['--state-dir', '/srv/vh']).config;
    assert.equal(c.vmi.imageRoot, '/srv/vh/images');
    assert.deepEqual(c.vmi.hostPathRoots, []);
    assert.equal(c.vmi.bridge, null);
    assert.deepEqual(run(['--vmi-host-path-roots', '/a:/b/c/']).config.vmi.hostPathRoots, ['/a', '/b/c/']);
    assert.deepEqual(run(['--config', writeFile('roots.yaml', 'vmi:\n  hostPathRoots: [/x, /y]\n')]).config.vmi.hostPathRoots, ['/x', '/y']);
    rejects(() => run(['--vmi-host-path-roots', '/a/../etc']), ErrorCodes.CONFIG_INVALID, /^vmi\.hostPathRoots: must be absolute paths without '\.\.'/);
    rejects(() => run(['--config', writeFile('roots2.yaml', 'vmi:\n  hostPathRoots: /x\n')]), ErrorCodes.CONFIG_INVALID, /^vmi\.hostPathRoots: must be a list/);
    assert.equal(run(['--vmi-bridge', 'br-vm0']).config.vmi.bridge, 'br-vm0');
    assert.equal(run(['--vmi-image-root', '/imgs']).config.vmi.imageRoot, '/imgs');
  });

  test('cross-key rules', () => {
    rejects(() => run(['--http-tcp-host', '0.0.0.0']), ErrorCodes.CONFIG_INVALID, /^http\.tcp\.host: "0\.0\.0\.0" \(from --http-tcp-host\) is not a loopback address; set http\.allowNonLoopback=true/);
    assert.equal(run(['--http-tcp-host', '0.0.0.0', '--http-allow-non-loopback']).config.http.tcp?.host, '0.0.0.0');
    assert.equal(run(['--http-tcp-host', '127.0.0.2']).config.http.tcp?.host, '127.0.0.2');
    assert.equal(run(['--http-tcp-host', '0.0.0.0', '--http-tcp=off']).config.http.tcp, null);
    rejects(() => run(['--run-dir', '/proc/vh']), ErrorCodes.CONFIG_INVALID, /^runDir: must not be under \/proc or \/sys, got "\/proc\/vh"/);
    rejects(() => run(['--grpc-socket', '/sys/g.sock']), ErrorCodes.CONFIG_INVALID, /^grpc\.socket: must not be under/);
    rejects(() => run(['--http-socket', '/a.sock', '--grpc-socket', '/a.sock']), ErrorCodes.CONFIG_INVALID, /^grpc\.socket: must differ from http\.socket/);
    rejects(() => run(['--run-dir', '/' + 'r'.repeat(100)]), ErrorCodes.CONFIG_INVALID, /^http\.socket: .*at most 107 bytes.*\(from default <runDir>\/http\.sock\)/);
  });
});

describe('gRPC TCP listener (mutual TLS)', () => {
  const tlsFlags = ['--grpc-tls-cert=/etc/vh/tls.crt', '--grpc-tls-key=/etc/vh/tls.key', '--grpc-tls-ca=/etc/vh/ca.crt'];
  const tls = { cert: '/etc/vh/tls.crt', key: '/etc/vh/tls.key', ca: '/etc/vh/ca.crt' };

  test('on with the three TLS paths: loopback 8186 by default', () => {
    const { config, origins } = run(['--grpc-tcp=on', ...tlsFlags]);
    assert.deepEqual(config.grpc.tcp, { host: '127.0.0.1', port: 8186, tls });
    assert.equal(origins['grpc.tcp'], '--grpc-tcp');
    assert.ok(Object.isFrozen(config.grpc.tcp) && Object.isFrozen(config.grpc.tcp?.tls));
  });

  test('each TLS path is required when grpc.tcp is on, named with its env var and flag', () => {
    rejects(() => run(['--grpc-tcp=on']), ErrorCodes.CONFIG_INVALID, /^grpc\.tls\.cert: is required when grpc\.tcp is on \(from --grpc-tcp\); set VH_GRPC_TLS_CERT or --grpc-tls-cert/);
    rejects(() => run(['--grpc-tcp=on', tlsFlags[0]!]), ErrorCodes.CONFIG_INVALID, /^grpc\.tls\.key: is required/);
    rejects(() => run(['--grpc-tcp=on', tlsFlags[0]!, tlsFlags[1]!]), ErrorCodes.CONFIG_INVALID, /^grpc\.tls\.ca: is required/);
    rejects(() => run([], ctx({ VH_GRPC_TCP: 'on', VH_GRPC_TLS_CERT: '/a', VH_GRPC_TLS_KEY: '/b' })), ErrorCodes.CONFIG_INVALID, /^grpc\.tls\.ca: is required when grpc\.tcp is on \(from VH_GRPC_TCP\)/);
  });

  test('TLS paths without grpc.tcp are accepted and unused', () => {
    assert.equal(run(tlsFlags).config.grpc.tcp, null);
    assert.equal(run(['--grpc-tcp=off', ...tlsFlags]).config.grpc.tcp, null);
  });

  test('a non-loopback host is allowed (mTLS protects it); port 0 picks', () => {
    assert.equal(run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-host', '0.0.0.0']).config.grpc.tcp?.host, '0.0.0.0');
    assert.equal(run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '0']).config.grpc.tcp?.port, 0);
    assert.equal(run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '0', '--http-tcp-port', '0']).config.grpc.tcp?.port, 0);
  });

  test('the port must not collide with http.tcp.port on an overlapping address', () => {
    rejects(() => run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '8185']), ErrorCodes.CONFIG_INVALID, /^grpc\.tcp\.port: 8185 \(from --grpc-tcp-port\) is already http\.tcp\.port/);
    rejects(() => run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '8185', '--grpc-tcp-host', '0.0.0.0']), ErrorCodes.CONFIG_INVALID, /^grpc\.tcp\.port:/);
    assert.equal(run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '8185', '--http-tcp=off']).config.grpc.tcp?.port, 8185);
    assert.equal(run(['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '8185', '--grpc-tcp-host', '10.0.0.5']).config.grpc.tcp?.port, 8185);
  });

  test('from env and from a file: a tcp mapping switches it on, null off', () => {
    const env = ctx({ VH_GRPC_TCP: 'on', VH_GRPC_TLS_CERT: tls.cert, VH_GRPC_TLS_KEY: tls.key, VH_GRPC_TLS_CA: tls.ca, VH_GRPC_TCP_PORT: '9443' });
    assert.deepEqual(run([], env).config.grpc.tcp, { host: '127.0.0.1', port: 9443, tls });
    const file = writeFile('grpc-on.yaml', `grpc:\n  tcp:\n    host: 10.1.2.3\n  tls:\n    cert: ${tls.cert}\n    key: ${tls.key}\n    ca: ${tls.ca}\n`);
    assert.deepEqual(run(['--config', file]).config.grpc.tcp, { host: '10.1.2.3', port: 8186, tls });
    assert.equal(run(['--config', file, '--grpc-tcp=off']).config.grpc.tcp, null);
    assert.equal(run(['--config', writeFile('grpc-off.yaml', 'grpc:\n  tcp: null\n')]).config.grpc.tcp, null);
    rejects(() => run(['--config', writeFile('grpc-bad.yaml', 'grpc:\n  tcp: 5\n')]), ErrorCodes.CONFIG_INVALID, /^grpc\.tcp: must be a mapping or null, got 5/);
    rejects(() => run(['--config', writeFile('grpc-on-notls.yaml', 'grpc:\n  tcp: {}\n')]), ErrorCodes.CONFIG_INVALID, /^grpc\.tls\.cert: is required when grpc\.tcp is on \(from file /);
  });

  test('--print-config with grpc.tcp on round-trips', () => {
    const argv = ['--grpc-tcp=on', ...tlsFlags, '--grpc-tcp-port', '9444'];
    const printed = parseCommandLine(['--print-config', ...argv], ctx());
    const file = writeFile('printed-grpc.yaml', (printed as { text: string }).text);
    assert.deepEqual(run(['--config', file]).config, run(argv).config);
  });
});

describe('unknown keys, variables and flags are rejected', () => {
  test('unknown file key, with a suggestion', () => {
    const file = writeFile('u.yaml', 'http:\n  tcp:\n    prot: 1\n');
    rejects(() => run(['--config', file]), ErrorCodes.CONFIG_INVALID, /^http\.tcp\.prot: unknown key .*did you mean http\.tcp\.port\?/);
    rejects(() => run(['--config', writeFile('u2.yaml', 'colour: red\n')]), ErrorCodes.CONFIG_INVALID, /^colour: unknown key/);
  });
  test('duplicate keys and unreadable files', () => {
    rejects(() => run(['--config', writeFile('d.yaml', 'nodeName: a\nnodeName: b\n')]), ErrorCodes.CONFIG_INVALID, /^config file .*d\.yaml: .*/);
    rejects(() => run(['--config', path.join(tmp, 'missing.yaml')]), ErrorCodes.CONFIG_INVALID, /cannot be read \(ENOENT\)/);
    rejects(() => run(['--config', writeFile('l.yaml', '- 1\n- 2\n')]), ErrorCodes.CONFIG_INVALID, /top level must be a mapping/);
  });
  test('an empty file means all defaults', () => {
    assert.equal(run(['--config', writeFile('e.yaml', '')]).config.log.level, 'info');
  });
  test('every unknown VH_ variable stops startup, with the closest key when there is one', () => {
    rejects(() => run([], ctx({ VH_HTTP_TCP_PROT: '1' })), ErrorCodes.CONFIG_INVALID, /^VH_HTTP_TCP_PROT: unknown environment variable \(did you mean VH_HTTP_TCP_PORT\?\)$/);
    rejects(() => run([], ctx({ VH_PROBE_EVERYTHING: '1' })), ErrorCodes.CONFIG_INVALID, /^VH_PROBE_EVERYTHING: unknown environment variable \(VH_ variables are configuration keys; virt-handler --help lists them\)$/);
    rejects(() => run([], ctx({ VH_STAT_DIR: '/x' })), ErrorCodes.CONFIG_INVALID, /^VH_STAT_DIR: .*did you mean VH_STATE_DIR\?/);
    rejects(() => run([], ctx({ VH_CACHE_DIR: '/c' })), ErrorCodes.CONFIG_INVALID, /^VH_CACHE_DIR: unknown environment variable/);
    assert.equal(run([], ctx({ VHDEV_SANDBOX_MEM: '2G', VHDEV_CACHE_DIR: '/c', VHDEV_IN_SANDBOX: '1', VHTEST_NATIVE_TESTS: 'host' })).config.log.level, 'info');
  });
  test('unknown flag, stray argument, missing value', () => {
    rejects(() => run(['--http-tcp-prot', '1']), ErrorCodes.FLAG_INVALID, /^--http-tcp-prot: unknown flag \(did you mean --http-tcp-port\?\); see --help/);
    rejects(() => run(['serve']), ErrorCodes.FLAG_INVALID, /unexpected argument "serve"/);
    rejects(() => run(['--state-dir']), ErrorCodes.FLAG_INVALID, /^--state-dir: needs a value/);
  });
});

describe('result and meta commands', () => {
  test('the config is deep-frozen', () => {
    const { config } = run([]);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.http) && Object.isFrozen(config.http.tcp) && Object.isFrozen(config.probe));
    assert.throws(() => {
      (config.http.tcp as { port: number }).port = 1;
    }, TypeError);
  });

  test('--help lists every flag and env var; --version prints the version', () => {
    const help = parseCommandLine(['--help'], ctx());
    assert.equal(help.kind, 'help');
    for (const k of KEYS) {
      assert.ok((help as { text: string }).text.includes(`--${flagName(k.key)}`), k.key);
      assert.ok((help as { text: string }).text.includes(envName(k.key)), k.key);
    }
    const v = parseCommandLine(['--version'], ctx());
    assert.equal(v.kind, 'version');
    assert.match((v as { text: string }).text, /^virt-handler \d+\.\d+\.\d+/);
  });

  test('--print-config output is a config file that round-trips', () => {
    const printed = parseCommandLine(['--print-config', '--http-tcp-port', '9'], ctx());
    assert.equal(printed.kind, 'print-config');
    const file = writeFile('printed.yaml', (printed as { text: string }).text);
    assert.deepEqual(run(['--config', file]).config, run(['--http-tcp-port', '9']).config);
  });
});

describe('images.*', () => {
  test('defaults: the store beside (not inside) vmi.imageRoot, nothing rewritten, 64Gi', () => {
    const { config } = run(['--state-dir=/srv/vh']);
    assert.deepEqual(config.images, { root: '/srv/vh/image-store', rewrites: {}, mirrors: {}, authFile: null, insecureRegistries: [], maxImageSize: 64 * 2 ** 30 });
    assert.equal(config.vmi.imageRoot, '/srv/vh/images');
  });

  test('flags, env and a file spell the same values', () => {
    const flags = run(['--images-rewrites=registry:5000=127.0.0.1:5123,quay.io/x=127.0.0.1:5123/y', '--images-mirrors=quay.io=127.0.0.1:5000|127.0.0.2:5000',
      '--images-insecure-registries=127.0.0.1:5123,localhost,[::1]:80', '--images-max-image-size=512Mi', '--images-auth-file=/etc/vh/auth.json', '--images-root=/srv/store']).config.images;
    assert.deepEqual(flags, {
      root: '/srv/store', rewrites: { 'registry:5000': '127.0.0.1:5123', 'quay.io/x': '127.0.0.1:5123/y' }, mirrors: { 'quay.io': ['127.0.0.1:5000', '127.0.0.2:5000'] },
      authFile: '/etc/vh/auth.json', insecureRegistries: ['127.0.0.1:5123', 'localhost', '[::1]:80'], maxImageSize: 512 * 2 ** 20,
    });
    const env = run([], ctx({ VH_IMAGES_MAX_IMAGE_SIZE: '2000000', VH_IMAGES_INSECURE_REGISTRIES: '127.0.0.1:5000', VH_IMAGES_AUTH_FILE: '' })).config.images;
    assert.equal(env.maxImageSize, 2_000_000);
    assert.deepEqual(env.insecureRegistries, ['127.0.0.1:5000']);
    assert.equal(env.authFile, null);
    const file = writeFile('images.yaml', 'images:\n  rewrites:\n    registry:5000: 127.0.0.1:5123\n  mirrors:\n    quay.io: [127.0.0.1:5000]\n  insecureRegistries: [127.0.0.1:5123]\n  maxImageSize: 1Gi\n');
    const fromFile = run(['--config', file]).config.images;
    assert.deepEqual(fromFile.rewrites, { 'registry:5000': '127.0.0.1:5123' });
    assert.deepEqual(fromFile.mirrors, { 'quay.io': ['127.0.0.1:5000'] });
    assert.equal(fromFile.maxImageSize, 2 ** 30);
  });

  test('plain HTTP only to loopback registries; bad maps and sizes name the key', () => {
    rejects(() => run(['--images-insecure-registries=10.0.0.1:5000']), ErrorCodes.CONFIG_INVALID, /^images\.insecureRegistries: must be loopback registries.*bad entry "10\.0\.0\.1:5000"/);
    rejects(() => run(['--config', writeFile('ir.yaml', 'images:\n  insecureRegistries: 127.0.0.1\n')]), ErrorCodes.CONFIG_INVALID, /^images\.insecureRegistries: .*as a list/);
    rejects(() => run(['--images-rewrites=a b=c']), ErrorCodes.CONFIG_INVALID, /^images\.rewrites: .*bad key "a b"/);
    rejects(() => run(['--config', writeFile('mi.yaml', 'images:\n  mirrors:\n    quay.io: 127.0.0.1:5000\n')]), ErrorCodes.CONFIG_INVALID, /^images\.mirrors: .*bad mirrors for quay\.io/);
    rejects(() => run(['--images-max-image-size=1Ki']), ErrorCodes.CONFIG_INVALID, /^images\.maxImageSize: must be a byte count/);
  });

  test('volume roots default under stateDir and take absolute paths', () => {
    const v = run(['--state-dir=/srv/vh']).config.volumes;
    assert.deepEqual({ ...v }, { claimRoot: '/srv/vh/volumes', objectRoot: '/srv/vh/objects' });
    const w = run(['--state-dir=/srv/vh', '--volumes-claim-root=/data/claims', '--volumes-object-root=/etc/vh/objects']).config.volumes;
    assert.deepEqual({ ...w }, { claimRoot: '/data/claims', objectRoot: '/etc/vh/objects' });
  });

  test('the store must not overlap vmi.imageRoot (a VMI host path must never reach files GC removes)', () => {
    rejects(() => run(['--state-dir=/srv/vh', '--images-root=/srv/vh/images/store']), ErrorCodes.CONFIG_INVALID, /^images\.root: .*must not overlap vmi\.imageRoot/);
    rejects(() => run(['--vmi-image-root=/srv/vh/image-store/x', '--state-dir=/srv/vh']), ErrorCodes.CONFIG_INVALID, /^images\.root: /);
  });
});
