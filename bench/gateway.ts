/**
 * `npm run bench:gateway`: what the gateway costs on top of the network, side by side with the
 * floor and a peer. Everything on 127.0.0.1, every server its own process on its own free port:
 *
 *  - direct:  the mock upstream (`keyport mock-upstream`), no proxy: the baseline;
 *  - raw:     bench/raw-proxy.ts, a `node:http` pass-through: the floor of a Node.js proxy;
 *  - floor:   bench/stack-floor.ts, Fastify + undici doing only the transport work the gateway must
 *             (bodies read and parsed, streams passed through): the floor of Keyport's own stack;
 *  - Keyport: `keyport serve`, authentication on (a project key), proxying to the mock;
 *  - Portkey: `@portkey-ai/gateway` (a dev dependency), forwarding to the mock through its
 *             `x-portkey-custom-host` header.
 *
 * Three phases, each with a fresh mock and fresh proxies pointed at it (so each phase measures
 * every target under one upstream configuration):
 *  1. saturated throughput: 50 connections for 10 s after a 2 s warm-up, mock delay 0; also each
 *     server's CPU time per request in that run, which a busy machine disturbs less than throughput;
 *  2. latency at a fixed rate, 500 req/s for 10 s (after 2 s of warm-up) with a 20 ms mock delay,
 *     twice: with autocannon's `overallRate` (closed loop: each connection sends its share of every
 *     second back to back, so with a fixed upstream delay the connections move in step and requests
 *     arrive in bursts of `connections`), and open loop, one request every 2 ms whatever the
 *     answers (what a steady 500 req/s is). Added latency is the target's percentile minus direct's;
 *  3. SSE time to first chunk: 200 sequential streamed requests, 10 ms between the mock's chunks:
 *     time from sending to the first body chunk carrying `data:`.
 * Peak RSS is each server's VmHWM (Linux), the highest over the phases.
 *
 * Keyport runs from its sources through tsx, as `npm start` does in a checkout (with
 * KEYPORT_USE_DIST=1 after `npm run build`, bin/keyport.js runs dist/ instead). Portkey runs its
 * published build with bench/portkey-preload.js (loopback only, and a fix that lets it stream on
 * Node 20). Its streams start late by design: its stream transformer waits 25 ms before passing on
 * the first event.
 *
 * Every run is bounded; all children are killed at the end, on error and on Ctrl-C.
 * KEYPORT_BENCH_SECONDS shortens (or lengthens) the measured runs, e.g. 3 for a smoke test.
 * KEYPORT_BENCH_TARGETS (e.g. `keyport-limits,keyport-redis`) and KEYPORT_BENCH_PHASES (e.g. `2`)
 * measure only some targets or phases, to look into one number; such a partial run prints its
 * measurements as it goes and no table.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { machine } from './verify-key.ts';

const HOST = '127.0.0.1';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.KEYPORT_BENCH_SECONDS ?? 10);
const SATURATED = { connections: 50, warmupSeconds: 2, seconds: SECONDS };
// 20 connections at 500 req/s overall: 25 req/s each, so every connection idles part of each second
// even when a proxy adds a few milliseconds to the 20 ms upstream (autocannon's rate is closed-loop).
const FIXED = { rate: 500, connections: 20, warmupSeconds: 2, seconds: SECONDS, mockDelayMs: 20 };
/** Connections the open-loop generator may open: 500 req/s × 20 ms ≈ 10 in flight, with room. */
const PACED_CONNECTIONS = 64;
const SSE = { requests: 200, warmup: 20, chunkDelayMs: 10 };
/** Everything, start-up included, must be done by then. */
const DEADLINE_MS = 15 * 60_000;

const BODY = JSON.stringify({
  model: 'mock-gpt-4o',
  messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
});
const STREAM_BODY = JSON.stringify({
  model: 'mock-gpt-4o',
  stream: true,
  messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
});

type TargetName = 'direct' | 'raw' | 'floor' | 'keyport' | 'keyport-limits' | 'keyport-redis' | 'portkey';
const TARGETS: TargetName[] = [
  'direct',
  'raw',
  'floor',
  'keyport',
  'keyport-limits',
  'keyport-redis',
  'portkey',
];
const LABELS: Record<TargetName, string> = {
  direct: 'direct (mock)',
  raw: 'raw node:http proxy',
  floor: 'Fastify + undici floor',
  keyport: 'Keyport',
  'keyport-limits': 'Keyport + limits (in-process)',
  'keyport-redis': 'Keyport + limits (Redis)',
  portkey: 'Portkey',
};
/** The Redis the `keyport-redis` target shares its limits through. */
const REDIS_URL = process.env.KEYPORT_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
/**
 * Limits high enough never to refuse a benchmark request, on a project and on its key, so every
 * request runs the whole limits path: a project-wide and a key budget of requests and tokens per
 * minute, requests per day and a concurrency slot (8 buckets and 2 slots per request).
 */
const BENCH_LIMITS = {
  project: { max_requests_per_1_minute: 1_000_000_000, max_tokens_per_1_minute: 1_000_000_000 },
  key: {
    max_requests_per_1_minute: 1_000_000_000,
    max_tokens_per_1_minute: 1_000_000_000,
    max_requests_per_1_day: 1_000_000_000,
    max_concurrent_requests: 100_000,
  },
};

const ONLY_TARGETS = process.env.KEYPORT_BENCH_TARGETS?.split(',').map((t) => t.trim()) as
  | TargetName[]
  | undefined;
const ONLY_PHASES = process.env.KEYPORT_BENCH_PHASES?.split(',').map((p) => Number(p.trim()));
const measured = (target: Target) => !ONLY_TARGETS || ONLY_TARGETS.includes(target.name);
const phase = (n: number) => !ONLY_PHASES || ONLY_PHASES.includes(n);

interface Target {
  name: TargetName;
  /** Origin, http://127.0.0.1:port */
  url: string;
  headers: Record<string, string>;
  server: Child;
}

// ---------------------------------------------------------------------------------------------------
// Child processes

interface Child {
  name: string;
  process: ChildProcess;
  /** The last lines it printed, for error messages. */
  output: string[];
  exited: Promise<number | null>;
}

const children = new Set<Child>();

function spawnChild(name: string, args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (data: Buffer) => {
    output.push(...data.toString('utf8').split('\n').filter(Boolean));
    if (output.length > 40) output.splice(0, output.length - 40);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const child = { name, process: proc, output, exited };
  children.add(child);
  void exited.then(() => children.delete(child));
  return child;
}

async function stopChild(child: Child): Promise<void> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return;
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 3000);
  await child.exited;
  clearTimeout(timer);
}

function killAllNow(): void {
  for (const child of children) {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
  }
}

process.once('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllNow();
    process.exit(130);
  });
}

/** Runs a child to completion and returns what it printed on stdout. */
async function runToEnd(name: string, args: string[], env: Record<string, string>): Promise<string> {
  const child = spawnChild(name, args, env);
  let stdout = '';
  child.process.stdout?.on('data', (data: Buffer) => {
    stdout += data.toString('utf8');
  });
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 120_000);
  const code = await child.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${name} failed (exit ${code}):\n${child.output.join('\n')}`);
  return stdout;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `url` until it answers (any status); fails early when the child exits. */
async function waitReady(child: Child, url: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let exited = false;
  void child.exited.then(() => {
    exited = true;
  });
  while (Date.now() < until) {
    if (exited) throw new Error(`${child.name} exited during start-up:\n${child.output.join('\n')}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`${child.name} not ready after ${timeoutMs} ms:\n${child.output.join('\n')}`);
}

/** Peak resident set size in bytes (Linux VmHWM), undefined where /proc is not there. */
function peakRss(child: Child): number | undefined {
  try {
    const status = readFileSync(`/proc/${child.process.pid}/status`, 'utf8');
    const kb = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, every thread) the process has used, in seconds (Linux /proc). */
function cpuSeconds(child: Child): number | undefined {
  try {
    const stat = readFileSync(`/proc/${child.process.pid}/stat`, 'utf8');
    // After "pid (comm) ": state is field 3, utime field 14 and stime field 15, in USER_HZ (100/s).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// The servers

const KEYPORT_BIN = path.join(ROOT, 'bin', 'keyport.js');
const PORTKEY_SERVER = path.join(ROOT, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');
const PORTKEY_PRELOAD = path.join(ROOT, 'bench', 'portkey-preload.js');
const RAW_PROXY = path.join(ROOT, 'bench', 'raw-proxy.ts');
const STACK_FLOOR = path.join(ROOT, 'bench', 'stack-floor.ts');

interface KeyportSetup {
  dataDir: string;
  adminKey: string;
  projectId: string;
  /** Created through the Admin API once the first server is up. */
  projectKey?: string;
  /** A key in a second project, both with BENCH_LIMITS. */
  limitedKey?: string;
}

async function initKeyport(): Promise<KeyportSetup> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyport-bench-gateway-'));
  const stdout = await runToEnd('keyport init', [KEYPORT_BIN, 'init', '--json'], {
    KEYPORT_DATA_DIR: dataDir,
    KEYPORT_MOCK_UPSTREAM: 'off',
    KEYPORT_LOG_LEVEL: 'warn',
  });
  const line = stdout.split('\n').find((l) => l.includes('"admin_key"'));
  if (!line) throw new Error(`keyport init --json printed no admin key:\n${stdout}`);
  const result = JSON.parse(line) as { admin_key: string; project_id: string };
  return { dataDir, adminKey: result.admin_key, projectId: result.project_id };
}

async function adminPost<T>(
  keyportUrl: string,
  setup: KeyportSetup,
  path: string,
  payload: unknown,
): Promise<T> {
  const response = await fetch(`${keyportUrl}/v1/organization${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${setup.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(payload),
  });
  const body = (await response.json()) as T;
  if (response.status !== 200)
    throw new Error(`POST ${path} failed (${response.status}): ${JSON.stringify(body)}`);
  return body;
}

async function createProjectKey(
  keyportUrl: string,
  setup: KeyportSetup,
  projectId = setup.projectId,
): Promise<string> {
  const body = await adminPost<{ value?: string }>(keyportUrl, setup, `/projects/${projectId}/api_keys`, {
    name: 'gateway benchmark',
  });
  if (!body.value) throw new Error(`creating a project key returned no secret: ${JSON.stringify(body)}`);
  return body.value;
}

/** A second project and a key in it, both with BENCH_LIMITS. */
async function createLimitedKey(keyportUrl: string, setup: KeyportSetup): Promise<string> {
  const project = await adminPost<{ id: string }>(keyportUrl, setup, '/projects', { name: 'limited' });
  await adminPost(keyportUrl, setup, `/projects/${project.id}/rate_limits/rl-*`, BENCH_LIMITS.project);
  const secret = await createProjectKey(keyportUrl, setup, project.id);
  const keys = await fetch(`${keyportUrl}/v1/organization/projects/${project.id}/api_keys`, {
    headers: { authorization: `Bearer ${setup.adminKey}` },
  });
  const keyId = ((await keys.json()) as { data: { id: string }[] }).data[0]!.id;
  await adminPost(
    keyportUrl,
    setup,
    `/projects/${project.id}/api_keys/${keyId}/rate_limits/rl-*`,
    BENCH_LIMITS.key,
  );
  return secret;
}

interface MockSettings {
  delayMs: number;
  chunkDelayMs: number;
}

/** The mock, then every proxy pointed at it, each on its own free port. */
async function startTargets(
  mock: MockSettings,
  keyport: KeyportSetup,
  keyportRedis: KeyportSetup,
): Promise<Target[]> {
  const [mockPort, rawPort, floorPort, keyportPort, redisKeyportPort, portkeyPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const mockUrl = `http://${HOST}:${mockPort}`;
  const mockServer = spawnChild('mock upstream', [
    KEYPORT_BIN,
    'mock-upstream',
    '--host',
    HOST,
    '--port',
    String(mockPort),
    '--delay-ms',
    String(mock.delayMs),
    '--chunk-delay-ms',
    String(mock.chunkDelayMs),
  ]);
  const rawServer = spawnChild('raw proxy', [
    '--import',
    'tsx',
    RAW_PROXY,
    '--port',
    String(rawPort),
    '--upstream',
    mockUrl,
  ]);
  const floorServer = spawnChild('stack floor', [
    '--import',
    'tsx',
    STACK_FLOOR,
    '--port',
    String(floorPort),
    '--upstream',
    mockUrl,
  ]);
  const keyportServer = spawnChild('keyport serve', [KEYPORT_BIN, 'serve'], {
    KEYPORT_HOST: HOST,
    KEYPORT_PORT: String(keyportPort),
    KEYPORT_DATA_DIR: keyport.dataDir,
    KEYPORT_UPSTREAM_URL: `${mockUrl}/v1`,
    KEYPORT_MOCK_UPSTREAM: 'off',
    KEYPORT_LOG_LEVEL: 'warn',
  });
  const redisKeyportServer = spawnChild('keyport serve (Redis)', [KEYPORT_BIN, 'serve'], {
    KEYPORT_HOST: HOST,
    KEYPORT_PORT: String(redisKeyportPort),
    KEYPORT_DATA_DIR: keyportRedis.dataDir,
    KEYPORT_UPSTREAM_URL: `${mockUrl}/v1`,
    KEYPORT_MOCK_UPSTREAM: 'off',
    KEYPORT_LOG_LEVEL: 'warn',
    KEYPORT_REDIS_URL: REDIS_URL,
    KEYPORT_REDIS_KEY_PREFIX: `keyport-bench-${process.pid}:`,
  });
  const portkeyServer = spawnChild(
    'portkey',
    ['--import', PORTKEY_PRELOAD, PORTKEY_SERVER, `--port=${portkeyPort}`, '--headless'],
    { NODE_ENV: 'production' },
  );
  const rawUrl = `http://${HOST}:${rawPort}`;
  const floorUrl = `http://${HOST}:${floorPort}`;
  const keyportUrl = `http://${HOST}:${keyportPort}`;
  const redisKeyportUrl = `http://${HOST}:${redisKeyportPort}`;
  const portkeyUrl = `http://${HOST}:${portkeyPort}`;
  await Promise.all([
    waitReady(mockServer, `${mockUrl}/v1/models`),
    waitReady(rawServer, `${rawUrl}/v1/models`),
    waitReady(floorServer, `${floorUrl}/v1/models`),
    waitReady(keyportServer, `${keyportUrl}/healthz`),
    waitReady(redisKeyportServer, `${redisKeyportUrl}/healthz`),
    waitReady(portkeyServer, `${portkeyUrl}/`),
  ]);
  keyport.projectKey ??= await createProjectKey(keyportUrl, keyport);
  keyport.limitedKey ??= await createLimitedKey(keyportUrl, keyport);
  keyportRedis.limitedKey ??= await createLimitedKey(redisKeyportUrl, keyportRedis);
  // The upstream's credential, which direct, raw and Portkey pass through as is.
  const upstreamKey = { authorization: 'Bearer sk-bench-upstream' };
  return [
    { name: 'direct', url: mockUrl, headers: upstreamKey, server: mockServer },
    { name: 'raw', url: rawUrl, headers: upstreamKey, server: rawServer },
    { name: 'floor', url: floorUrl, headers: upstreamKey, server: floorServer },
    {
      name: 'keyport',
      url: keyportUrl,
      headers: { authorization: `Bearer ${keyport.projectKey}` },
      server: keyportServer,
    },
    {
      name: 'keyport-limits',
      url: keyportUrl,
      headers: { authorization: `Bearer ${keyport.limitedKey}` },
      server: keyportServer,
    },
    {
      name: 'keyport-redis',
      url: redisKeyportUrl,
      headers: { authorization: `Bearer ${keyportRedis.limitedKey}` },
      server: redisKeyportServer,
    },
    {
      name: 'portkey',
      url: portkeyUrl,
      headers: {
        ...upstreamKey,
        'x-portkey-provider': 'openai',
        'x-portkey-custom-host': `${mockUrl}/v1`,
      },
      server: portkeyServer,
    },
  ];
}

async function stopTargets(targets: Target[], rss: Map<TargetName, number>): Promise<void> {
  for (const target of targets) {
    const peak = peakRss(target.server);
    if (peak !== undefined) rss.set(target.name, Math.max(rss.get(target.name) ?? 0, peak));
  }
  await Promise.all([...new Set(targets.map((target) => target.server))].map(stopChild));
}

/** One plain and (with `streamed`) one streamed completion, which must come from the mock. */
async function checkReachesMock(target: Target, streamed: boolean): Promise<void> {
  const request = async (body: string) => {
    const response = await fetch(`${target.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...target.headers, 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, text: await response.text() };
  };
  const plain = await request(BODY);
  if (plain.status !== 200 || !plain.text.includes('"id":"chatcmpl-mock')) {
    throw new Error(`${LABELS[target.name]}: unexpected reply ${plain.status}: ${plain.text.slice(0, 500)}`);
  }
  if (!streamed) return;
  const stream = await request(STREAM_BODY);
  if (stream.status !== 200 || !stream.text.includes('chatcmpl-mock') || !stream.text.includes('[DONE]')) {
    throw new Error(
      `${LABELS[target.name]}: unexpected stream ${stream.status}: ${stream.text.slice(0, 500)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// Load

interface LoadResult {
  /** 2xx responses per second. */
  throughput: number;
  /** Sorted latencies of 2xx responses, ms. */
  latencies: Float64Array;
  failures: number;
}

async function load(
  target: Target,
  options: { connections: number; seconds: number; overallRate?: number },
): Promise<LoadResult> {
  const samples: number[] = [];
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${target.url}/v1/chat/completions`,
        method: 'POST',
        headers: { ...target.headers, 'content-type': 'application/json' },
        body: BODY,
        connections: options.connections,
        duration: options.seconds,
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
        timeout: 10,
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    // The histogram autocannon keeps rounds to whole milliseconds: keep every sample instead.
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) samples.push(responseTime);
    });
  });
  const latencies = Float64Array.from(samples).sort();
  return {
    throughput: result['2xx'] / result.duration,
    latencies,
    failures: result.non2xx + result.errors + result.timeouts,
  };
}

/**
 * Open loop: requests leave on a fixed schedule (1000/rate ms apart) whether or not earlier ones have
 * been answered, each timed from when it left. A late timer sends the overdue requests at once.
 */
async function paced(target: Target, rate: number, seconds: number): Promise<LoadResult> {
  const pool = new Pool(target.url, {
    connections: PACED_CONNECTIONS,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const samples: number[] = [];
  let failures = 0;
  const inFlight: Promise<void>[] = [];
  const send = () => {
    const started = performance.now();
    inFlight.push(
      pool
        .request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { ...target.headers, 'content-type': 'application/json' },
          body: BODY,
        })
        .then(async (response) => {
          await response.body.dump();
          if (response.statusCode >= 200 && response.statusCode < 300) {
            samples.push(performance.now() - started);
          } else failures++;
        })
        .catch(() => {
          failures++;
        }),
    );
  };
  const interval = 1000 / rate;
  const count = Math.round(seconds * rate);
  const start = performance.now();
  try {
    let sent = 0;
    while (sent < count) {
      const now = performance.now();
      while (sent < count && start + sent * interval <= now) {
        send();
        sent++;
      }
      const next = start + sent * interval - performance.now();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next)));
    }
    await Promise.all(inFlight);
  } finally {
    await pool.close();
  }
  return {
    throughput: samples.length / ((performance.now() - start) / 1000),
    latencies: Float64Array.from(samples).sort(),
    failures,
  };
}

interface StreamResult {
  /** Sorted times to the first `data:` chunk, ms. */
  firstChunk: Float64Array;
  failures: number;
}

async function firstChunks(target: Target, count: number): Promise<StreamResult> {
  const pool = new Pool(target.url, { connections: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const times: number[] = [];
  let failures = 0;
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      const response = await pool.request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { ...target.headers, 'content-type': 'application/json' },
        body: STREAM_BODY,
      });
      let first: number | undefined;
      let text = '';
      for await (const chunk of response.body) {
        text += (chunk as Buffer).toString('utf8');
        if (first === undefined && text.includes('data:')) first = performance.now() - started;
      }
      if (response.statusCode !== 200 || first === undefined || !text.includes('[DONE]')) failures++;
      else times.push(first);
    }
  } finally {
    await pool.close();
  }
  return { firstChunk: Float64Array.from(times).sort(), failures };
}

// ---------------------------------------------------------------------------------------------------
// Report

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

const ms = (value: number) => `${value.toFixed(2)} ms`;
const signedMs = (value: number) => `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(2)} ms`;
const perSecond = (value: number) => `${Math.round(value).toLocaleString('en-US')} /s`;
const mib = (bytes: number | undefined) =>
  bytes === undefined ? 'n/a' : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const us = (value: number | undefined) => (value === undefined ? 'n/a' : `${Math.round(value)} µs`);
const check = (ok: boolean) => (ok ? '✓' : '✗');

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function main(): Promise<void> {
  const loadAtStart = os.loadavg()[0] ?? 0;
  log(`Gateway benchmark on ${HOST}: ${TARGETS.map((t) => LABELS[t]).join(', ')}`);
  log('keyport init (two temporary data directories: in-process limits, Redis limits)…');
  const keyport = await initKeyport();
  const keyportRedis = await initKeyport();
  const rss = new Map<TargetName, number>();
  const saturated = new Map<TargetName, LoadResult>();
  /** Server CPU time per request in the saturated run, µs. */
  const cpuPerRequest = new Map<TargetName, number>();
  const fixed = new Map<TargetName, LoadResult>();
  const open = new Map<TargetName, LoadResult>();
  const sse = new Map<TargetName, StreamResult>();
  try {
    let targets: Target[] = [];
    if (phase(1)) log(`\n1. Saturated throughput: ${SATURATED.connections} connections, mock delay 0`);
    if (phase(1)) targets = await startTargets({ delayMs: 0, chunkDelayMs: 0 }, keyport, keyportRedis);
    try {
      for (const target of targets.filter(measured)) {
        await checkReachesMock(target, true);
        await load(target, { connections: SATURATED.connections, seconds: SATURATED.warmupSeconds });
        const cpuBefore = cpuSeconds(target.server);
        const result = await load(target, { connections: SATURATED.connections, seconds: SATURATED.seconds });
        const cpuAfter = cpuSeconds(target.server);
        saturated.set(target.name, result);
        const served = result.throughput * SATURATED.seconds;
        if (cpuBefore !== undefined && cpuAfter !== undefined && served > 0) {
          cpuPerRequest.set(target.name, ((cpuAfter - cpuBefore) * 1e6) / served);
        }
        log(
          `   ${LABELS[target.name]}: ${perSecond(result.throughput)}, ${us(cpuPerRequest.get(target.name))} of server CPU per request, failures ${result.failures}`,
        );
      }
    } finally {
      await stopTargets(targets, rss);
    }

    targets = [];
    if (phase(2)) log(`\n2. Fixed rate: ${FIXED.rate} req/s, mock delay ${FIXED.mockDelayMs} ms`);
    if (phase(2))
      targets = await startTargets({ delayMs: FIXED.mockDelayMs, chunkDelayMs: 0 }, keyport, keyportRedis);
    try {
      for (const target of targets.filter(measured)) {
        await checkReachesMock(target, false);
        const rate = { connections: FIXED.connections, overallRate: FIXED.rate };
        await load(target, { ...rate, seconds: FIXED.warmupSeconds });
        const result = await load(target, { ...rate, seconds: FIXED.seconds });
        fixed.set(target.name, result);
        await paced(target, FIXED.rate, FIXED.warmupSeconds);
        const steady = await paced(target, FIXED.rate, FIXED.seconds);
        open.set(target.name, steady);
        const show = (r: LoadResult) =>
          `p50 ${ms(percentile(r.latencies, 0.5))}, p99 ${ms(percentile(r.latencies, 0.99))}, ${perSecond(r.throughput)}, failures ${r.failures}`;
        log(`   ${LABELS[target.name]}: autocannon ${show(result)}; open loop ${show(steady)}`);
      }
    } finally {
      await stopTargets(targets, rss);
    }

    targets = [];
    if (phase(3))
      log(
        `\n3. SSE time to first chunk: ${SSE.requests} sequential streams, ${SSE.chunkDelayMs} ms between chunks`,
      );
    if (phase(3))
      targets = await startTargets({ delayMs: 0, chunkDelayMs: SSE.chunkDelayMs }, keyport, keyportRedis);
    try {
      for (const target of targets.filter(measured)) {
        await checkReachesMock(target, true);
        await firstChunks(target, SSE.warmup);
        const result = await firstChunks(target, SSE.requests);
        sse.set(target.name, result);
        log(
          `   ${LABELS[target.name]}: p50 ${ms(percentile(result.firstChunk, 0.5))}, p99 ${ms(percentile(result.firstChunk, 0.99))}, failures ${result.failures}`,
        );
      }
    } finally {
      await stopTargets(targets, rss);
    }
  } finally {
    rmSync(keyport.dataDir, { recursive: true, force: true });
    rmSync(keyportRedis.dataDir, { recursive: true, force: true });
  }

  if (ONLY_TARGETS || ONLY_PHASES) {
    log('\nPartial run (KEYPORT_BENCH_TARGETS / KEYPORT_BENCH_PHASES): no table.');
    return;
  }
  // -------------------------------------------------------------------------------------------------
  const get = <T>(map: Map<TargetName, T>, name: TargetName) => map.get(name) as T;
  const thr = (name: TargetName) => get(saturated, name).throughput;
  const p = (map: Map<TargetName, LoadResult>, name: TargetName, q: number) =>
    percentile(get(map, name).latencies, q);
  const added = (map: Map<TargetName, LoadResult>, name: TargetName, q: number) =>
    p(map, name, q) - p(map, 'direct', q);
  const ttfc = (name: TargetName, q: number) => percentile(get(sse, name).firstChunk, q);
  const failures = [...saturated.values(), ...fixed.values(), ...open.values(), ...sse.values()].reduce(
    (sum, r) => sum + r.failures,
    0,
  );

  const keyportVsRaw = thr('keyport') / thr('raw');
  const keyportVsPortkey = thr('keyport') / thr('portkey');
  const latencyGoals = (map: Map<TargetName, LoadResult>) =>
    `p50 ≤ 1 ms ${check(added(map, 'keyport', 0.5) <= 1)} · p99 ≤ 5 ms ${check(added(map, 'keyport', 0.99) <= 5)}`;
  const thrFloor = thr('floor') / thr('raw');
  /** Keyport over raw, over the floor and over Portkey, for one measure. */
  const ratios = (of: (name: TargetName) => number) => [
    ratio(of('keyport'), of('raw')),
    ratio(of('keyport'), of('floor')),
    ratio(of('keyport'), of('portkey')),
  ];
  const blank = (n: number) => Array.from({ length: n }, () => '');
  const rows: string[][] = [
    [
      `saturated throughput (${SATURATED.connections} conns, ${SATURATED.seconds} s, mock delay 0)`,
      ...TARGETS.map((t) => perSecond(thr(t))),
      ...ratios(thr),
      `≥ 0.8× raw ${check(keyportVsRaw >= 0.8)} (the floor alone: ${ratio(thr('floor'), thr('raw'))}${thrFloor < 0.8 ? ', under the goal too' : ''}) · ≥ 2× Portkey ${check(keyportVsPortkey >= 2)}`,
    ],
    [
      'server CPU per request in that run (user + system, all threads)',
      ...TARGETS.map((t) => us(cpuPerRequest.get(t))),
      ...ratios((t) => cpuPerRequest.get(t) ?? Number.NaN),
      'recorded',
    ],
    ...(
      [
        [fixed, `autocannon overallRate, ${FIXED.connections} conns`],
        [open, 'open loop, evenly spaced'],
      ] as const
    ).flatMap(([map, how]) => [
      [
        `latency p50 / p99 at ${FIXED.rate} req/s, ${how} (mock delay ${FIXED.mockDelayMs} ms)`,
        ...TARGETS.map((t) => `${ms(p(map, t, 0.5))} / ${ms(p(map, t, 0.99))}`),
        ...blank(3),
        `rate achieved: ${TARGETS.map((t) => Math.round(get(map, t).throughput)).join(' / ')} /s`,
      ],
      [
        `added latency over direct, p50 / p99 (${how})`,
        '—',
        ...TARGETS.filter((t) => t !== 'direct').map(
          (t) => `${signedMs(added(map, t, 0.5))} / ${signedMs(added(map, t, 0.99))}`,
        ),
        ...blank(3),
        latencyGoals(map),
      ],
    ]),
    [
      'limits: Redis over in-process, added p50 / p99 (open loop)',
      ...TARGETS.map((t) =>
        t === 'keyport-redis'
          ? `${signedMs(p(open, 'keyport-redis', 0.5) - p(open, 'keyport-limits', 0.5))} / ${signedMs(p(open, 'keyport-redis', 0.99) - p(open, 'keyport-limits', 0.99))}`
          : '',
      ),
      ...blank(3),
      `p50 ≤ 0.3 ms ${check(p(open, 'keyport-redis', 0.5) - p(open, 'keyport-limits', 0.5) <= 0.3)}`,
    ],
    [
      `SSE time to first chunk p50 / p99 (${SSE.requests} sequential streams)`,
      ...TARGETS.map((t) => `${ms(ttfc(t, 0.5))} / ${ms(ttfc(t, 0.99))}`),
      ...ratios((t) => ttfc(t, 0.5)),
      'recorded',
    ],
    [
      'peak RSS of the server process',
      ...TARGETS.map((t) => mib(rss.get(t))),
      ...ratios((t) => rss.get(t) ?? Number.NaN),
      'recorded',
    ],
  ];

  console.log(
    `\nMachine: ${machine()} · load average at start ${loadAtStart.toFixed(2)}\nCommand: npm run bench:gateway${failures > 0 ? `\nFailed requests: ${failures} (see the log above)` : ''}\n`,
  );
  console.log(
    `| benchmark | ${TARGETS.map((t) => LABELS[t]).join(' | ')} | Keyport / raw | Keyport / floor | Keyport / Portkey | goal |`,
  );
  console.log(`|${' --- |'.repeat(TARGETS.length + 5)}`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
}

const deadline = setTimeout(() => {
  log(`gateway benchmark: not done after ${DEADLINE_MS / 60_000} minutes, stopping`);
  killAllNow();
  process.exit(1);
}, DEADLINE_MS);
deadline.unref();

try {
  await main();
} catch (error) {
  log(`gateway benchmark failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
} finally {
  await Promise.all([...children].map(stopChild));
}
