/** A VMI's event history: the bounded, de-duplicating ring and GET /v1/vmis/:ns/:name/events. */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { Metrics } from '../../src/http/metrics';
import { HttpServer } from '../../src/http/server';
import { createLogger } from '../../src/log';
import { Readiness } from '../../src/util/readiness';
import type { VmiRecord } from '../../src/vmi/control/store';
import { MAX_EVENTS, VmiState, initialStatus } from '../../src/vmi/control/vmi-state';
import type { VirtualMachineInstance, VmiReadModel, VmiView } from '../../src/vmi/spec/types';

function entry(): VmiState {
  const rec: VmiRecord = {
    version: 1, uid: 'u1', namespace: 'ns', name: 'vm', generation: 1, manifest: { metadata: { name: 'vm', namespace: 'ns' } } as VirtualMachineInstance,
    deleting: false, wantRunning: true, launcher: null, phase: 'Running', reason: '', restarts: 0, revision: 1, updatedAt: '',
  };
  return new VmiState(rec, null, initialStatus('n', 'Running'));
}

const addEvent = (s: VmiState, type: 'Normal' | 'Warning', reason: string, message: string, now?: Date): void => s.addEvent(type, reason, message, now);
const viewOf = (s: VmiState): VmiView => s.view();

const at = (s: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, s));

describe('event history', () => {
  test('repeats of an identical event fold into one entry with count, firstTimestamp and lastTimestamp', () => {
    const e = entry();
    addEvent(e, 'Warning', 'LauncherDisconnected', 'stream ended', at(1));
    addEvent(e, 'Normal', 'LauncherConnected', 'launcher 42 registered', at(2));
    addEvent(e, 'Warning', 'LauncherDisconnected', 'stream ended', at(3));
    addEvent(e, 'Warning', 'LauncherDisconnected', 'stream ended', at(4));
    addEvent(e, 'Warning', 'LauncherDisconnected', 'other message', at(5));
    assert.deepEqual(e.events, [
      { time: at(2).toISOString(), type: 'Normal', reason: 'LauncherConnected', message: 'launcher 42 registered', count: 1, firstTimestamp: at(2).toISOString(), lastTimestamp: at(2).toISOString() },
      { time: at(4).toISOString(), type: 'Warning', reason: 'LauncherDisconnected', message: 'stream ended', count: 3, firstTimestamp: at(1).toISOString(), lastTimestamp: at(4).toISOString() },
      { time: at(5).toISOString(), type: 'Warning', reason: 'LauncherDisconnected', message: 'other message', count: 1, firstTimestamp: at(5).toISOString(), lastTimestamp: at(5).toISOString() },
    ]);
  });

  test('bounded to MAX_EVENTS distinct events, the oldest dropped; a flapping event cannot push the others out', () => {
    const e = entry();
    addEvent(e, 'Normal', 'Created', 'first');
    for (let i = 0; i < MAX_EVENTS + 20; i++) addEvent(e, 'Normal', 'Step', `step ${i}`);
    assert.equal(e.events.length, MAX_EVENTS);
    assert.equal(e.events[0]?.message, 'step 20');
    assert.equal(e.events.at(-1)?.message, `step ${MAX_EVENTS + 19}`);
    const f = entry();
    addEvent(f, 'Normal', 'Created', 'first');
    for (let i = 0; i < 1000; i++) addEvent(f, 'Warning', 'Flap', 'again');
    assert.deepEqual(f.events.map((x) => [x.reason, x.count]), [['Created', 1], ['Flap', 1000]]);
  });

  test('the view carries copies (a later repeat does not change an earlier answer)', () => {
    const e = entry();
    addEvent(e, 'Normal', 'X', 'y');
    const v = viewOf(e);
    addEvent(e, 'Normal', 'X', 'y');
    assert.equal(v.events[0]?.count, 1);
    assert.equal(viewOf(e).events[0]?.count, 2);
  });
});

describe('GET /v1/vmis/:namespace/:name/events', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-vmi-events-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const e = entry();
  addEvent(e, 'Normal', 'Started', 'domain started', at(1));
  addEvent(e, 'Normal', 'Started', 'domain started', at(2));
  const model: VmiReadModel = {
    list: () => [viewOf(e)],
    get: (ns, name): VmiView | null => (ns === 'ns' && name === 'vm' ? viewOf(e) : null),
  };
  const readiness = new Readiness({});
  const server = new HttpServer({
    logger: createLogger({ level: 'silent', nodeName: 'n', destination: new Writable({ write: (_c, _e, cb) => cb() }) }),
    socketPath: path.join(tmp, 'h.sock'),
    tcp: { host: '127.0.0.1', port: 0 },
    readiness,
    metrics: new Metrics({ version: '0', nodeName: 'n', ready: () => true, nodeInfo: () => null }),
    nodeInfo: () => null,
    vmis: model,
  });

  test('answers the folded history, oldest first', async () => {
    const res = await server.app.inject('/v1/vmis/ns/vm/events');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), {
      namespace: 'ns',
      name: 'vm',
      uid: 'u1',
      items: [{ time: at(2).toISOString(), type: 'Normal', reason: 'Started', message: 'domain started', count: 2, firstTimestamp: at(1).toISOString(), lastTimestamp: at(2).toISOString() }],
    });
    // The item view carries the same history.
    assert.equal((await server.app.inject('/v1/vmis/ns/vm')).json().events[0].count, 2);
  });

  test('unknown VMI, bad names, other sub-resources and query parameters are refused', async () => {
    const missing = await server.app.inject('/v1/vmis/ns/nope/events');
    assert.equal(missing.statusCode, 404);
    assert.match(missing.json().message, /vmi ns\/nope not found/);
    assert.equal((await server.app.inject('/v1/vmis/NS/vm/events')).statusCode, 400);
    const other = await server.app.inject('/v1/vmis/ns/vm/logs');
    assert.equal(other.statusCode, 404);
    assert.match(other.json().message, /\/events/);
    assert.equal((await server.app.inject('/v1/vmis/ns/vm/events?limit=1')).statusCode, 400);
  });
});
