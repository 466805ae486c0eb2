/**
 * Secrets are shown once and never kept: after a scenario that issues, uses, rotates and
 * revokes every kind of key against a real `keyport serve`, no secret is in the server's logs,
 * in any byte of the PGlite data directory, or in a dump of the PostgreSQL database — while
 * each secret's SHA-256 and each key's redacted value are there (so the search is not vacuous).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { openStore } from '../../src/store/database.ts';
import {
  adminApi,
  adminOk,
  childEnv,
  filesContaining,
  keyport,
  killAll,
  probeKey,
  readAll,
  removeDir,
  sleep,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';
import { type Backend, backends, createPostgresDatabase } from '../helpers/stores.ts';

const sha256 = (secret: string) => createHash('sha256').update(secret).digest('hex');

interface Issued {
  id: string;
  value: string;
}

interface Evidence {
  /** Every secret the server ever returned. */
  secrets: string[];
  /** The redacted value each live key shows now. */
  redactedValues: string[];
  logs: string;
}

/**
 * Creates admin, project and service-account keys, uses them, rotates and revokes some, over
 * HTTP against `url`; returns every secret seen.
 */
async function scenario(url: string, adminKey: string, projectId: string): Promise<Omit<Evidence, 'logs'>> {
  const secrets = [adminKey];
  const ok = <T>(method: 'GET' | 'POST' | 'DELETE', route: string, body?: unknown) =>
    adminOk<T>(url, adminKey, method, route, body);
  const keep = <T extends { value: string }>(issued: T) => {
    secrets.push(issued.value);
    return issued;
  };

  // Admin keys: one kept, one revoked.
  const admin1 = keep(await ok<Issued>('POST', '/admin_api_keys', { name: 'ops' }));
  const admin2 = keep(
    await ok<Issued>('POST', '/admin_api_keys', { name: 'temporary', expires_in_seconds: 3600 }),
  );
  await ok('DELETE', `/admin_api_keys/${admin2.id}`);

  // Project keys, one with restrictions, in two projects.
  const second = await ok<{ id: string }>('POST', '/projects', { name: 'Second' });
  const plain = keep(await ok<Issued>('POST', `/projects/${projectId}/api_keys`, { name: 'plain' }));
  const restricted = keep(
    await ok<Issued>('POST', `/projects/${second.id}/api_keys`, {
      name: 'restricted',
      scopes: ['api.model.read', 'api.model.request'],
      allowed_models: ['gpt-4o*'],
      allowed_ips: ['127.0.0.1/32', '10.0.0.0/8'],
      expires_in_seconds: 86_400,
    }),
  );
  const doomed = keep(await ok<Issued>('POST', `/projects/${projectId}/api_keys`, { name: 'doomed' }));

  // Rotations: with a grace period, then again at once.
  keep(
    await ok<Issued>('POST', `/projects/${projectId}/api_keys/${plain.id}/rotate`, {
      grace_period_seconds: 3600,
    }),
  );
  keep(
    await ok<Issued>('POST', `/projects/${projectId}/api_keys/${plain.id}/rotate`, {
      grace_period_seconds: 0,
    }),
  );
  keep(
    await ok<Issued>('POST', `/projects/${second.id}/api_keys/${restricted.id}/rotate`, {
      grace_period_seconds: 60,
    }),
  );
  await ok('DELETE', `/projects/${projectId}/api_keys/${doomed.id}`);

  // Service accounts: the first key comes with the account, a second one is issued, one rotated;
  // another account is deleted (revoking its key).
  const bot = await ok<{ id: string; api_key: Issued }>('POST', `/projects/${second.id}/service_accounts`, {
    name: 'bot',
  });
  keep(bot.api_key);
  const botKey2 = keep(
    await ok<Issued>('POST', `/projects/${second.id}/service_accounts/${bot.id}/api_keys`, {
      name: 'second key',
    }),
  );
  keep(
    await ok<Issued>('POST', `/projects/${second.id}/api_keys/${botKey2.id}/rotate`, {
      grace_period_seconds: 60,
    }),
  );
  const gone = await ok<{ id: string; api_key: Issued }>('POST', `/projects/${projectId}/service_accounts`, {
    name: 'gone',
  });
  keep(gone.api_key);
  await ok('DELETE', `/projects/${projectId}/service_accounts/${gone.id}`);

  // Every secret is presented to the server, valid or not, so it passes through verification
  // and error paths (and `last_used_at` gets written).
  for (const secret of secrets) {
    const probe = await probeKey(url, secret);
    expect([200, 401, 403]).toContain(probe.status);
  }
  expect((await probeKey(url, admin1.value)).status).toBe(200);
  expect((await probeKey(url, admin2.value)).status).toBe(401);
  // A key sent in the URL is refused (and must not reach the log through the URL either).
  const inUrl = await adminApi(
    url,
    adminKey,
    'GET',
    `/projects?api_key=${encodeURIComponent(bot.api_key.value)}`,
  );
  expect(inUrl.status).toBe(400);

  const redactedValues: string[] = [];
  const admins = await ok<{ data: { redacted_value: string }[] }>('GET', '/admin_api_keys?limit=100');
  redactedValues.push(...admins.data.map((k) => k.redacted_value));
  for (const project of [projectId, second.id]) {
    const keys = await ok<{ data: { redacted_value: string }[] }>(
      'GET',
      `/projects/${project}/api_keys?limit=100`,
    );
    redactedValues.push(...keys.data.map((k) => k.redacted_value));
  }
  // init's key, ops; plain, restricted, bot's two keys.
  expect(redactedValues).toHaveLength(6);
  expect(new Set(secrets).size).toBe(secrets.length);
  expect(secrets).toHaveLength(13);
  return { secrets, redactedValues };
}

/** Runs init, serve, the scenario and a clean stop; the evidence to search. */
async function runScenario(env: Record<string, string>): Promise<Evidence> {
  const init = JSON.parse(await keyport(['init', '--json'], env));
  // The most verbose level: whatever the server can log, it logs here.
  const server = await startKeyport('serve', {
    ...env,
    KEYPORT_LOG_LEVEL: 'trace',
    KEYPORT_LAST_USED_FLUSH_MS: '100',
  });
  let found: Omit<Evidence, 'logs'>;
  let stopped: Awaited<ReturnType<typeof server.stop>>;
  try {
    found = await scenario(server.url, init.admin_key, init.project_id);
    // Let a last_used_at flush happen while running, not only at shutdown.
    await sleep(300);
  } finally {
    stopped = await server.stop('SIGTERM');
  }
  expect(stopped).toEqual({ code: 0, signal: null });
  const logs = server.stdout() + server.stderr();
  // The capture works: there are request lines, including refusals.
  expect(logs).toContain('"msg":"request"');
  expect(logs).toContain('"status":401');
  return { ...found, logs };
}

function expectNoSecretInLogs(evidence: Evidence): void {
  for (const secret of evidence.secrets) {
    expect(evidence.logs.includes(secret), `a secret (${secret.slice(0, 12)}…) is in the server's log`).toBe(
      false,
    );
    expect(evidence.logs.includes(secret.slice(-46)), 'the random part of a secret is in the log').toBe(
      false,
    );
  }
}

afterAll(killAll);

describe.each(backends)('no secret at rest on %s', (backend: Backend) => {
  const cleanup: (() => unknown)[] = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('keeps no secret in the logs or the stored data, only hashes and redacted values', async () => {
    const dataDir = tempDir(`secrets-${backend}`);
    cleanup.push(() => removeDir(dataDir));
    let databaseUrl: string | undefined;
    if (backend === 'postgres') {
      const database = await createPostgresDatabase();
      cleanup.push(database.drop);
      databaseUrl = database.url;
    }
    if (backend === 'pglite') await seedDataDir(dataDir);
    const evidence = await runScenario({
      KEYPORT_DATA_DIR: dataDir,
      ...(databaseUrl ? { KEYPORT_DATABASE_URL: databaseUrl } : {}),
    });

    expectNoSecretInLogs(evidence);

    if (backend === 'pglite') {
      const files = readAll(dataDir);
      expect(files.length).toBeGreaterThan(100);
      const holding = (needle: string) => filesContaining(files, needle);
      for (const secret of evidence.secrets) {
        expect(holding(secret), `files holding ${secret.slice(0, 12)}…`).toEqual([]);
        expect(
          holding(secret.slice(-46)),
          `files holding the random part of ${secret.slice(0, 12)}…`,
        ).toEqual([]);
        expect(
          holding(sha256(secret)).length,
          `files holding the SHA-256 of ${secret.slice(0, 12)}…`,
        ).toBeGreaterThan(0);
      }
      for (const redacted of evidence.redactedValues) {
        expect(holding(redacted).length, `files holding ${redacted}`).toBeGreaterThan(0);
      }
    } else {
      const dump = await dumpPostgres(databaseUrl as string);
      for (const secret of evidence.secrets) {
        expect(dump.includes(secret), `the dump holds ${secret.slice(0, 12)}…`).toBe(false);
        expect(
          dump.includes(secret.slice(-46)),
          `the dump holds the random part of ${secret.slice(0, 12)}…`,
        ).toBe(false);
        expect(dump.includes(sha256(secret)), `the dump lacks the SHA-256 of ${secret.slice(0, 12)}…`).toBe(
          true,
        );
      }
      for (const redacted of evidence.redactedValues) expect(dump).toContain(redacted);
    }
  }, 120_000);
});

/**
 * A migrated, empty PGlite data directory from the test run's template (global-setup), so that
 * `keyport init` skips initdb (seconds of CPU); init, serve and the scenario are unchanged.
 */
async function seedDataDir(dataDir: string): Promise<void> {
  const store = await openStore({ dataDir, loadDataDir: new Blob([readFileSync(inject('pgliteTemplate'))]) });
  await store.close();
}

/**
 * Everything in the database as text: `pg_dump` when it is installed (and matches the server),
 * and in any case every row of every table, selected as text.
 */
async function dumpPostgres(url: string): Promise<string> {
  let dump = '';
  if (spawnSync('which', ['pg_dump']).status === 0) {
    const result = await new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
      const child = spawn('pg_dump', ['--no-owner', url], {
        env: childEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        err += chunk;
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('pg_dump did not finish in 30 s'));
      }, 30_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out, err });
      });
    });
    if (result.code === 0) {
      expect(result.out).toContain('COPY public.api_key_secrets');
      dump += result.out;
    } else {
      // e.g. a pg_dump older than the server; the row dump below covers the same data.
      console.warn(`pg_dump failed (${result.code}); using the row dump only: ${result.err.trim()}`);
    }
  }
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    query_timeout: 30_000,
  });
  await client.connect();
  try {
    const tables = await client.query<{ schema: string; name: string }>(
      `select table_schema as schema, table_name as name from information_schema.tables
       where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`,
    );
    expect(tables.rows.map((t) => t.name)).toContain('api_key_secrets');
    for (const table of tables.rows) {
      const rows = await client.query<{ row: string }>(
        `select t::text as row from ${client.escapeIdentifier(table.schema)}.${client.escapeIdentifier(table.name)} t`,
      );
      dump += `\n-- ${table.schema}.${table.name}\n${rows.rows.map((r) => r.row).join('\n')}`;
    }
  } finally {
    await client.end();
  }
  return dump;
}
