/**
 * The main thread's handle on the embedded database running in its own thread
 * (`pglite-worker.ts`). It has the part of PGlite's interface Drizzle's PGlite driver uses —
 * `query(sql, params, { rowMode })`, `transaction(fn)`, `exec` — so the same Drizzle code runs on
 * it, while the WebAssembly Postgres works on another core and the event loop stays free.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { SerializedError, WorkerReply, WorkerRequest } from './pglite-worker.ts';

type Without<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
type Request = Without<WorkerRequest, 'id'>;

export interface ProxyResults {
  rows: unknown[];
  fields: { name: string; dataTypeID: number }[];
  affectedRows?: number;
}

interface QueryOptions {
  rowMode?: 'object' | 'array';
}

/** A database error from the worker, with Postgres's fields (`code`, `constraint`, …). */
export class PGliteWorkerError extends Error {
  constructor(serialized: SerializedError) {
    super(serialized.message);
    this.name = serialized.name;
    Object.assign(this, serialized.fields);
  }
}

/** The worker's entry: compiled JavaScript in dist/, else the TypeScript source through tsx. */
function workerEntry(): URL {
  const compiled = new URL('./pglite-worker.js', import.meta.url);
  if (existsSync(compiled)) return compiled;
  return new URL('./pglite-worker-boot.mjs', import.meta.url);
}

export interface PGliteProxyOptions {
  dataDir: string;
  startParams: string[];
  loadDataDir?: Blob | File | undefined;
  /** The thread died and a new one was started on the data directory (for the log). */
  onRestart?: (cause: Error) => void;
}

/** At most one restart a second: a database that cannot open again fails fast meanwhile. */
const RESTART_INTERVAL_MS = 1000;

/**
 * If the thread dies (a WebAssembly abort, an out-of-memory kill of the thread), the calls it had
 * fail and the next call starts a new thread on the same data directory: Postgres recovers it
 * from its write-ahead log as after any crash, and what was committed is there. An in-memory
 * database dies with its thread.
 */
export class PGliteProxy {
  #worker!: Worker;
  /** Which thread: a transaction begun on an earlier one is gone with it. */
  #generation = 0;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  #nextId = 1;
  /** Why the current thread is gone, until a new one is open. */
  #dead: Error | undefined;
  #restarting: Promise<void> | undefined;
  #restartedAt = 0;
  #closed = false;

  private constructor(private readonly options: PGliteProxyOptions) {
    this.#spawn();
  }

  static async open(options: PGliteProxyOptions) {
    const proxy = new PGliteProxy(options);
    try {
      await proxy.#open(options.loadDataDir);
    } catch (error) {
      proxy.#closed = true;
      await proxy.#worker.terminate();
      throw error;
    }
    return proxy;
  }

  get generation(): number {
    return this.#generation;
  }

  #spawn(): void {
    const worker = new Worker(workerEntry());
    this.#worker = worker;
    this.#generation += 1;
    this.#dead = undefined;
    worker.on('message', (reply: WorkerReply) => {
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(new PGliteWorkerError(reply.error));
    });
    const fail = (error: Error) => {
      if (this.#worker !== worker || this.#dead) return;
      this.#dead = error;
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the database thread exited (${code})`)));
  }

  async #open(loadDataDir?: Blob | File): Promise<void> {
    const image = loadDataDir ? await loadDataDir.arrayBuffer() : undefined;
    await this.#send(
      {
        op: 'open',
        dataDir: this.options.dataDir,
        startParams: this.options.startParams,
        ...(image ? { loadDataDir: image } : {}),
      },
      image ? [image] : [],
    );
  }

  /** A new thread on the data directory, once per death (and not more than once a second). */
  #restart(cause: Error): Promise<void> {
    if (this.#restarting) return this.#restarting;
    if (this.options.dataDir === 'memory' || Date.now() - this.#restartedAt < RESTART_INTERVAL_MS) {
      return Promise.reject(cause);
    }
    this.#restartedAt = Date.now();
    this.#restarting = (async () => {
      void this.#worker.terminate();
      this.#spawn();
      try {
        await this.#open();
      } catch (error) {
        this.#dead = error as Error;
        throw error;
      }
      this.options.onRestart?.(cause);
    })().finally(() => {
      this.#restarting = undefined;
    });
    return this.#restarting;
  }

  /** Waits for a live thread: the one running, or one started now in place of a dead one. */
  async #alive(): Promise<void> {
    if (this.#closed) throw new Error('the database is closed');
    if (this.#restarting) await this.#restarting;
    if (this.#dead) await this.#restart(this.#dead);
  }

  async #call<T>(request: Request, generation?: number): Promise<T> {
    await this.#alive();
    if (generation !== undefined && generation !== this.#generation) {
      throw new Error(
        'the database thread restarted: the transaction was lost, and nothing of it was committed',
      );
    }
    return this.#send<T>(request);
  }

  #send<T>(request: Request, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.postMessage({ ...request, id }, transfer);
    });
  }

  /** Begins a transaction on the thread that is alive now, and says which one that is. */
  async #begin(): Promise<{ id: number; generation: number }> {
    await this.#alive();
    const generation = this.#generation; // read as the request leaves: its answer is that thread's
    const id = await this.#send<number>({ op: 'begin' });
    return { id, generation };
  }

  query<T = unknown>(
    sql: string,
    params: unknown[] = [],
    options: QueryOptions = {},
    tx?: { id: number; generation: number },
  ): Promise<ProxyResults & { rows: T[] }> {
    return this.#call(
      {
        op: 'query',
        sql,
        params,
        rowMode: options.rowMode ?? 'object',
        ...(tx !== undefined ? { tx: tx.id } : {}),
      },
      tx?.generation,
    );
  }

  exec(sql: string, tx?: { id: number; generation: number }): Promise<ProxyResults[]> {
    return this.#call({ op: 'exec', sql, ...(tx !== undefined ? { tx: tx.id } : {}) }, tx?.generation);
  }

  /** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
  async transaction<T>(fn: (tx: ProxyTransaction) => Promise<T>): Promise<T> {
    const handle = await this.#begin();
    const { id } = handle;
    const tx = new ProxyTransaction(this, handle);
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      await this.#call({ op: 'rollback', tx: id }, handle.generation).catch(() => {});
      throw error;
    }
    if (tx.rolledBack) await this.#call({ op: 'rollback', tx: id }, handle.generation);
    else await this.#call({ op: 'commit', tx: id }, handle.generation);
    return result;
  }

  /** The data directory as a tarball (tests start databases from a template). */
  async dumpDataDir(): Promise<Blob> {
    return new Blob([await this.#call<ArrayBuffer>({ op: 'dump' })]);
  }

  /** Tests: the thread dies as a crash would kill it. */
  async simulateCrash(): Promise<void> {
    await this.#worker.terminate();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#restarting) await this.#restarting.catch(() => {});
    try {
      if (!this.#dead) await this.#send({ op: 'close' });
    } finally {
      await this.#worker.terminate();
    }
  }
}

/** A transaction's handle, as Drizzle's PGlite session expects one. */
export class ProxyTransaction {
  rolledBack = false;
  constructor(
    private readonly proxy: PGliteProxy,
    private readonly handle: { id: number; generation: number },
  ) {}

  query<T = unknown>(sql: string, params: unknown[] = [], options: QueryOptions = {}) {
    return this.proxy.query<T>(sql, params, options, this.handle);
  }

  exec(sql: string) {
    return this.proxy.exec(sql, this.handle);
  }

  async rollback(): Promise<void> {
    this.rolledBack = true;
  }

  get closed(): boolean {
    return false;
  }
}
