/**
 * Opens the database: PGlite in a data directory (the embedded default) or PostgreSQL when a
 * URL is given. Both get the same Drizzle schema and the same migrations.
 */
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import { lockDataDir } from './data-dir-lock.ts';
import { DurableNodeFS } from './durable-node-fs.ts';
import { PGliteProxy } from './pglite-proxy.ts';
import * as schema from './schema.ts';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
/** A transaction handle; repositories accept either. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export interface Store {
  db: Db;
  dialect: 'pglite' | 'postgres';
  /** Where the data lives, for logs: a directory, "memory" or a URL without its password. */
  location: string;
  close(): Promise<void>;
  /** PostgreSQL only: the pool, for LISTEN/NOTIFY and raw access in tests. */
  pool?: pg.Pool;
  /** PGlite only: in-thread, or the handle on its own thread. */
  pglite?: PGlite | PGliteProxy;
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('./migrations', import.meta.url));

/** PGlite's defaults without `-F`, so the backend itself asks for fsync (DurableNodeFS performs it). */
const PGLITE_START_PARAMS = [
  '--single',
  '-O',
  '-j',
  '-c',
  'search_path=public',
  '-c',
  'exit_on_error=false',
  '-c',
  'log_checkpoints=false',
  '-c',
  'max_worker_processes=0',
  '-c',
  'max_parallel_workers=0',
  '-c',
  'max_parallel_workers_per_gather=0',
  '-c',
  'io_method=sync',
  '-c',
  'max_parallel_maintenance_workers=0',
];

export interface OpenStoreOptions {
  /** postgres://… for PostgreSQL; otherwise PGlite. */
  databaseUrl?: string | undefined;
  /** PGlite data directory, or "memory" for a throw-away database (tests). */
  dataDir?: string;
  /** A PGlite data directory tarball to start from instead of running initdb (tests). */
  loadDataDir?: Blob | File;
  poolSize?: number;
  /**
   * PGlite on a thread of its own (default), so its queries never stall the event loop; false
   * runs it on the calling thread.
   */
  pgliteThread?: boolean;
  /** PGlite's thread died and was started again on the data directory (for the log). */
  onPgliteRestart?: (cause: Error) => void;
}

export async function openStore(options: OpenStoreOptions): Promise<Store> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options.poolSize ?? 10);
  return openPglite(
    options.dataDir ?? './.keyport',
    options.loadDataDir,
    options.pgliteThread ?? true,
    options.onPgliteRestart,
  );
}

async function openPostgres(url: string, poolSize: number): Promise<Store> {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const db = drizzlePg(pool, { schema }) as unknown as Db;
  // Several instances may boot at once: one migrates, the others wait on the advisory lock.
  const client = await pool.connect();
  try {
    await client.query('select pg_advisory_lock(7242011)');
    await migratePg(drizzlePg(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
  } finally {
    await client.query('select pg_advisory_unlock(7242011)').catch(() => {});
    client.release();
  }
  return {
    db,
    dialect: 'postgres',
    location: redactUrl(url),
    pool,
    close: () => pool.end(),
  };
}

async function openPglite(
  dataDir: string,
  loadDataDir: Blob | File | undefined,
  thread: boolean,
  onRestart: ((cause: Error) => void) | undefined,
): Promise<Store> {
  const inMemory = dataDir === 'memory';
  const unlock = inMemory ? () => {} : lockDataDir(dataDir);
  let pglite: PGlite | PGliteProxy;
  let db: Db;
  try {
    if (thread) {
      pglite = await PGliteProxy.open({
        dataDir,
        startParams: PGLITE_START_PARAMS,
        loadDataDir,
        ...(onRestart ? { onRestart } : {}),
      });
    } else {
      pglite = await PGlite.create({
        ...(inMemory ? {} : { fs: new DurableNodeFS(dataDir) }),
        ...(loadDataDir ? { loadDataDir } : {}),
        startParams: PGLITE_START_PARAMS,
      });
    }
    // Drizzle's PGlite driver uses query/transaction, which the proxy provides too.
    db = drizzlePglite(pglite as PGlite, { schema }) as unknown as Db;
    await migratePglite(db as unknown as Parameters<typeof migratePglite>[0], {
      migrationsFolder: MIGRATIONS_FOLDER,
    });
  } catch (error) {
    unlock();
    throw error;
  }
  return {
    db,
    dialect: 'pglite',
    location: inMemory ? 'memory' : dataDir,
    pglite,
    close: async () => {
      try {
        await pglite.close();
      } finally {
        unlock();
      }
    },
  };
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    // libpq also takes passwords (and key passphrases) in the query string.
    for (const name of [...parsed.searchParams.keys()]) {
      if (/pass|secret|key/i.test(name)) parsed.searchParams.set(name, '***');
    }
    return parsed.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}
