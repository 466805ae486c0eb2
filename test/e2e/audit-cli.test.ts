/**
 * A headless first run and the audit log from the command line, with real processes:
 * `keyport init --password-stdin` makes an owner who can sign in to the dashboard API at once (a
 * refused password initializes nothing); `keyport audit list` shows the sign-in and the changes
 * made through the CLI; `keyport settings set` changes the retention, itself audited.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  keyport,
  killAll,
  removeDir,
  runKeyport,
  type ServerProcess,
  startKeyport,
  tempDir,
} from '../helpers/processes.ts';

afterAll(killAll);

interface Entry {
  id: string;
  type: string;
  actor: { type: string; session?: { user: { email: string } }; api_key?: { id: string } };
  [details: string]: unknown;
}

describe('headless init and the audit log from the CLI', { timeout: 90_000 }, () => {
  let dataDir: string;
  let server: ServerProcess;
  let port: number;
  let init: { admin_key: string; admin_key_id: string; owner_id: string };
  let env: Record<string, string>;
  const email = 'operator@example.test';
  const password = 'a long and unusual passphrase 42';

  beforeAll(async () => {
    dataDir = tempDir('audit-cli');
    port = await freePort();
    const base = { KEYPORT_DATA_DIR: dataDir, KEYPORT_PORT: String(port) };
    // A common password is refused before anything is written…
    const weak = await runKeyport(
      ['init', '--json', '--email', email, '--password-stdin'],
      base,
      undefined,
      'password\n',
    );
    expect(weak.code).not.toBe(0);
    expect(weak.stderr).toContain('password is refused');
    // …so the instance is still uninitialized and init can run again.
    const out = await runKeyport(
      ['init', '--json', '--email', email, '--password-stdin'],
      base,
      undefined,
      `${password}\n`,
    );
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout + out.stderr).not.toContain(password);
    init = JSON.parse(out.stdout);
    server = await startKeyport('serve', base, { port });
    env = { KEYPORT_ADMIN_KEY: init.admin_key, KEYPORT_URL: server.url };
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    removeDir(dataDir);
  });

  const login = (body: Record<string, string>) =>
    fetch(`${server.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: server.url, 'user-agent': 'audit-cli-test' },
      body: JSON.stringify(body),
    });

  it('the headless owner signs in with the piped password; a wrong one is refused and audited', async () => {
    const wrong = await login({ email, password: 'not the password at all' });
    expect(wrong.status).toBe(401);
    const ok = await login({ email, password });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('set-cookie')).toMatch(/^__Host-keyport_session=/);

    const entries = JSON.parse(
      await keyport(['--json', 'audit', 'list', '--type', 'login.succeeded,login.failed'], env),
    ) as Entry[];
    expect(entries.map((e) => e.type)).toEqual(['login.succeeded', 'login.failed']);
    expect(entries[0]!.actor).toMatchObject({ type: 'session', session: { user: { email } } });
    expect(entries[1]!['login.failed']).toMatchObject({ error_code: expect.any(String) });
  });

  it('changes made with the CLI are listed, newest first, with the admin key as actor', async () => {
    const created = JSON.parse(await keyport(['--json', 'keys', 'create', '--name', 'audited'], env)) as {
      id: string;
    };
    await keyport(['keys', 'revoke', created.id], env);
    const entries = JSON.parse(
      await keyport(['--json', 'audit', 'list', '--resource', created.id], env),
    ) as Entry[];
    expect(entries.map((e) => e.type)).toEqual(['api_key.deleted', 'api_key.created']);
    expect(entries[0]!.actor).toMatchObject({ type: 'api_key', api_key: { id: init.admin_key_id } });

    const table = await keyport(['audit', 'list', '--since', '1h', '--limit', '5'], env);
    expect(table).toMatch(/^TIME\s+TYPE\s+ACTOR\s+IP\s+PROJECT\s+WHAT/);
    expect(table).toContain('api_key.deleted');
    expect(table.trim().split('\n')).toHaveLength(6);
  });

  it('settings set changes the retention, and the change is audited', async () => {
    const shown = await keyport(['settings', 'set', '--audit-retention-days', '30'], env);
    expect(shown).toContain('30 days');
    const [entry] = JSON.parse(
      await keyport(['--json', 'audit', 'list', '--type', 'organization.updated'], env),
    ) as Entry[];
    expect(entry!['organization.updated']).toMatchObject({
      changes_requested: { audit_log_retention_days: 30 },
    });
    const refused = await runKeyport(['settings', 'set', '--audit-retention-days', '0'], env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('audit_log_retention_days');
    expect(await keyport(['settings', 'set', '--audit-retention-days', 'default'], env)).toContain(
      'instance default (forever)',
    );
  });
});
