/**
 * Test databases: PGlite from the migrated template, and — when KEYPORT_TEST_DATABASE_URL is
 * set (CI sets it) — a fresh PostgreSQL database per call, dropped on close.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { inject } from 'vitest';
import { SYSTEM } from '../../src/core/actor.ts';
import { openStore, type Store } from '../../src/store/database.ts';

export type Backend = 'pglite' | 'postgres';

export const POSTGRES_URL = process.env.KEYPORT_TEST_DATABASE_URL;

/** The backends a suite runs on: PGlite always, PostgreSQL when configured. */
export const backends: Backend[] = POSTGRES_URL ? ['pglite', 'postgres'] : ['pglite'];

let template: Blob | undefined;

export async function openTestStore(backend: Backend = 'pglite'): Promise<Store> {
  if (backend === 'pglite') {
    template ??= new Blob([readFileSync(inject('pgliteTemplate'))]);
    return openStore({ dataDir: 'memory', loadDataDir: template });
  }
  const { url, drop } = await createPostgresDatabase();
  const store = await openStore({ databaseUrl: url, poolSize: 4 });
  return {
    ...store,
    close: async () => {
      await store.close();
      await drop();
    },
  };
}

/** A new, empty database on the test PostgreSQL server. */
export async function createPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  if (!POSTGRES_URL) throw new Error('KEYPORT_TEST_DATABASE_URL is not set');
  const name = `keyport_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

/** Who acts when a test calls a service directly (the audit log records it as the system). */
export const TEST_ACTOR = SYSTEM('test');
