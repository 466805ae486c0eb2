/**
 * `keyport limits …`, `keyport budgets …` and `keyport alerts …`, through the Admin API.
 * A limit or budget belongs to the organization (no option), a project (`--project`) or a key
 * (`--key`, its project found when not given).
 */
import type { Command } from 'commander';
import { AdminClient, CliError } from '../client.ts';
import { dollarsToCents, list, table, when, wholeNumber } from '../format.ts';
import { projectOfKey } from './keys.ts';
import { type GlobalOptions, output } from './output.ts';

interface RateLimit {
  id: string;
  model: string;
  max_requests_per_1_minute: number;
  max_tokens_per_1_minute: number;
  max_requests_per_1_day: number;
  max_tokens_per_1_day: number;
  max_concurrent_requests: number;
}

interface Budget {
  id: string;
  scope: { type: string; id: string };
  metric: 'cost' | 'tokens';
  period: 'day' | 'month';
  hard_limit: number | null;
  soft_limit_percents: number[];
  notify_emails: string[];
  spent: number;
  enforcement: { status: string };
  period_end: number;
}

interface Alert {
  id: string;
  kind: string;
  severity: string;
  title: string;
  project_id: string | null;
  created_at: number;
  read_at: number | null;
}

interface ScopeOptions {
  project?: string;
  key?: string;
}

/** The OpenAI field each option sets. */
const LIMIT_OPTIONS = {
  rpm: 'max_requests_per_1_minute',
  tpm: 'max_tokens_per_1_minute',
  rpd: 'max_requests_per_1_day',
  tpd: 'max_tokens_per_1_day',
  concurrency: 'max_concurrent_requests',
} as const;

const limitText = (n: number) => (n === 0 ? '-' : n.toLocaleString('en-US'));

function withScope(command: Command): Command {
  return command
    .option('--project <project_id>', 'a project (default: the organization)')
    .option('--key <key_id>', 'one API key (its project is found when --project is not given)');
}

/** The Admin API path of the scope's rate limits. */
async function rateLimitsPath(client: AdminClient, options: ScopeOptions): Promise<string> {
  if (options.key) {
    const project = await projectOfKey(client, options.key, options.project);
    return `/projects/${project}/api_keys/${options.key}/rate_limits`;
  }
  if (options.project) return `/projects/${options.project}/rate_limits`;
  return '/rate_limits';
}

async function budgetScope(client: AdminClient, options: ScopeOptions) {
  if (options.key) {
    return { project_id: await projectOfKey(client, options.key, options.project), api_key_id: options.key };
  }
  return options.project ? { project_id: options.project } : {};
}

const rateLimitRows = (items: RateLimit[]) =>
  table(
    items.map((r) => ({
      model: r.model,
      rpm: limitText(r.max_requests_per_1_minute),
      tpm: limitText(r.max_tokens_per_1_minute),
      rpd: limitText(r.max_requests_per_1_day),
      tpd: limitText(r.max_tokens_per_1_day),
      concurrent: limitText(r.max_concurrent_requests),
    })),
    ['model', 'rpm', 'tpm', 'rpd', 'tpd', 'concurrent'],
  );

function amount(budget: Budget, value: number | null): string {
  if (value === null) return '-';
  return budget.metric === 'cost'
    ? `$${(value / 100).toFixed(2)}`
    : `${Math.round(value).toLocaleString('en-US')} tokens`;
}

/** OpenAI's `inactive` reads like a budget turned off: say what it means. */
function statusOf(budget: Budget): string {
  if (budget.enforcement.status === 'enforcing') return 'enforcing';
  return budget.hard_limit === null ? 'alerts only' : 'under limit';
}

const budgetRows = (items: Budget[]) =>
  table(
    items.map((b) => ({
      id: b.id,
      scope: b.scope.type === 'organization' ? 'organization' : `${b.scope.type} ${b.scope.id}`,
      period: b.period,
      limit: amount(b, b.hard_limit),
      spent: amount(b, b.spent),
      alerts: b.soft_limit_percents.map((p) => `${p}%`).join(' ') || '-',
      status: statusOf(b),
      resets: when(b.period_end),
    })),
    ['id', 'scope', 'period', 'limit', 'spent', 'alerts', 'status', 'resets'],
  );

export function registerLimitCommands(program: Command, globals: () => GlobalOptions): void {
  const limits = program
    .command('limits')
    .description('rate limits: requests and tokens per minute and per day, concurrent requests');

  withScope(limits.command('list').description('the limits of every model of a scope (- = none)')).action(
    async (options: ScopeOptions) => {
      const client = new AdminClient(globals());
      const items = await client.listAll<RateLimit>(await rateLimitsPath(client, options));
      output(globals(), items, () => rateLimitRows(items));
    },
  );

  let set = limits
    .command('set')
    .description('set limits (0 removes one); options left out keep their value')
    .option('--model <model>', 'one model, or * for all models of the scope together', '*');
  set = withScope(set)
    .option('--rpm <n>', 'requests per minute', wholeNumber)
    .option('--tpm <n>', 'tokens per minute', wholeNumber)
    .option('--rpd <n>', 'requests per day', wholeNumber)
    .option('--tpd <n>', 'tokens per day', wholeNumber)
    .option('--concurrency <n>', 'requests in flight at once', wholeNumber);
  set.action(
    async (
      options: ScopeOptions & { model: string } & Partial<Record<keyof typeof LIMIT_OPTIONS, number>>,
    ) => {
      const body: Record<string, number> = {};
      for (const [option, field] of Object.entries(LIMIT_OPTIONS) as [keyof typeof LIMIT_OPTIONS, string][]) {
        if (options[option] !== undefined) body[field] = options[option];
      }
      if (Object.keys(body).length === 0) {
        throw new CliError(
          'give at least one of --rpm, --tpm, --rpd, --tpd, --concurrency (0 removes a limit)',
        );
      }
      const client = new AdminClient(globals());
      const path = await rateLimitsPath(client, options);
      const limit = await client.post<RateLimit>(`${path}/rl-${encodeURIComponent(options.model)}`, body);
      output(globals(), limit, () => rateLimitRows([limit]));
    },
  );

  withScope(
    limits
      .command('clear')
      .description("remove a model's limits in a scope")
      .option('--model <model>', 'one model, or * for all models together', '*'),
  ).action(async (options: ScopeOptions & { model: string }) => {
    const client = new AdminClient(globals());
    const path = await rateLimitsPath(client, options);
    const limit = await client.delete<RateLimit>(`${path}/rl-${encodeURIComponent(options.model)}`);
    output(
      globals(),
      limit,
      () => `Removed the limits of ${options.model === '*' ? 'all models' : options.model}.`,
    );
  });

  const budgets = program
    .command('budgets')
    .description('budgets: money or tokens per day or month, with alerts and a hard limit');

  withScope(budgets.command('list')).action(async (options: ScopeOptions) => {
    const client = new AdminClient(globals());
    const scope = await budgetScope(client, options);
    const items = await client.listAll<Budget>('/budgets', scope);
    output(globals(), items, () => budgetRows(items));
  });

  withScope(
    budgets
      .command('set')
      .description('create or replace the budget of a scope for a period')
      .option('--period <period>', 'day or month (calendar, in KEYPORT_BILLING_TIME_ZONE)', 'month')
      .option('--usd <dollars>', 'a money limit, e.g. 50 or 12.50 (at the model prices)', dollarsToCents)
      .option('--tokens <n>', 'a token limit (input + output)', wholeNumber)
      .option('--alerts <percents>', 'alert at these percentages of the limit, e.g. 50,80,100')
      .option('--notify <emails>', 'email these addresses on alerts, comma-separated'),
  ).action(
    async (
      options: ScopeOptions & {
        period: string;
        usd?: number;
        tokens?: number;
        alerts?: string;
        notify?: string;
      },
    ) => {
      if ((options.usd === undefined) === (options.tokens === undefined)) {
        throw new CliError('give exactly one of --usd or --tokens');
      }
      if (options.period !== 'day' && options.period !== 'month') {
        throw new CliError('--period is day or month');
      }
      const percents = list(options.alerts ?? '').map((p) => wholeNumber(p.replace(/%$/, '')));
      const client = new AdminClient(globals());
      const budget = await client.post<Budget>('/budgets', {
        ...(await budgetScope(client, options)),
        metric: options.usd !== undefined ? 'cost' : 'tokens',
        period: options.period,
        hard_limit: options.usd ?? options.tokens,
        soft_limit_percents: percents,
        notify_emails: list(options.notify ?? ''),
      });
      output(globals(), budget, () => budgetRows([budget]));
    },
  );

  budgets.command('delete <budget_id>').action(async (id: string) => {
    const deleted = await new AdminClient(globals()).delete<{ id: string }>(`/budgets/${id}`);
    output(globals(), deleted, () => `Deleted budget ${id}.`);
  });

  const alerts = program.command('alerts').description('alerts raised for the organization (budgets, spend)');

  alerts
    .command('list')
    .option('--unread', 'only alerts not marked read')
    .option('--project <project_id>', 'only alerts of this project')
    .action(async (options: { unread?: boolean; project?: string }) => {
      const client = new AdminClient(globals());
      const items = await client.listAll<Alert>('/alerts', {
        unread: options.unread ? true : undefined,
        project_id: options.project,
      });
      output(globals(), items, () =>
        table(
          items.map((a) => ({
            id: a.id,
            when: when(a.created_at),
            severity: a.severity,
            title: a.title,
            read: a.read_at ? 'yes' : 'no',
          })),
          ['id', 'when', 'severity', 'title', 'read'],
        ),
      );
    });

  alerts
    .command('read <alert_id>')
    .description('mark an alert read')
    .action(async (id: string) => {
      const alert = await new AdminClient(globals()).post<Alert>(`/alerts/${id}/read`);
      output(globals(), alert, () => `Marked ${alert.id} read: ${alert.title}`);
    });
}
