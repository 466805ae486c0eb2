/**
 * The `keyport` command as a newcomer meets it, from real processes: `init`, `serve` in the
 * background, the key, project, admin-key and service-account commands against it, the error
 * messages. `keyport start` (what `npm start` runs) is in start.test.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminOk,
  freePort,
  KEY_IN_TEXT,
  keyport,
  killAll,
  probeKey,
  removeDir,
  runKeyport,
  type ServerProcess,
  sleep,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';

const redacted = (secret: string) => `${secret.slice(0, 12)}…${secret.slice(-4)}`;
const keysIn = (text: string) => [...text.matchAll(KEY_IN_TEXT)].map((m) => m[0]);

interface KeyJson {
  id: string;
  name: string;
  redacted_value: string;
  scopes: string[];
  allowed_models: string[];
  allowed_ips: string[];
  enabled: boolean;
  value?: string;
}

afterAll(killAll);

// Each test runs a few CLI processes (about 2 s each, more on a busy machine).
describe('keyport CLI against a running `keyport serve`', { timeout: 60_000 }, () => {
  let dataDir: string;
  let server: ServerProcess;
  let init: {
    organization_id: string;
    owner_id: string;
    project_id: string;
    admin_key_id: string;
    admin_key: string;
  };
  /** The environment a user would have after `export KEYPORT_ADMIN_KEY=…`. */
  let env: Record<string, string>;
  const cli = (...args: string[]) => keyport(args, env);
  const keyOf = (id: string) =>
    adminOk<KeyJson>(server.url, init.admin_key, 'GET', `/projects/${init.project_id}/api_keys/${id}`);
  const cliJson = async <T>(...args: string[]) => JSON.parse(await keyport(['--json', ...args], env)) as T;

  beforeAll(async () => {
    dataDir = tempDir('cli');
    const out = await keyport(['init', '--json'], { KEYPORT_DATA_DIR: dataDir });
    init = JSON.parse(out);
    server = await startKeyport('serve', { KEYPORT_DATA_DIR: dataDir });
    env = { KEYPORT_ADMIN_KEY: init.admin_key, KEYPORT_URL: server.url };
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    removeDir(dataDir);
  });

  it('init --json prints the new instance and an admin key that works', async () => {
    expect(init.organization_id).toMatch(/^org-/);
    expect(init.project_id).toMatch(/^proj_/);
    expect(init.admin_key_id).toMatch(/^key_/);
    expect(init.admin_key).toMatch(/^kp_admin_[0-9A-Za-z]{46}$/);
    expect(await probeKey(server.url, init.admin_key)).toMatchObject({ status: 200 });
    expect(server.stdout()).toContain(`Keyport is running at ${server.url}`);
  });

  let keyId: string;
  let secret: string;

  it('keys create prints the secret once; list and show only the redacted value', async () => {
    const created = await cli('keys', 'create', '--name', 'a');
    expect(keysIn(created)).toHaveLength(1);
    secret = keysIn(created)[0] as string;
    expect(secret).toMatch(/^kp_proj_/);
    expect(created).toContain('shown only now');
    keyId = /Created (key_\S+) in (\S+)\./.exec(created)?.[1] as string;
    expect(created).toContain(`in ${init.project_id}.`);
    expect(keyId).toMatch(/^key_/);
    // A valid project key is refused by the Admin API for its kind, not for being unknown.
    expect(await probeKey(server.url, secret)).toMatchObject({ status: 403, code: 'missing_scope' });

    const [listText, shown] = await Promise.all([
      keyport(['--json', 'keys', 'list'], env),
      cli('keys', 'show', keyId),
    ]);
    expect(listText).not.toContain(secret);
    expect(keysIn(listText)).toEqual([]);
    const list = JSON.parse(listText) as KeyJson[];
    expect(list.map((k) => k.id)).toEqual([keyId]);
    expect(list[0]).toMatchObject({ name: 'a', redacted_value: redacted(secret), scopes: [], enabled: true });
    expect(list[0]).not.toHaveProperty('value');

    expect(shown).toMatch(new RegExp(`^id:\\s+${keyId}$`, 'm'));
    expect(shown).toMatch(/^name:\s+a$/m);
    expect(shown).toContain(redacted(secret));
    expect(shown).toMatch(new RegExp(`^project:\\s+${init.project_id}$`, 'm'));
    expect(shown).toMatch(/^permissions:\s+all$/m);
    expect(keysIn(shown)).toEqual([]);
  });

  it('keys update sets read-only permissions, a model and an IP allow-list, and the server enforces the IPs', async () => {
    const updated = await cli(
      'keys',
      'update',
      keyId,
      '--read-only',
      '--models',
      'gpt-4o*',
      '--ips',
      '10.0.0.0/8',
    );
    expect(updated).toMatch(/^permissions:\s+read only \(api\.all\.read\)$/m);
    expect(updated).toMatch(/^models:\s+gpt-4o\*$/m);
    expect(updated).toMatch(/^allowed IPs:\s+10\.0\.0\.0\/8$/m);
    expect(await keyOf(keyId)).toMatchObject({
      scopes: ['api.all.read'],
      allowed_models: ['gpt-4o*'],
      allowed_ips: ['10.0.0.0/8'],
    });
    // We connect from 127.0.0.1, outside the allow-list.
    expect(await probeKey(server.url, secret)).toMatchObject({ status: 401, code: 'ip_not_authorized' });

    // An empty list allows any address again.
    const cleared = await cli('keys', 'update', keyId, '--ips', '');
    expect(cleared).toMatch(/^allowed IPs:\s+any$/m);
    expect(await probeKey(server.url, secret)).toMatchObject({ status: 403, code: 'missing_scope' });
  });

  let rotated: string;

  it('keys rotate --grace 1h prints a new secret; the old and the new both authenticate', async () => {
    const out = await cli('keys', 'rotate', keyId, '--grace', '1h');
    expect(keysIn(out)).toHaveLength(1);
    rotated = keysIn(out)[0] as string;
    expect(rotated).toMatch(/^kp_proj_/);
    expect(rotated).not.toBe(secret);
    expect(out).toContain('The old secret keeps working until');
    expect(await probeKey(server.url, secret)).toMatchObject({ status: 403, code: 'missing_scope' });
    expect(await probeKey(server.url, rotated)).toMatchObject({ status: 403, code: 'missing_scope' });
    const shown = await keyOf(keyId);
    expect(shown.redacted_value).toBe(redacted(rotated));
    // The key's restrictions survive rotation.
    expect(shown.scopes).toEqual(['api.all.read']);
  });

  let current: string;

  it('keys rotate with the default grace of 0 stops the previous secrets at once', async () => {
    const out = await cli('keys', 'rotate', keyId);
    expect(keysIn(out)).toHaveLength(1);
    current = keysIn(out)[0] as string;
    expect(out).toContain('The old secret has stopped working.');
    expect(await probeKey(server.url, rotated)).toMatchObject({ status: 401, code: 'invalid_api_key' });
    // The first secret's hour of grace is cut short too.
    expect(await probeKey(server.url, secret)).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(await probeKey(server.url, current)).toMatchObject({ status: 403, code: 'missing_scope' });
  });

  it('keys revoke refuses the secret at once and drops the key from the list', async () => {
    const out = await cli('keys', 'revoke', keyId);
    expect(out).toContain(`Revoked ${keyId}.`);
    const probe = await probeKey(server.url, current);
    expect(probe).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(probe.message).toContain('revoked');
    expect(probe.message).not.toContain(current);
    const list = await adminOk<{ data: KeyJson[] }>(
      server.url,
      init.admin_key,
      'GET',
      `/projects/${init.project_id}/api_keys`,
    );
    expect(list.data.map((k) => k.id)).not.toContain(keyId);
  });

  it('projects create, list and archive; archiving stops the project keys', async () => {
    const created = await cli('projects', 'create', 'Second project');
    const projectId = /^id:\s+(\S+)$/m.exec(created)?.[1] as string;
    expect(projectId).toMatch(/^proj_/);
    expect(created).toMatch(/^status:\s+active$/m);
    // --name as for keys create, once only.
    const third = await cli('projects', 'create', '--name', 'Third project');
    expect(third).toMatch(/^name:\s+Third project$/m);
    const thirdId = /^id:\s+(\S+)$/m.exec(third)?.[1] as string;
    await cli('projects', 'archive', thirdId);
    const twice = await runKeyport(['projects', 'create', 'A', '--name', 'B'], env);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('give the name once');

    const { value: projectKey } = await adminOk<{ value: string }>(
      server.url,
      init.admin_key,
      'POST',
      `/projects/${projectId}/api_keys`,
      { name: 'b' },
    );
    expect(await probeKey(server.url, projectKey)).toMatchObject({ status: 403, code: 'missing_scope' });

    const archived = await cli('projects', 'archive', projectId);
    expect(archived).toMatch(/^status:\s+archived$/m);
    const probe = await probeKey(server.url, projectKey);
    expect(probe).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(probe.message).toContain('archived');

    const listed = await cliJson<{ id: string; name: string; status: string }[]>('projects', 'list', '--all');
    expect(listed.map((p) => [p.id, p.name, p.status])).toEqual([
      [init.project_id, 'Default project', 'active'],
      [projectId, 'Second project', 'archived'],
      [thirdId, 'Third project', 'archived'],
    ]);
  });

  it('admin-keys create, list and revoke; a bad (revoked) admin key gets the API message in the CLI', async () => {
    const created = await cli('admin-keys', 'create', '--name', 'ops');
    expect(keysIn(created)).toHaveLength(1);
    const adminKey = keysIn(created)[0] as string;
    expect(adminKey).toMatch(/^kp_admin_/);
    const adminKeyId = /Created admin key (key_\S+)\./.exec(created)?.[1] as string;
    expect(adminKeyId).toMatch(/^key_/);
    expect(await probeKey(server.url, adminKey)).toMatchObject({ status: 200 });

    const listText = await keyport(['--json', 'admin-keys', 'list'], env);
    expect(keysIn(listText)).toEqual([]);
    const list = JSON.parse(listText) as KeyJson[];
    expect(list.map((k) => k.id).sort()).toEqual([init.admin_key_id, adminKeyId].sort());
    expect(list.find((k) => k.id === adminKeyId)?.redacted_value).toBe(redacted(adminKey));

    expect(await cli('admin-keys', 'revoke', adminKeyId)).toContain(`Revoked admin key ${adminKeyId}.`);
    expect(await probeKey(server.url, adminKey)).toMatchObject({ status: 401, code: 'invalid_api_key' });
    const refused = await runKeyport(['keys', 'list'], { ...env, KEYPORT_ADMIN_KEY: adminKey });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`The API key ${redacted(adminKey)} has been revoked.`);
    expect(refused.stderr).toContain('(invalid_api_key)');
    expect(refused.stderr).not.toContain(adminKey);
    expect(refused.stdout).toBe('');
  });

  it('service-accounts create prints the account key once; delete revokes it', async () => {
    const created = await cli('service-accounts', 'create', 'bot', '--project', init.project_id);
    expect(keysIn(created)).toHaveLength(1);
    const svcKey = keysIn(created)[0] as string;
    expect(svcKey).toMatch(/^kp_svc_/);
    const accountId = /Created service account (\S+) \(bot\)\./.exec(created)?.[1] as string;
    expect(accountId).toBeTruthy();
    const probe = await probeKey(server.url, svcKey);
    expect(probe).toMatchObject({ status: 403, code: 'missing_scope' });
    expect(probe.message).toContain('service account key');

    const listed = await adminOk<{ data: { id: string }[] }>(
      server.url,
      init.admin_key,
      'GET',
      `/projects/${init.project_id}/service_accounts`,
    );
    expect(listed.data.map((a) => a.id)).toEqual([accountId]);

    const deleted = await cli('service-accounts', 'delete', accountId, '--project', init.project_id);
    expect(deleted).toContain(`Deleted service account ${accountId}`);
    expect(await probeKey(server.url, svcKey)).toMatchObject({ status: 401, code: 'invalid_api_key' });
  });

  it('limits set/list/clear and budgets set/list/delete shape what the gateway admits', async () => {
    const created = await cli('keys', 'create', '--name', 'limited', '--project', init.project_id);
    const limitedSecret = keysIn(created)[0] as string;
    const limitedId = /Created (key_\S+) in/.exec(created)?.[1] as string;
    const chat = async () => {
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${limitedSecret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Hi' }] }),
      });
      const body = (await response.json()) as { error?: { code: string } };
      return {
        status: response.status,
        code: body.error?.code,
        limit: response.headers.get('x-ratelimit-limit-requests'),
      };
    };

    const set = await cli('limits', 'set', '--key', limitedId, '--rpm', '2', '--concurrency', '5');
    expect(set).toMatch(/^\*\s+2\s+-\s+-\s+-\s+5$/m);
    const listed = await cliJson<{ model: string; max_requests_per_1_minute: number }[]>(
      'limits',
      'list',
      '--key',
      limitedId,
    );
    expect(listed[0]).toMatchObject({ model: '*', max_requests_per_1_minute: 2 });
    expect(await chat()).toMatchObject({ status: 200, limit: '2' });
    expect(await chat()).toMatchObject({ status: 200 });
    expect(await chat()).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect(await cli('limits', 'clear', '--key', limitedId)).toContain('Removed the limits of all models');
    expect(await chat()).toMatchObject({ status: 200, limit: null });

    // A $0 monthly budget on the project: a kill switch.
    const budget = await cliJson<{ id: string; hard_limit: number; metric: string; scope: { id: string } }>(
      'budgets',
      'set',
      '--project',
      init.project_id,
      '--usd',
      '0',
      '--alerts',
      '50,100',
    );
    expect(budget).toMatchObject({ hard_limit: 0, metric: 'cost', scope: { id: init.project_id } });
    expect(await chat()).toMatchObject({ status: 429, code: 'insufficient_quota' });
    // And a token budget far from its limit, on the organization.
    await cli('budgets', 'set', '--tokens', '1000000', '--period', 'day');
    const table = await cli('budgets', 'list');
    expect(table).toContain(budget.id);
    expect(table).toMatch(/\$0\.00\s+\$0\.00\s+50% 100%\s+enforcing/);
    expect(table).toMatch(/organization\s+day\s+1,000,000 tokens\s+\d[\d,]* tokens\s+-\s+under limit/);
    expect(await cli('budgets', 'delete', budget.id)).toContain(`Deleted budget ${budget.id}`);
    expect(await chat()).toMatchObject({ status: 200 });

    const bad = await runKeyport(['budgets', 'set', '--usd', '1', '--tokens', '5'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('give exactly one of --usd or --tokens');
  });

  it('prices, usage, costs, credits, payments and invoices from the command line', async () => {
    const created = await cli('keys', 'create', '--name', 'billed', '--project', init.project_id);
    const billedSecret = keysIn(created)[0] as string;
    const billedId = /Created (key_\S+) in/.exec(created)?.[1] as string;
    expect(await cli('prices', 'set', 'mock-gpt-4o', '--input', '2000', '--output', '4000')).toMatch(
      /^Priced mock-gpt-4o from /,
    );
    const listed = await cli('prices', 'list');
    expect(listed).toMatch(/^mock-gpt-4o\s+2000\s+-\s+4000\s+-\s+\S+\s+database\s+price_/m);
    expect(listed).toMatch(/^gpt-4o\s+2\.5\s+1\.25\s+10\s/m); // OpenAI's list price, still in effect

    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${billedSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'Bill me' }] }),
    });
    const completion = (await response.json()) as {
      usage: { prompt_tokens: number; completion_tokens: number };
    };
    expect(response.status).toBe(200);
    const expectedUsd =
      (completion.usage.prompt_tokens * 2000 + completion.usage.completion_tokens * 4000) / 1e6;

    // The server writes usage in batches: wait until the Costs API has it.
    let costs = '';
    for (let attempt = 0; attempt < 50 && !costs.includes('mock-gpt-4o, output'); attempt++) {
      await sleep(100);
      costs = await cli('costs', '--days', '1');
    }
    expect(costs).toMatch(/mock-gpt-4o, input\s+\$\d+\.\d{2}/);
    expect(costs).toContain(`total: $${expectedUsd.toFixed(2)}`);
    // Earlier tests sent requests to this server too: this key's row has the one request.
    const usage = await cli('usage', '--days', '1', '--by', 'api_key_id');
    expect(usage).toMatch(
      new RegExp(
        `${billedId}\\s+1\\s+${completion.usage.prompt_tokens}\\s+0\\s+${completion.usage.completion_tokens}`,
      ),
    );

    // Other families of the Usage API: an embeddings request, in its own table.
    const embedded = await fetch(`${server.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${billedSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mock-embedding-small', input: 'Bill me too' }),
    });
    const embedding = (await embedded.json()) as { usage: { prompt_tokens: number } };
    expect(embedded.status).toBe(200);
    let embeddings = '';
    for (let attempt = 0; attempt < 50 && !embeddings.includes(billedId); attempt++) {
      await sleep(100);
      embeddings = await cli('usage', '--days', '1', '--type', 'embeddings', '--by', 'key'); // = api_key_id
    }
    expect(embeddings).toMatch(/^DAY\s+API_KEY_ID\s+REQUESTS\s+INPUT$/m);
    expect(embeddings).toMatch(new RegExp(`${billedId}\\s+1\\s+${embedding.usage.prompt_tokens}$`, 'm'));
    const byProject = await cli('usage', '--days', '1', '--by', 'project');
    expect(byProject).toMatch(/^DAY\s+PROJECT_ID\s+REQUESTS/m);
    const badType = await runKeyport(['usage', '--type', 'tokens'], env);
    expect(badType.code).toBe(1);
    expect(badType.stderr).toContain('--type is one of completions, embeddings');
    // The records themselves, to a file: it says how many it wrote.
    const exportDir = tempDir('usage-export');
    const exported = path.join(exportDir, 'usage.csv');
    const today = new Date().toISOString().slice(0, 10);
    const wrote = await cli('usage', 'export', '--from', today, '--out', exported);
    const lines = readFileSync(exported, 'utf8').split('\n').filter(Boolean);
    expect(wrote.trim()).toBe(`Wrote ${lines.length - 1} usage records to ${exported}.`);
    expect(lines.length - 1).toBeGreaterThanOrEqual(2);
    removeDir(exportDir);

    expect(await cli('credits', 'grant', '12.50', '--note', 'welcome')).toMatch(
      /^Granted \$12\.50 \(credit_/,
    );
    expect(await cli('billing', 'show')).toMatch(/^plan:\s+pay_as_you_go$/m);
    expect(
      await cli('payments', 'record', '20', '--method', 'bank_transfer', '--reference', 'TX-1'),
    ).toContain('as prepaid credit');
    const grants = await cliJson<{ kind: string; amount_cents: number }[]>('credits', 'list');
    expect(grants.map((g) => [g.kind, g.amount_cents]).sort()).toEqual([
      ['promotion', 1250],
      ['top_up', 2000],
    ]);
    expect(await cli('payments', 'list')).toMatch(/\$20\.00\s+top-up\s+bank_transfer\s+TX-1/);

    const upcoming = await cli('invoices', 'show', 'upcoming');
    expect(upcoming).toMatch(/^Upcoming invoice · draft/);
    expect(upcoming).toMatch(/mock-gpt-4o\s+output\s+/);
    const dir = tempDir('invoice');
    const file = path.join(dir, 'upcoming.csv');
    expect(await cli('invoices', 'download', 'upcoming', '--format', 'csv', '--out', file)).toContain(
      `Wrote ${file}`,
    );
    const csv = readFileSync(file, 'utf8');
    expect(csv.split('\n')[0]).toBe('project_id,project,model,item,quantity,quantity_unit,amount_usd');
    expect(csv).toContain(`${init.project_id},`);
    removeDir(dir);

    const notOver = await runKeyport(['invoices', 'issue', new Date().toISOString().slice(0, 7)], env);
    expect(notOver.code).toBe(1);
    expect(notOver.stderr).toContain('The month is not over yet');
  });

  it('explains what is wrong: no admin key, no server, a data directory in use', async () => {
    const nobodyListens = `http://127.0.0.1:${await freePort()}`;
    const [noKey, noServer, secondServe] = await Promise.all([
      runKeyport(['keys', 'list'], { KEYPORT_URL: server.url }),
      runKeyport(['keys', 'list'], { ...env, KEYPORT_URL: nobodyListens }),
      runKeyport(['serve'], { KEYPORT_DATA_DIR: dataDir, KEYPORT_PORT: String(await freePort()) }),
    ]);

    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain('KEYPORT_ADMIN_KEY is not set');
    expect(noKey.stdout).toBe('');

    expect(noServer.code).toBe(1);
    expect(noServer.stderr).toContain(`cannot reach Keyport at ${nobodyListens}`);
    expect(noServer.stderr).toContain('Is `keyport serve` (or `npm start`) running?');

    expect(secondServe.code).not.toBe(0);
    expect(secondServe.code).not.toBeNull();
    expect(secondServe.stderr).toContain(
      `the data directory ${dataDir} is in use by another Keyport process`,
    );
    expect(secondServe.stderr).toContain(`(pid ${server.child.pid})`);
    // The refused second process left the running server and its lock alone.
    expect(existsSync(path.join(dataDir, 'keyport.lock'))).toBe(true);
    expect(await probeKey(server.url, init.admin_key)).toMatchObject({ status: 200 });
    // A KEYPORT_USE_DIST that is neither 1 nor 0 is refused, not ignored.
    const useDist = await runKeyport(['--help'], { KEYPORT_USE_DIST: 'yes' });
    expect(useDist.code).toBe(1);
    expect(useDist.stderr).toContain('KEYPORT_USE_DIST is 1 (run dist/) or 0 (run the sources), not "yes"');
  });
});
