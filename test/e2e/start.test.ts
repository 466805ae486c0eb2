/**
 * `keyport start`, what `npm start` runs, from a real process: on an empty data directory it
 * initializes, prints the admin key once and serves; on the next start it prints no key.
 * (A file of its own so that vitest runs it beside the longer CLI file.)
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KEY_IN_TEXT,
  keyport,
  killAll,
  probeKey,
  removeDir,
  runKeyport,
  type ServerProcess,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';
import { createPostgresDatabase, POSTGRES_URL } from '../helpers/stores.ts';

const keysIn = (text: string) => [...text.matchAll(KEY_IN_TEXT)].map((m) => m[0]);

afterAll(killAll);

describe('keyport start (what `npm start` runs)', () => {
  let dataDir: string;

  beforeAll(() => {
    dataDir = tempDir('start');
  });
  afterAll(() => removeDir(dataDir));

  it('initializes an empty data directory, prints the admin key once, and serves', async () => {
    const first = await startKeyport('start', { KEYPORT_DATA_DIR: dataDir });
    let adminKey = '';
    let stopped: Awaited<ReturnType<ServerProcess['stop']>>;
    try {
      adminKey = (await first.waitForOutput(/export KEYPORT_ADMIN_KEY=(\S+)/))[1] as string;
      expect(adminKey).toMatch(/^kp_admin_[0-9A-Za-z]{46}$/);
      expect(first.stdout()).toContain(`Keyport is running at ${first.url}`);
      expect(first.stdout()).toContain('Your admin key, shown only this once.');
      expect(first.stdout()).toMatch(new RegExp(`^  ${adminKey}$`, 'm'));

      const listed = await keyport(['keys', 'list'], { KEYPORT_ADMIN_KEY: adminKey, KEYPORT_URL: first.url });
      expect(listed.trim()).toBe('(none)');
    } finally {
      stopped = await first.stop();
    }
    expect(stopped).toEqual({ code: 0, signal: null });
    expect(existsSync(path.join(dataDir, 'keyport.lock'))).toBe(false);

    const second = await startKeyport('start', { KEYPORT_DATA_DIR: dataDir });
    try {
      await second.waitForOutput(/Use the admin key you saved at first start/);
      expect(keysIn(second.stdout())).toEqual([]);
      expect(second.stdout()).not.toContain('shown only this once');
      // The first key still works with the restarted instance.
      expect(await probeKey(second.url, adminKey)).toMatchObject({ status: 200 });
    } finally {
      stopped = await second.stop();
    }
    expect(stopped).toEqual({ code: 0, signal: null });
  }, 120_000);
});

describe('keyport start that cannot serve', () => {
  it('a first start whose port is taken still prints the admin key it created, and exits', async () => {
    const dataDir = tempDir('start-port-taken');
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const failed = await runKeyport(['start'], { KEYPORT_DATA_DIR: dataDir, KEYPORT_PORT: String(port) });
      expect(failed.code).toBe(1);
      expect(failed.stderr).toContain('is already in use');
      const adminKey = /export KEYPORT_ADMIN_KEY=(\S+)/.exec(failed.stdout)?.[1];
      expect(adminKey).toMatch(/^kp_admin_[0-9A-Za-z]{46}$/);
      expect(failed.stdout).toContain('The server did not start');
      blocker.close();
      // The next start serves the organization made then; the key printed then works.
      const next = await startKeyport('start', { KEYPORT_DATA_DIR: dataDir });
      try {
        await next.waitForOutput(/Use the admin key you saved at first start/);
        expect(await probeKey(next.url, adminKey!)).toMatchObject({ status: 200 });
      } finally {
        await next.stop();
      }
    } finally {
      blocker.close();
      removeDir(dataDir);
    }
  });

  // On PGlite the database's own lock refuses the second instance; on PostgreSQL it is the usage
  // journal's, taken once the database is open (it used to leave that process running).
  for (const backend of POSTGRES_URL ? ['pglite', 'postgres'] : ['pglite']) {
    it(`a second instance on a data directory in use says so and exits (${backend})`, async () => {
      const dataDir = tempDir('start-dir-in-use');
      const database = backend === 'postgres' ? await createPostgresDatabase() : undefined;
      const env = { KEYPORT_DATA_DIR: dataDir, KEYPORT_DATABASE_URL: database?.url };
      const first = await startKeyport('start', env);
      try {
        const second = await runKeyport(['serve'], { ...env, KEYPORT_PORT: '0' });
        expect(second.code).toBe(1);
        expect(second.stderr).toMatch(/is in use by another Keyport process/);
      } finally {
        await first.stop();
        removeDir(dataDir);
        await database?.drop();
      }
    });
  }
});
