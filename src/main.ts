#!/usr/bin/env node
/**
 * Process entry of the shipped daemon (bundled into dist/virt-handler.cjs): raise libuv's pool,
 * then run the daemon until a signal drains it (daemon-process.ts: startup, signals, exit codes).
 * Everything else lives in app.ts (wiring) and config/ (parsing). It passes no test seams: the
 * shipped daemon reads no test variables (tests that need failpoints or timings start
 * test/lib/test-daemon.ts instead).
 */
// First, before anything can start libuv's threadpool: koffi's async libvirt calls and libvirt's
// event loop run on it, and libuv reads UV_THREADPOOL_SIZE only once (src/libvirt/queue.ts).
import { ensureThreadpoolSize } from './libvirt/queue';
ensureThreadpoolSize(16);

import { exitWhenDone, runDaemon } from './daemon-process';

exitWhenDone(runDaemon(process.argv.slice(2)));
