/**
 * Real Keyport processes for end-to-end tests: `node bin/keyport.js …` as a user would run it,
 * on 127.0.0.1 only, with every wait bounded and every child killed when the test file ends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const KEYPORT_BIN = path.join(REPO_ROOT, 'bin', 'keyport.js');

/** Any whole Keyport key, whatever its kind (prefix `kp`). */
export const KEY_IN_TEXT = /\bkp_(proj|svc|admin)_[0-9A-Za-z]{46}\b/g;

/** How long one CLI command or one server start may take on a slow, busy CI machine. */
const COMMAND_TIMEOUT_MS = 45_000;
const READY_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 20_000;

const children = new Set<ChildProcess>();
// Last resort: a test that failed before its cleanup still leaves no process behind.
process.once('exit', () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A free TCP port on 127.0.0.1: listen on port 0, read the port, close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

export function tempDir(label: string): string {
  return mkdtempSync(path.join(tmpdir(), `keyport-e2e-${label}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/**
 * The environment of a child: this process's, without any KEYPORT_* variable (a developer's
 * shell may export KEYPORT_ADMIN_KEY or KEYPORT_DATABASE_URL), plus the given ones.
 */
export function childEnv(vars: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!name.startsWith('KEYPORT_')) env[name] = value;
  for (const [name, value] of Object.entries(vars)) if (value !== undefined) env[name] = value;
  return env;
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function spawnKeyport(args: string[], env: NodeJS.ProcessEnv, input?: string): ChildProcess {
  const child = spawn(process.execPath, [KEYPORT_BIN, ...args], {
    cwd: REPO_ROOT,
    env,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) child.stdin?.end(input);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Runs `keyport <args>` to completion (killed, and an error thrown, after the timeout). */
export async function runKeyport(
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = COMMAND_TIMEOUT_MS,
  /** Piped to its standard input (e.g. `init --password-stdin`). */
  input?: string,
): Promise<CommandResult> {
  const child = spawnKeyport(args, childEnv(env), input);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`keyport ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
  });
  try {
    const status = await Promise.race([exited(child), timeout]);
    // 'exit' can come before the pipes are drained.
    await Promise.all([streamEnd(child.stdout), streamEnd(child.stderr)]);
    return { ...status, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** After 'exit', the rest of the output (bounded: a pipe held open elsewhere does not hang us). */
function streamEnd(stream: NodeJS.ReadableStream | null): Promise<void> {
  if (!stream || (stream as NodeJS.ReadableStream & { readableEnded?: boolean }).readableEnded) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5_000);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    stream.once('end', done);
    stream.once('close', done);
  });
}

/** `keyport <args>` that must succeed; its stdout. */
export async function keyport(args: string[], env: Record<string, string | undefined> = {}): Promise<string> {
  const result = await runKeyport(args, env);
  if (result.code !== 0) {
    throw new Error(
      `keyport ${args.join(' ')} exited ${result.code ?? result.signal}\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout;
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** Everything the process wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Waits (bounded) until stdout matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM (or the given signal) and wait for the exit; SIGKILL if it does not come. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `keyport serve` (or `start`) and waits until it says it is running on its port and
 * /healthz answers; throws, with the process's output, if it exits first or does not become
 * ready in time. A `serve` that lost its free port to another process (EADDRINUSE) is retried
 * on another one.
 */
export async function startKeyport(
  command: 'serve' | 'start',
  env: Record<string, string | undefined>,
  options: { port?: number; timeoutMs?: number } = {},
): Promise<ServerProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(
        command,
        env,
        options.port ?? (await freePort()),
        options.timeoutMs ?? READY_TIMEOUT_MS,
      );
    } catch (error) {
      const retry =
        error instanceof PortTakenError && command === 'serve' && options.port === undefined && attempt < 3;
      if (!retry) throw error;
    }
  }
}

class PortTakenError extends Error {}

async function startOnce(
  command: 'serve' | 'start',
  env: Record<string, string | undefined>,
  port: number,
  timeoutMs: number,
): Promise<ServerProcess> {
  const child = spawnKeyport([command], childEnv({ KEYPORT_PORT: String(port), ...env }));
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const url = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    child,
    url,
    port,
    stdout: () => stdout,
    stderr: () => stderr,
    async waitForOutput(pattern, waitMs = READY_TIMEOUT_MS) {
      const deadline = Date.now() + waitMs;
      for (;;) {
        const match = stdout.match(pattern);
        if (match) return match;
        if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
          throw new Error(
            `keyport ${command}: no output matching ${pattern}\nstdout:\n${stdout}\nstderr:\n${stderr}`,
          );
        }
        await sleep(50);
      }
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS);
      });
      const status = await Promise.race([exited(child), late]);
      clearTimeout(timer);
      if (status === 'late') {
        child.kill('SIGKILL');
        await exited(child);
        throw new Error(
          `keyport ${command} did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}\n${stdout}\n${stderr}`,
        );
      }
      await Promise.all([streamEnd(child.stdout), streamEnd(child.stderr)]);
      return status;
    },
  };
  // Printed once this process listens: /healthz alone could be answered by another process
  // that happens to hold the port.
  const running = `Keyport is running at ${url}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await Promise.all([streamEnd(child.stdout), streamEnd(child.stderr)]);
      const message = `keyport ${command} exited (${child.exitCode ?? child.signalCode}) before it was ready\nstdout:\n${stdout}\nstderr:\n${stderr}`;
      // Keyport names a taken port in words (KEYPORT_PORT: … is already in use), not by errno.
      const portTaken = stderr.includes('EADDRINUSE') || /KEYPORT_PORT: \S+ is already in use/.test(stderr);
      throw portTaken ? new PortTakenError(message) : new Error(message);
    }
    if (stdout.includes(running)) {
      try {
        const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
        if (response.ok) return server;
      } catch {
        // not answering yet
      }
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited(child);
      throw new Error(
        `keyport ${command} was not ready within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`,
      );
    }
    await sleep(100);
  }
}

/** Kills (SIGKILL) every child still running; for afterAll. */
export async function killAll(): Promise<void> {
  const running = [...children].filter((child) => child.exitCode === null && child.signalCode === null);
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(running.map(exited));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface HttpResult<T = unknown> {
  status: number;
  body: T;
}

/** One JSON request to the Admin API (`/v1/organization…`) with a bearer key. */
export async function adminApi<T = Record<string, unknown>>(
  baseUrl: string,
  key: string,
  method: 'GET' | 'POST' | 'DELETE',
  route: string,
  body?: unknown,
): Promise<HttpResult<T>> {
  const response = await fetch(`${baseUrl}/v1/organization${route}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as T };
}

/** Like adminApi, but the request must succeed (2xx). */
export async function adminOk<T = Record<string, unknown>>(
  baseUrl: string,
  key: string,
  method: 'GET' | 'POST' | 'DELETE',
  route: string,
  body?: unknown,
): Promise<T> {
  const result = await adminApi<T>(baseUrl, key, method, route, body);
  if (result.status < 200 || result.status > 299) {
    throw new Error(`${method} ${route} → ${result.status} ${JSON.stringify(result.body)}`);
  }
  return result.body;
}

export interface AuthProbe {
  status: number;
  code: string | null;
  message: string;
}

/**
 * What the server thinks of a secret, seen from outside: it is sent to an Admin API route.
 * An admin key that is valid gets 200; a valid project or service-account key gets
 * 403 `missing_scope`; a secret that does not authenticate gets 401.
 */
export async function probeKey(baseUrl: string, secret: string): Promise<AuthProbe> {
  const result = await adminApi<{ error?: { code: string | null; message: string } }>(
    baseUrl,
    secret,
    'GET',
    '/projects?limit=1',
  );
  return {
    status: result.status,
    code: result.body.error?.code ?? null,
    message: result.body.error?.message ?? '',
  };
}

/** Every regular file under `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...filesUnder(file));
    else if (entry.isFile()) files.push(file);
  }
  return files;
}

/** The files under `dir` whose raw bytes contain `needle`. */
export function filesContaining(files: { file: string; bytes: Buffer }[], needle: string): string[] {
  const bytes = Buffer.from(needle, 'utf8');
  return files.filter((f) => f.bytes.indexOf(bytes) !== -1).map((f) => f.file);
}

export function readAll(dir: string): { file: string; bytes: Buffer }[] {
  return filesUnder(dir).map((file) => ({ file, bytes: readFileSync(file) }));
}
