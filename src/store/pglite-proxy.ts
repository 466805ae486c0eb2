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

export class PGliteProxy {
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  #nextId = 1;
  #exited: Error | undefined;

  private constructor() {
    this.#worker = new Worker(workerEntry());
    this.#worker.on('message', (reply: WorkerReply) => {
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(new PGliteWorkerError(reply.error));
    });
    const fail = (error: Error) => {
      this.#exited = error;
      for (const pending of this.#pending.values()) pending.reject(error);
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`the database thread exited (${code})`)));
  }

  static async open(options: {
    dataDir: string;
    startParams: string[];
    loadDataDir?: Blob | File | undefined;
  }) {
    const proxy = new PGliteProxy();
    const loadDataDir = options.loadDataDir ? await options.loadDataDir.arrayBuffer() : undefined;
    try {
      await proxy.#call(
        {
          op: 'open',
          dataDir: options.dataDir,
          startParams: options.startParams,
          ...(loadDataDir ? { loadDataDir } : {}),
        },
        loadDataDir ? [loadDataDir] : [],
      );
    } catch (error) {
      await proxy.#worker.terminate();
      throw error;
    }
    return proxy;
  }

  #call<T>(request: Request, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.postMessage({ ...request, id }, transfer);
    });
  }

  query<T = unknown>(
    sql: string,
    params: unknown[] = [],
    options: QueryOptions = {},
    tx?: number,
  ): Promise<ProxyResults & { rows: T[] }> {
    return this.#call({
      op: 'query',
      sql,
      params,
      rowMode: options.rowMode ?? 'object',
      ...(tx !== undefined ? { tx } : {}),
    });
  }

  exec(sql: string, tx?: number): Promise<ProxyResults[]> {
    return this.#call({ op: 'exec', sql, ...(tx !== undefined ? { tx } : {}) });
  }

  /** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
  async transaction<T>(fn: (tx: ProxyTransaction) => Promise<T>): Promise<T> {
    const id = await this.#call<number>({ op: 'begin' });
    const tx = new ProxyTransaction(this, id);
    let result: T;
    try {
      result = await fn(tx);
    } catch (error) {
      await this.#call({ op: 'rollback', tx: id }).catch(() => {});
      throw error;
    }
    if (tx.rolledBack) await this.#call({ op: 'rollback', tx: id });
    else await this.#call({ op: 'commit', tx: id });
    return result;
  }

  /** The data directory as a tarball (tests start databases from a template). */
  async dumpDataDir(): Promise<Blob> {
    return new Blob([await this.#call<ArrayBuffer>({ op: 'dump' })]);
  }

  async close(): Promise<void> {
    if (this.#exited) return;
    try {
      await this.#call({ op: 'close' });
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
    private readonly id: number,
  ) {}

  query<T = unknown>(sql: string, params: unknown[] = [], options: QueryOptions = {}) {
    return this.proxy.query<T>(sql, params, options, this.id);
  }

  exec(sql: string) {
    return this.proxy.exec(sql, this.id);
  }

  async rollback(): Promise<void> {
    this.rolledBack = true;
  }

  get closed(): boolean {
    return false;
  }
}
