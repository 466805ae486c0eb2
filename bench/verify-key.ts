/**
 * Verification benchmarks:
 *  - cache-hit verifications per second on one core (goal ≥ 500k/s, p99 ≤ 50 µs);
 *  - the cost of a cold lookup (cache off) on PGlite and on PostgreSQL, with 10k keys stored.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { newId } from '../src/core/ids.ts';
import { generateKey, hashKey, redactKey } from '../src/core/key-format.ts';
import { KeyVerifier } from '../src/keys/verify-key.ts';
import { openStore, type Store } from '../src/store/database.ts';
import { addMember, insertOrganization, insertUser } from '../src/store/repositories/organizations.ts';
import { insertProject } from '../src/store/repositories/projects.ts';
import { apiKeySecrets, apiKeys } from '../src/store/schema.ts';

export interface Row {
  benchmark: string;
  result: string;
  goal: string;
}

const STORED_KEYS = 10_000;

async function seed(store: Store): Promise<string[]> {
  const org = await insertOrganization(store.db, 'Bench');
  const user = await insertUser(store.db, `bench-${Date.now()}@example.com`, 'Bench');
  await addMember(store.db, org.id, user.id, 'owner');
  const project = await insertProject(store.db, { organizationId: org.id, name: 'Bench' });
  const secrets: string[] = [];
  for (let batch = 0; batch < STORED_KEYS / 1000; batch++) {
    const rows = Array.from({ length: 1000 }, () => {
      const secret = generateKey('kp', 'proj');
      secrets.push(secret);
      return { id: newId('apiKey'), secret };
    });
    await store.db.insert(apiKeys).values(
      rows.map(({ id, secret }) => ({
        id,
        organizationId: org.id,
        projectId: project.id,
        kind: 'proj' as const,
        name: 'bench',
        redactedValue: redactKey(secret),
        ownerUserId: user.id,
        createdBy: user.id,
        scopes: ['api.model.request', 'api.model.read'],
        allowedModels: ['gpt-4o*'],
        allowedIps: ['10.0.0.0/8', '127.0.0.1/32'],
      })),
    );
    await store.db
      .insert(apiKeySecrets)
      .values(rows.map(({ id, secret }) => ({ hash: hashKey(secret), keyId: id })));
  }
  return secrets;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;

async function cacheHits(store: Store, secrets: string[]): Promise<Row[]> {
  const verifier = new KeyVerifier(store.db, { keyPrefix: 'kp', cacheTtlMs: 60_000 });
  const hot = secrets.slice(0, 1000);
  for (const secret of hot) await verifier.verify(secret, { ip: '10.1.2.3' }); // warm the cache
  // Throughput: back-to-back verifications, IP allow-list checked, as the gateway will call it.
  const n = 1_000_000;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const result = await verifier.verify(hot[i % hot.length] as string, { ip: '10.1.2.3' });
    if (!result.valid) throw new Error('unexpected denial');
  }
  const elapsed = performance.now() - start;
  // Latency: each call timed on its own.
  const samples = new Float64Array(200_000);
  for (let i = 0; i < samples.length; i++) {
    const t0 = performance.now();
    await verifier.verify(hot[i % hot.length] as string, { ip: '10.1.2.3' });
    samples[i] = performance.now() - t0;
  }
  samples.sort();
  return [
    {
      benchmark: 'verifyKey, cache hit: throughput (1 core, 1M calls)',
      result: `${Math.round(n / (elapsed / 1000)).toLocaleString('en-US')} /s`,
      goal: '≥ 500,000 /s',
    },
    {
      benchmark: 'verifyKey, cache hit: latency p50 / p99 / p99.9',
      result: `${us(percentile(samples, 0.5))} / ${us(percentile(samples, 0.99))} / ${us(percentile(samples, 0.999))}`,
      goal: 'p99 ≤ 50 µs',
    },
  ];
}

async function coldLookups(store: Store, secrets: string[], label: string): Promise<Row[]> {
  const verifier = new KeyVerifier(store.db, { keyPrefix: 'kp', cacheTtlMs: 0 });
  for (let i = 0; i < 200; i++) await verifier.verify(secrets[i] as string); // warm connections and plans
  const samples = new Float64Array(3000);
  for (let i = 0; i < samples.length; i++) {
    const secret = secrets[(i * 7919) % secrets.length] as string;
    const t0 = performance.now();
    const result = await verifier.verify(secret);
    samples[i] = performance.now() - t0;
    if (!result.valid) throw new Error('unexpected denial');
  }
  samples.sort();
  return [
    {
      benchmark: `verifyKey, cold lookup on ${label} (${STORED_KEYS.toLocaleString('en-US')} keys): p50 / p99`,
      result: `${us(percentile(samples, 0.5))} / ${us(percentile(samples, 0.99))}`,
      goal: 'recorded (once per key per cache TTL)',
    },
  ];
}

export async function runVerifyBenchmarks(postgresUrl: string | undefined): Promise<Row[]> {
  const rows: Row[] = [];
  const pglite = await openStore({ dataDir: 'memory' });
  try {
    const secrets = await seed(pglite);
    rows.push(...(await cacheHits(pglite, secrets)));
    rows.push(...(await coldLookups(pglite, secrets, 'PGlite (in-memory)')));
  } finally {
    await pglite.close();
  }
  // The embedded default as deployed: a data directory, WAL fsynced after writes (DurableNodeFS).
  const dir = mkdtempSync(path.join(tmpdir(), 'keyport-bench-'));
  const durable = await openStore({ dataDir: dir });
  try {
    const secrets = await seed(durable);
    rows.push(...(await coldLookups(durable, secrets, 'PGlite (data directory)')));
  } finally {
    await durable.close();
    rmSync(dir, { recursive: true, force: true });
  }
  if (postgresUrl) {
    const pg = await openStore({ databaseUrl: postgresUrl, poolSize: 4 });
    try {
      const secrets = await seed(pg);
      rows.push(...(await coldLookups(pg, secrets, 'PostgreSQL 127.0.0.1')));
    } finally {
      await pg.close();
    }
  }
  return rows;
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}
