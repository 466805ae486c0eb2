/**
 * Durable, exact metering from real processes: a `keyport serve` under a load of plain and
 * streamed requests is killed with SIGKILL mid-load; after a restart, every request whose
 * response completed has exactly one usage record, and nothing is counted twice — in the records
 * or in the roll-ups the Usage API reads. Run with batches written now and then (some records are
 * in the database and the journal at the kill) and never (all of them only in the journal).
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  adminOk,
  keyport,
  killAll,
  removeDir,
  type ServerProcess,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';
import { createPostgresDatabase, POSTGRES_URL } from '../helpers/stores.ts';

afterAll(killAll);

interface Outcome {
  requestId: string;
  completed: boolean;
}

/** One chat request; completed = the whole answer arrived (for a stream: its [DONE]). */
async function chat(url: string, secret: string, streamed: boolean): Promise<Outcome> {
  let requestId = '';
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'mock-gpt-4o',
        stream: streamed,
        messages: [{ role: 'user', content: 'Count me exactly once' }],
      }),
    });
    requestId = response.headers.get('x-request-id') ?? '';
    const text = await response.text();
    const completed =
      response.status === 200 &&
      (streamed
        ? text.includes('data: [DONE]')
        : (JSON.parse(text) as { usage?: unknown }).usage !== undefined);
    return { requestId, completed };
  } catch {
    return { requestId, completed: false }; // cut off by the kill
  }
}

const cases: { name: string; flushMs: string; backend: 'pglite' | 'postgres' }[] = [
  { name: 'batches written every 50 ms', flushMs: '50', backend: 'pglite' },
  { name: 'no batch written before the kill', flushMs: '600000', backend: 'pglite' },
  ...(POSTGRES_URL
    ? [{ name: 'on PostgreSQL, batches every 50 ms', flushMs: '50', backend: 'postgres' as const }]
    : []),
];

describe.each(cases)('usage records across kill -9 ($name)', ({ flushMs, backend }) => {
  const dirs: string[] = [];
  const drops: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const dir of dirs) removeDir(dir);
    for (const drop of drops) await drop();
  });

  it('keeps exactly one record per completed request', async () => {
    const dataDir = tempDir('metering');
    dirs.push(dataDir);
    const env: Record<string, string> = {
      KEYPORT_DATA_DIR: dataDir,
      KEYPORT_USAGE_FLUSH_MS: flushMs,
      KEYPORT_MOCK_UPSTREAM_DELAY_MS: '5',
      KEYPORT_LOG_LEVEL: 'warn',
    };
    if (backend === 'postgres') {
      const database = await createPostgresDatabase();
      drops.push(database.drop);
      env.KEYPORT_DATABASE_URL = database.url;
    }
    const init = JSON.parse(await keyport(['init', '--json'], env)) as {
      admin_key: string;
      project_id: string;
    };
    let server: ServerProcess = await startKeyport('serve', env);
    const key = await adminOk<{ value: string }>(
      server.url,
      init.admin_key,
      'POST',
      `/projects/${init.project_id}/api_keys`,
      {
        name: 'load',
      },
    );

    // Eight clients, plain and streamed, until the kill; the kill comes after 150 completions.
    const outcomes: Outcome[] = [];
    let stop = false;
    let completed = 0;
    const client = async (n: number) => {
      for (let i = 0; !stop && i < 400; i++) {
        const outcome = await chat(server.url, key.value, (n + i) % 2 === 0);
        outcomes.push(outcome);
        if (outcome.completed && ++completed === 150) {
          stop = true;
          server.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, n) => client(n)));
    const stopped = await server.stop('SIGKILL');
    expect(stopped.signal).toBe('SIGKILL');
    const done = outcomes.filter((o) => o.completed).map((o) => o.requestId);
    expect(done.length).toBeGreaterThanOrEqual(150);

    server = await startKeyport('serve', { ...env, KEYPORT_USAGE_FLUSH_MS: '50' });
    try {
      const start = Math.floor(Date.now() / 1000) - 3600;
      // The journal is replayed before the server listens: the records are there at once.
      const csv = await fetch(`${server.url}/v1/organization/usage/export?start_time=${start}`, {
        headers: { authorization: `Bearer ${init.admin_key}` },
      });
      expect(csv.status).toBe(200);
      const rows = (await csv.text()).trim().split('\n').slice(1);
      const ids = rows.map((row) => row.split(',')[0]!);
      expect(new Set(ids).size).toBe(ids.length); // none twice
      const stored = new Set(ids);
      const missing = done.filter((id) => !stored.has(id));
      expect(missing).toEqual([]);
      // The roll-ups agree with the records: replayed events were summed once.
      const usage = await adminOk<{ data: { results: { num_model_requests: number }[] }[] }>(
        server.url,
        init.admin_key,
        'GET',
        `/usage/completions?start_time=${start}&bucket_width=1h&limit=3`,
      );
      const counted = usage.data.flatMap((b) => b.results).reduce((sum, r) => sum + r.num_model_requests, 0);
      // A model request: not a refusal or failure that used nothing (status, input, output, units).
      const modelRequests = rows.filter((row) => {
        const cells = row.split(',');
        const used = Number(cells[11]) + Number(cells[13]) + Number(cells[14]);
        return Number(cells[10]) < 400 || used > 0;
      }).length;
      expect(counted).toBe(modelRequests);
      expect(modelRequests).toBeGreaterThanOrEqual(done.length);
    } finally {
      await server.stop('SIGTERM');
    }
  }, 180_000);
});
