/**
 * `keyport start`, what `npm start` runs, from a real process: on an empty data directory it
 * initializes, prints the admin key once and serves; on the next start it prints no key.
 * (A file of its own so that vitest runs it beside the longer CLI file.)
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KEY_IN_TEXT,
  keyport,
  killAll,
  probeKey,
  removeDir,
  type ServerProcess,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';

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
