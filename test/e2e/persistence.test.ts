/**
 * The embedded database keeps what it acknowledged: keys survive a clean restart and a
 * `kill -9` right after the response that reported them, and so does a revocation.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminApi,
  adminOk,
  keyport,
  killAll,
  probeKey,
  removeDir,
  type ServerProcess,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';

interface CreatedKey {
  id: string;
  value: string;
}

afterAll(killAll);

describe('PGlite persistence across restarts (real processes)', () => {
  let dataDir: string;
  let adminKey: string;
  let projectId: string;
  let server: ServerProcess | undefined;
  const serve = () => startKeyport('serve', { KEYPORT_DATA_DIR: dataDir });
  const createKey = (url: string, name: string) =>
    adminOk<CreatedKey>(url, adminKey, 'POST', `/projects/${projectId}/api_keys`, { name });
  const listedIds = async (url: string) => {
    const page = await adminOk<{ data: { id: string }[]; has_more: boolean }>(
      url,
      adminKey,
      'GET',
      `/projects/${projectId}/api_keys?limit=100`,
    );
    expect(page.has_more).toBe(false);
    return page.data.map((k) => k.id);
  };

  beforeAll(async () => {
    dataDir = tempDir('persist');
    const init = JSON.parse(await keyport(['init', '--json'], { KEYPORT_DATA_DIR: dataDir }));
    adminKey = init.admin_key;
    projectId = init.project_id;
  }, 120_000);

  afterAll(async () => {
    await server?.stop('SIGKILL');
    removeDir(dataDir);
  });

  let survivor: CreatedKey;

  it('keeps a key across a clean restart (SIGTERM, then serve again)', async () => {
    server = await serve();
    survivor = await createKey(server.url, 'before restart');
    expect(await probeKey(server.url, survivor.value)).toMatchObject({ status: 403, code: 'missing_scope' });

    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(server.stdout()).toContain('"msg":"shutting down"');
    expect(existsSync(path.join(dataDir, 'keyport.lock'))).toBe(false);

    server = await serve();
    expect(await probeKey(server.url, survivor.value)).toMatchObject({ status: 403, code: 'missing_scope' });
    expect(await listedIds(server.url)).toEqual([survivor.id]);
  }, 90_000);

  it('keeps every acknowledged create and revocation across kill -9', async () => {
    const running = server as ServerProcess;
    const revoked = await createKey(running.url, 'revoked before the crash');
    expect(
      await adminApi(running.url, adminKey, 'DELETE', `/projects/${projectId}/api_keys/${revoked.id}`),
    ).toMatchObject({
      status: 200,
    });
    expect(await probeKey(running.url, revoked.value)).toMatchObject({
      status: 401,
      code: 'invalid_api_key',
    });

    const acknowledged: CreatedKey[] = [];
    for (let i = 0; i < 3; i++) acknowledged.push(await createKey(running.url, `sequential ${i}`));

    // A burst of creates; the process is killed the moment the first of them is answered, so
    // the others are in flight. Every one that was answered with 200 must survive.
    let killed = false;
    const burst = Array.from({ length: 6 }, (_, i) =>
      adminApi<CreatedKey>(running.url, adminKey, 'POST', `/projects/${projectId}/api_keys`, {
        name: `burst ${i}`,
      }).then((result) => {
        if (!killed) {
          killed = true;
          running.child.kill('SIGKILL');
        }
        return result;
      }),
    );
    const outcomes = await Promise.allSettled(burst);
    const stopped = await running.stop('SIGKILL');
    expect(stopped.signal).toBe('SIGKILL');
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') {
        expect(outcome.value.status).toBe(200);
        acknowledged.push(outcome.value.body);
      }
    }
    expect(acknowledged.length).toBeGreaterThanOrEqual(4);
    // The dead process's lock is left behind; the next start must take it over.
    expect(readFileSync(path.join(dataDir, 'keyport.lock'), 'utf8')).toBe(String(running.child.pid));

    server = await serve();
    const url = server.url;
    const ids = await listedIds(url);
    for (const key of [survivor, ...acknowledged]) {
      expect(ids).toContain(key.id);
      expect(await probeKey(url, key.value)).toMatchObject({ status: 403, code: 'missing_scope' });
    }
    expect(ids).not.toContain(revoked.id);
    const probe = await probeKey(url, revoked.value);
    expect(probe).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(probe.message).toContain('revoked');

    // And the recovered database takes writes again.
    const after = await createKey(url, 'after recovery');
    expect(await probeKey(url, after.value)).toMatchObject({ status: 403, code: 'missing_scope' });
    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 90_000);
});
