/**
 * The embedded database's thread. PGlite runs Postgres in WebAssembly, synchronously: on the main
 * thread every query (a usage batch, a key lookup) would stall the event loop for its whole
 * duration. Here it has a thread of its own, and the main thread talks to it with messages
 * (`pglite-proxy.ts`). One PGlite per data directory still holds: only this thread opens it.
 *
 * Messages in: open, query (optionally inside a transaction), exec, begin/commit/rollback, dump,
 * close. Every reply carries the request's id; errors travel as their message, code and details.
 */
import { parentPort } from 'node:worker_threads';
import { PGlite, type Transaction, types } from '@electric-sql/pglite';
import { DurableNodeFS } from './durable-node-fs.ts';

export type WorkerRequest =
  | { id: number; op: 'open'; dataDir: string; startParams: string[]; loadDataDir?: ArrayBuffer }
  | { id: number; op: 'query'; sql: string; params: unknown[]; rowMode: 'object' | 'array'; tx?: number }
  | { id: number; op: 'exec'; sql: string; tx?: number }
  | { id: number; op: 'begin' }
  | { id: number; op: 'commit' | 'rollback'; tx: number }
  | { id: number; op: 'dump' }
  | { id: number; op: 'close' };

export type WorkerReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: SerializedError };

export interface SerializedError {
  name: string;
  message: string;
  /** Postgres's SQLSTATE and details (a unique violation is 23505). */
  fields: Record<string, unknown>;
}

/** Timestamps as Postgres prints them: Drizzle parses them itself (as its PGlite driver asks). */
const RAW = (value: string) => value;
const RAW_TYPES = {
  [types.TIMESTAMP]: RAW,
  [types.TIMESTAMPTZ]: RAW,
  [types.INTERVAL]: RAW,
  [types.DATE]: RAW,
  1231: RAW, // numeric[]
  1115: RAW, // timestamp[]
  1185: RAW, // timestamptz[]
  1187: RAW, // interval[]
  1182: RAW, // date[]
};

let db: PGlite | undefined;
let nextTx = 1;
/** Open transactions: their handle, and how to end them. */
const transactions = new Map<
  number,
  { tx: Transaction; end: (commit: boolean) => void; done: Promise<void> }
>();

function serialize(error: unknown): SerializedError {
  const e = error as Error & Record<string, unknown>;
  const fields: Record<string, unknown> = {};
  for (const key of [
    'code',
    'detail',
    'hint',
    'constraint',
    'table',
    'column',
    'schema',
    'severity',
    'position',
  ]) {
    if (e?.[key] !== undefined) fields[key] = e[key];
  }
  return { name: e?.name ?? 'Error', message: e?.message ?? String(error), fields };
}

function target(tx: number | undefined): PGlite | Transaction {
  if (tx === undefined) return db!;
  const open = transactions.get(tx);
  if (!open) throw new Error(`transaction ${tx} is not open`);
  return open.tx;
}

async function handle(request: WorkerRequest): Promise<unknown> {
  switch (request.op) {
    case 'open': {
      db = await PGlite.create({
        ...(request.dataDir === 'memory' ? {} : { fs: new DurableNodeFS(request.dataDir) }),
        ...(request.loadDataDir ? { loadDataDir: new Blob([request.loadDataDir]) } : {}),
        startParams: request.startParams,
      });
      return null;
    }
    case 'query': {
      const result = await target(request.tx).query(request.sql, request.params, {
        rowMode: request.rowMode,
        parsers: RAW_TYPES,
      });
      return { rows: result.rows, fields: result.fields, affectedRows: result.affectedRows };
    }
    case 'exec': {
      const results = await target(request.tx).exec(request.sql);
      return results.map((r) => ({ rows: r.rows, fields: r.fields, affectedRows: r.affectedRows }));
    }
    case 'begin': {
      const id = nextTx++;
      return new Promise<number>((resolveBegin, rejectBegin) => {
        let end!: (commit: boolean) => void;
        const ended = new Promise<boolean>((resolve) => {
          end = resolve;
        });
        const done = db!
          .transaction(async (tx) => {
            transactions.set(id, { tx, end, done });
            resolveBegin(id);
            if (!(await ended)) await tx.rollback();
          })
          .then(
            () => undefined,
            (error: unknown) => {
              // BEGIN itself failed: the caller learns at once; otherwise commit/rollback reports it.
              if (!transactions.has(id)) rejectBegin(error);
              throw error;
            },
          )
          .finally(() => transactions.delete(id));
        done.catch(() => {});
      });
    }
    case 'commit':
    case 'rollback': {
      const open = transactions.get(request.tx);
      if (!open) throw new Error(`transaction ${request.tx} is not open`);
      open.end(request.op === 'commit');
      await open.done;
      return null;
    }
    case 'dump': {
      const blob = await db!.dumpDataDir('none');
      return await blob.arrayBuffer();
    }
    case 'close': {
      await db?.close();
      db = undefined;
      return null;
    }
  }
}

parentPort?.on('message', (request: WorkerRequest) => {
  handle(request).then(
    (value) => {
      const transfer = value instanceof ArrayBuffer ? [value] : [];
      parentPort!.postMessage({ id: request.id, ok: true, value } satisfies WorkerReply, transfer);
    },
    (error: unknown) =>
      parentPort!.postMessage({ id: request.id, ok: false, error: serialize(error) } satisfies WorkerReply),
  );
});
