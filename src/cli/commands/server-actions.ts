/** The implementations of the commands in server-commands.ts. */
import {
  AlreadyInitializedError,
  type BootstrapInput,
  type BootstrapResult,
  bootstrap,
  isInitialized,
} from '../../accounts/bootstrap.ts';
import { hashPassword, passwordProblem } from '../../accounts/passwords.ts';
import { type Config, loadConfig } from '../../config/config.ts';
import { SYSTEM } from '../../core/actor.ts';
import { closeOnSignals, startServer } from '../../server.ts';
import { createLogger, createServices } from '../../services.ts';
import { findOrganization, findOwner, firstOrganization } from '../../store/repositories/organizations.ts';
import { CliError } from '../client.ts';
import type { GlobalOptions } from './output.ts';
import type { InitOptions } from './server-commands.ts';

/**
 * Services for a command that opens the database, does one thing and exits: no serving, so no mock
 * upstream, and logs go to stderr so that stdout stays the command's own (e.g. --json).
 */
function oneShotServices(config: Config) {
  return createServices(
    // The journal is the serving process's; a one-shot command must not take it from a running server.
    { ...config, mockUpstream: 'off', usageJournal: 'off' },
    { logger: createLogger(config, process.stderr) },
  );
}

const bootstrapInput = (options: InitOptions): BootstrapInput => ({
  organizationName: options.orgName,
  ownerEmail: options.email,
  ownerName: options.name,
  projectName: options.projectName,
});

/** The password piped to `init --password-stdin` (one line; the trailing newline is not part of it). */
async function readPassword(email: string): Promise<string> {
  if (process.stdin.isTTY)
    throw new CliError('--password-stdin reads a password piped to it, e.g. from a secret file');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const password = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  const problem = passwordProblem(password, { email });
  if (problem) throw new CliError(`the password is refused: ${problem}`);
  return password;
}

export async function init(options: InitOptions, globals: GlobalOptions): Promise<void> {
  const config = loadConfig();
  // Checked before anything is written: a refused password leaves the instance uninitialized.
  const password = options.passwordStdin ? await readPassword(options.email) : undefined;
  const services = await oneShotServices(config);
  try {
    const account = password
      ? { passwordHash: await hashPassword(password), termsVersion: config.termsVersion }
      : undefined;
    const result = await bootstrap(services.store.db, services.keys, bootstrapInput(options), account);
    if (globals.json) {
      process.stdout.write(
        `${JSON.stringify({
          organization_id: result.organization.id,
          owner_id: result.owner.id,
          project_id: result.project.id,
          admin_key_id: result.adminKey.key.id,
          admin_key: result.adminKey.secret,
        })}\n`,
      );
    } else {
      process.stdout.write(
        `${welcome(result, services.publicUrl, 'Start it with: keyport serve')}\n` +
          (password
            ? `\nThe owner ${result.owner.email} can sign in to the dashboard with that password: ${services.publicUrl}/login\n`
            : ''),
      );
    }
  } finally {
    await services.close();
  }
}

export async function recoverAdminKey(options: { org?: string }, globals: GlobalOptions): Promise<void> {
  const config = loadConfig();
  const services = await oneShotServices(config);
  try {
    const organization = options.org
      ? await findOrganization(services.store.db, options.org)
      : await firstOrganization(services.store.db);
    if (!organization) {
      throw new CliError(
        options.org ? `no organization ${options.org}` : 'not initialized: run keyport init',
      );
    }
    const owner = await findOwner(services.store.db, organization.id);
    const { key, secret } = await services.keys.create(
      {
        organizationId: organization.id,
        kind: 'admin',
        name: `Recovered admin key ${new Date().toISOString().slice(0, 10)}`,
        ownerUserId: owner?.id ?? null,
      },
      SYSTEM('recover-admin-key'),
    );
    process.stdout.write(
      globals.json
        ? `${JSON.stringify({ organization_id: organization.id, admin_key_id: key.id, admin_key: secret })}\n`
        : `New admin key ${key.id} for ${organization.name} (${organization.id}), shown only this once:\n\n  ${secret}\n\n` +
            'Revoke the lost one with: keyport admin-keys list, then keyport admin-keys revoke <id>\n',
    );
  } finally {
    await services.close();
  }
}

export async function serve(): Promise<void> {
  const config = loadConfig();
  const server = await startServer(config);
  closeOnSignals(server);
  const initialized = await isInitialized(server.services.store.db);
  process.stdout.write(
    `\nKeyport is running at ${server.url} (${describeStore(server.services.store)}).\n` +
      (initialized
        ? ''
        : 'This instance has no organization yet: stop it and run `keyport init`, or use `keyport start`.\n'),
  );
}

export async function start(options: InitOptions): Promise<void> {
  const config = loadConfig();
  const services = await createServices(config);
  let created: BootstrapResult | undefined;
  try {
    if (!(await isInitialized(services.store.db))) {
      created = await bootstrap(services.store.db, services.keys, bootstrapInput(options));
    }
  } catch (error) {
    if (!(error instanceof AlreadyInitializedError)) {
      await services.close();
      throw error;
    }
  }
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, services);
  } catch (error) {
    // The organization and its admin key exist now: the key must not be lost with the start.
    if (created) {
      process.stdout.write(
        `\n${welcome(created, `http://${config.host}:${config.port}`)}\n\n` +
          'The server did not start (below). Fix that and run `npx keyport start` again: the organization is kept.\n',
      );
    }
    throw error;
  }
  closeOnSignals(server);
  const where = `Keyport is running at ${server.url} (${describeStore(services.store)}).`;
  process.stdout.write(
    created
      ? `\n${where}\n\n${welcome(created, server.url)}\n\n${signUpHint(server.services.publicUrl)}\n`
      : `\n${where}\nUse the admin key you saved at first start: export KEYPORT_ADMIN_KEY=kp_admin_…, then \`npx keyport --help\`.\n`,
  );
}

/** The first account to sign up on a fresh instance takes over its placeholder owner. */
function signUpHint(publicUrl: string): string {
  return [
    'Dashboard accounts: the first person to sign up becomes the owner of this instance and of its',
    'organization (the dashboard API; without SMTP, KEYPORT_SMTP_URL, the verification link is printed in this log):',
    '',
    `  curl -s ${publicUrl}/api/auth/signup -H 'content-type: application/json' -H 'origin: ${publicUrl}' \\`,
    `    -d '{"email":"you@example.com","password":"…","name":"You","accept_terms":true}'`,
  ].join('\n');
}

function describeStore(store: { dialect: string; location: string }): string {
  return store.dialect === 'pglite'
    ? `embedded database in ${store.location}`
    : `PostgreSQL at ${store.location}`;
}

function welcome(result: BootstrapResult, url: string, next?: string): string {
  return [
    `Created organization "${result.organization.name}" (${result.organization.id}), its owner ${result.owner.email},`,
    `and the project "${result.project.name}" (${result.project.id}).`,
    '',
    'Your admin key, shown only this once. Store it somewhere safe now:',
    '',
    `  ${result.adminKey.secret}`,
    '',
    ...(next ? [next, ''] : []),
    'Then, in another terminal:',
    '',
    `  export KEYPORT_ADMIN_KEY=${result.adminKey.secret}`,
    `  export KEYPORT_URL=${url}`,
    '  npx keyport keys create --name my-first-key     # a project key, printed once',
    '  npx keyport keys list',
    `  curl -s ${url}/v1/organization/projects -H "Authorization: Bearer $KEYPORT_ADMIN_KEY"`,
    '',
    'More: npx keyport --help, and README.md.',
  ].join('\n');
}
