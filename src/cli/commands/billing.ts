/**
 * `keyport usage …`, `costs`, `prices …`, `billing …`, `credits …`, `invoices …` and
 * `payments …`, through the Admin API. Money on the command line is in dollars (`12.50`); the
 * API takes cents. `--org` acts for another organization (the operator's admin key only).
 */
import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { AdminClient, CliError } from '../client.ts';
import { dollarsToCents, parseDuration, table, when, wholeNumber } from '../format.ts';
import { type GlobalOptions, output } from './output.ts';

interface Bucket<R> {
  start_time: number;
  end_time: number;
  results: R[];
}
interface UsageResult {
  input_tokens?: number;
  output_tokens?: number;
  input_cached_tokens?: number;
  images?: number;
  characters?: number;
  seconds?: number;
  num_model_requests: number;
  project_id: string | null;
  api_key_id: string | null;
  model: string | null;
}
interface CostResult {
  amount: { value: number };
  line_item: string | null;
  project_id: string | null;
}
interface Page<R> {
  data: Bucket<R>[];
  has_more: boolean;
  next_page: string | null;
}
interface Grant {
  id: string;
  kind: string;
  amount_cents: number;
  remaining_usd: number;
  note: string | null;
  created_at: number;
  expires_at: number | null;
  voided_at: number | null;
}
interface Invoice {
  id: string | null;
  number: string | null;
  status: string;
  period_start: number;
  period_end: number;
  subtotal_cents: number;
  rounding_cents?: number;
  credits_cents: number;
  total_cents: number;
  due_at?: number | null;
  paid_at?: number | null;
  lines?: {
    project_id: string | null;
    model: string | null;
    item: string;
    quantity: number;
    quantity_unit: string;
    amount_cents: number;
  }[];
}
interface Payment {
  id: string;
  invoice_id: string | null;
  amount_cents: number;
  method: string | null;
  reference: string | null;
  created_at: number;
}
interface Price {
  id: string | null;
  model: string;
  input: number;
  cached_input: number | null;
  output: number;
  unit: number | null;
  effective_at: number | null;
  source: string;
  current: boolean;
}

const positiveNumber = (value: string): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number, 0 or more');
  return n;
};
/** An ISO date/time or unix seconds → unix seconds. */
const instant = (value: string): number => {
  if (/^\d+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw new InvalidArgumentError('expected a date such as 2026-12-01 or 2026-12-01T09:00:00Z');
  return Math.floor(ms / 1000);
};

/** A dollar amount given as an argument (commander only parses options). */
const centsOf = (amount: string): number => {
  try {
    return dollarsToCents(amount);
  } catch (error) {
    throw new CliError(`${JSON.stringify(amount)}: ${(error as Error).message}`);
  }
};

const money = (cents: number) => `${cents < 0 ? '-' : ''}$${(Math.abs(cents) / 100).toFixed(2)}`;
const usd = (value: number) => `$${value.toFixed(value !== 0 && Math.abs(value) < 0.01 ? 6 : 2)}`;
const day = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 10);
const count = (n: number) => n.toLocaleString('en-US');

/** Every page of a Usage/Costs API query. */
async function allBuckets<R>(
  client: AdminClient,
  path: string,
  query: Record<string, string | number | undefined>,
) {
  const buckets: Bucket<R>[] = [];
  let page: string | undefined;
  for (;;) {
    const result = await client.get<Page<R>>(path, { ...query, page });
    buckets.push(...result.data);
    if (!result.has_more || !result.next_page) return buckets;
    page = result.next_page;
  }
}

/** The Usage API's families and the columns each one's results have (beside requests). */
const USAGE_TYPES: Record<string, [column: string, field: keyof UsageResult][]> = {
  completions: [
    ['input', 'input_tokens'],
    ['cached', 'input_cached_tokens'],
    ['output', 'output_tokens'],
  ],
  embeddings: [['input', 'input_tokens']],
  moderations: [['input', 'input_tokens']],
  images: [['images', 'images']],
  audio_speeches: [['characters', 'characters']],
  audio_transcriptions: [['seconds', 'seconds']],
};

/** `--by project` and `--by key` are the Usage API's `project_id` and `api_key_id`. */
const groupField = (value: string) => ({ project: 'project_id', key: 'api_key_id' })[value] ?? value;

export function registerBillingCommands(program: Command, globals: () => GlobalOptions): void {
  // ---- usage and costs ----------------------------------------------------------------------------
  const usage = program
    .command('usage')
    .description('usage per day (the Usage API), grouped by model, project or key')
    .option('--days <n>', 'this many days up to today (UTC)', wholeNumber, 7)
    .option('--by <field>', 'model, project (project_id) or key (api_key_id)', groupField, 'model')
    .option('--type <type>', `${Object.keys(USAGE_TYPES).join(', ')}`, 'completions')
    .action(async (options: { days: number; by: string; type: string }) => {
      if (!['model', 'project_id', 'api_key_id'].includes(options.by)) {
        throw new CliError('--by is model, project or key');
      }
      const columns = USAGE_TYPES[options.type];
      if (!columns) throw new CliError(`--type is one of ${Object.keys(USAGE_TYPES).join(', ')}`);
      const client = new AdminClient(globals());
      const start = Math.floor(Date.now() / 86_400_000 - options.days + 1) * 86_400;
      const buckets = await allBuckets<UsageResult>(client, `/usage/${options.type}`, {
        start_time: start,
        bucket_width: '1d',
        limit: 31,
        'group_by[]': options.by,
      });
      const rows = buckets.flatMap((b) =>
        b.results.map((r) => ({
          day: day(b.start_time),
          [options.by]: String(r[options.by as keyof UsageResult] ?? '-'),
          requests: count(r.num_model_requests),
          ...Object.fromEntries(columns.map(([column, field]) => [column, count(Number(r[field] ?? 0))])),
        })),
      );
      output(globals(), buckets, () =>
        table(rows, ['day', options.by, 'requests', ...columns.map(([column]) => column)]),
      );
    });

  usage
    .command('export')
    .description('every usage record of a period as CSV (stdout, or --out)')
    .requiredOption('--from <date>', 'start (a date, a date-time, or unix seconds)', instant)
    .option('--to <date>', 'end, exclusive (default: now)', instant)
    .option('--out <file>', 'write to this file')
    .action(async (options: { from: number; to?: number; out?: string }) => {
      const query = new URLSearchParams({ start_time: String(options.from) });
      if (options.to !== undefined) query.set('end_time', String(options.to));
      const csv = await new AdminClient(globals()).download(`/usage/export?${query}`);
      if (!options.out) {
        process.stdout.write(csv);
        return;
      }
      writeFileSync(options.out, csv);
      const records = Math.max(0, csv.toString('utf8').split('\n').filter(Boolean).length - 1); // less the header
      process.stdout.write(`Wrote ${records} usage record${records === 1 ? '' : 's'} to ${options.out}.\n`);
    });

  program
    .command('costs')
    .description('what usage cost per day (the Costs API), by project or line item')
    .option('--days <n>', 'this many days up to today (UTC)', wholeNumber, 7)
    .option('--by <field>', 'project (project_id) or line_item', groupField, 'line_item')
    .action(async (options: { days: number; by: string }) => {
      if (!['project_id', 'line_item'].includes(options.by))
        throw new CliError('--by is project or line_item');
      const client = new AdminClient(globals());
      const start = Math.floor(Date.now() / 86_400_000 - options.days + 1) * 86_400;
      const buckets = await allBuckets<CostResult>(client, '/costs', {
        start_time: start,
        limit: 180,
        'group_by[]': options.by,
      });
      const rows = buckets.flatMap((b) =>
        b.results.map((r) => ({
          day: day(b.start_time),
          [options.by]: String(r[options.by as 'project_id' | 'line_item'] ?? '-'),
          cost: usd(r.amount.value),
        })),
      );
      const total = buckets.flatMap((b) => b.results).reduce((sum, r) => sum + r.amount.value, 0);
      output(globals(), buckets, () => `${table(rows, ['day', options.by, 'cost'])}\n\ntotal: ${usd(total)}`);
    });

  // ---- prices -------------------------------------------------------------------------------------
  const prices = program.command('prices').description('model prices (USD per 1M tokens)');
  prices
    .command('list')
    .option('--all', 'also past and future prices, and OpenAI list prices not in effect')
    .action(async (options: { all?: boolean }) => {
      const list = (await new AdminClient(globals()).get<{ data: Price[] }>('/prices')).data;
      const shown = options.all ? list : list.filter((p) => p.current);
      output(globals(), shown, () =>
        table(
          shown.map((p) => ({
            model: p.model,
            input: String(p.input),
            cached: p.cached_input === null ? '-' : String(p.cached_input),
            output: String(p.output),
            unit: p.unit === null ? '-' : String(p.unit),
            from: p.effective_at === null ? '-' : when(p.effective_at),
            source: p.source,
            id: p.id ?? '',
          })),
          ['model', 'input', 'cached', 'output', 'unit', 'from', 'source', 'id'],
        ),
      );
    });
  prices
    .command('set <model>')
    .description('price a model (a name or glob) from now, or from --from; earlier requests keep their cost')
    .requiredOption('--input <usd>', 'USD per 1M input tokens', positiveNumber)
    .requiredOption('--output <usd>', 'USD per 1M output tokens', positiveNumber)
    .option('--cached <usd>', 'USD per 1M cached input tokens (default: the input price)', positiveNumber)
    .option('--unit <usd>', 'USD per image, speech character or transcribed second', positiveNumber)
    .option('--from <date>', 'when it takes effect (default: now)', instant)
    .action(
      async (
        model: string,
        options: { input: number; output: number; cached?: number; unit?: number; from?: number },
      ) => {
        const price = await new AdminClient(globals()).post<Price>('/prices', {
          model,
          input: options.input,
          output: options.output,
          ...(options.cached !== undefined ? { cached_input: options.cached } : {}),
          ...(options.unit !== undefined ? { unit: options.unit } : {}),
          ...(options.from !== undefined ? { effective_at: options.from } : {}),
        });
        output(
          globals(),
          price,
          () => `Priced ${price.model} from ${when(price.effective_at)} (${price.id}).`,
        );
      },
    );
  prices
    .command('delete <price_id>')
    .description('delete a price that has not taken effect yet')
    .action(async (id: string) => {
      const deleted = await new AdminClient(globals()).delete(`/prices/${id}`);
      output(globals(), deleted, () => `Deleted ${id}.`);
    });

  // ---- billing account ----------------------------------------------------------------------------
  const billing = program.command('billing').description('plan, billing details and credit balance');
  billing
    .command('show')
    .option('--org <organization_id>', 'another organization (operator)')
    .action(async (options: { org?: string }) => {
      const account = await new AdminClient(globals()).get<Record<string, unknown>>('/billing', {
        organization_id: options.org,
      });
      output(globals(), account, () =>
        [
          `organization:   ${account.organization_id}`,
          `plan:           ${account.plan}`,
          `credit:         ${usd(Number(account.credit_balance_usd))}`,
          `billing name:   ${account.billing_name ?? '-'}`,
          `billing email:  ${account.billing_email ?? '-'}`,
          `address:        ${(account.billing_address as string[]).join(', ') || '-'}`,
          `tax id:         ${account.tax_id ?? '-'}`,
        ].join('\n'),
      );
    });
  billing
    .command('set')
    .option('--org <organization_id>', 'another organization (operator)')
    .option('--plan <plan>', 'pay_as_you_go, prepaid or free_trial (operator)')
    .option('--name <name>', 'billing name')
    .option('--email <email>', 'billing email')
    .option('--address <lines>', 'address lines, separated by |')
    .option('--tax-id <id>', 'tax id')
    .action(
      async (options: {
        org?: string;
        plan?: string;
        name?: string;
        email?: string;
        address?: string;
        taxId?: string;
      }) => {
        const account = await new AdminClient(globals()).post<Record<string, unknown>>('/billing', {
          ...(options.org ? { organization_id: options.org } : {}),
          ...(options.plan ? { plan: options.plan } : {}),
          ...(options.name !== undefined ? { billing_name: options.name } : {}),
          ...(options.email !== undefined ? { billing_email: options.email } : {}),
          ...(options.address !== undefined
            ? {
                billing_address: options.address
                  .split('|')
                  .map((l) => l.trim())
                  .filter(Boolean),
              }
            : {}),
          ...(options.taxId !== undefined ? { tax_id: options.taxId } : {}),
        });
        output(
          globals(),
          account,
          () => `Updated billing of ${account.organization_id} (plan ${account.plan}).`,
        );
      },
    );

  // ---- credit -------------------------------------------------------------------------------------
  const credits = program.command('credits').description('credit grants (trial, top-ups, promotions)');
  credits
    .command('list')
    .option('--org <organization_id>', 'another organization (operator)')
    .action(async (options: { org?: string }) => {
      const items = await new AdminClient(globals()).listAll<Grant>('/billing/credit_grants', {
        organization_id: options.org,
      });
      output(globals(), items, () =>
        table(
          items.map((g) => ({
            id: g.id,
            kind: g.kind,
            amount: money(g.amount_cents),
            remaining: usd(g.remaining_usd),
            expires: when(g.expires_at),
            voided: when(g.voided_at),
            note: g.note ?? '',
          })),
          ['id', 'kind', 'amount', 'remaining', 'expires', 'voided', 'note'],
        ),
      );
    });
  credits
    .command('grant <dollars>')
    .description('grant credit (operator)')
    .option('--org <organization_id>', 'to another organization')
    .option('--kind <kind>', 'promotion, trial, top_up or adjustment', 'promotion')
    .option('--expires <duration>', 'expires after e.g. 30d, 12h')
    .option('--note <text>', 'shown with the grant')
    .action(
      async (amount: string, options: { org?: string; kind: string; expires?: string; note?: string }) => {
        const grant = await new AdminClient(globals()).post<Grant>('/billing/credit_grants', {
          ...(options.org ? { organization_id: options.org } : {}),
          amount_cents: centsOf(amount),
          kind: options.kind,
          ...(options.expires
            ? { expires_at: Math.floor(Date.now() / 1000) + parseDuration(options.expires) }
            : {}),
          ...(options.note ? { note: options.note } : {}),
        });
        output(globals(), grant, () => `Granted ${money(grant.amount_cents)} (${grant.id}).`);
      },
    );
  credits
    .command('void <grant_id>')
    .option('--org <organization_id>', 'of another organization')
    .action(async (id: string, options: { org?: string }) => {
      const grant = await new AdminClient(globals()).post<Grant>(
        `/billing/credit_grants/${id}/void`,
        options.org ? { organization_id: options.org } : {},
      );
      output(
        globals(),
        grant,
        () => `Voided ${grant.id}; ${usd(grant.remaining_usd)} unused is no longer available.`,
      );
    });

  // ---- invoices -----------------------------------------------------------------------------------
  const invoices = program.command('invoices').description('monthly invoices');
  invoices
    .command('list')
    .option('--org <organization_id>', 'another organization (operator)')
    .action(async (options: { org?: string }) => {
      const items = await new AdminClient(globals()).listAll<Invoice & { id: string }>('/invoices', {
        organization_id: options.org,
      });
      output(globals(), items, () =>
        table(
          items.map((i) => ({
            id: i.id,
            number: i.number ?? '',
            period: day(i.period_start).slice(0, 7),
            status: i.status,
            total: money(i.total_cents),
            due: when(i.due_at),
            paid: when(i.paid_at),
          })),
          ['id', 'number', 'period', 'status', 'total', 'due', 'paid'],
        ),
      );
    });
  invoices
    .command('show <invoice_id>')
    .description('an invoice with its lines (`upcoming`: this month so far)')
    .option('--org <organization_id>', 'of another organization')
    .action(async (id: string, options: { org?: string }) => {
      const invoice = await new AdminClient(globals()).get<Invoice>(`/invoices/${id}`, {
        organization_id: options.org,
      });
      output(globals(), invoice, () =>
        [
          `${invoice.number ?? 'Upcoming invoice'} · ${invoice.status} · ${day(invoice.period_start)} – ${day(invoice.period_end - 1)}`,
          '',
          table(
            (invoice.lines ?? []).map((l) => ({
              project: l.project_id ?? '-',
              model: l.model ?? '-',
              item: l.item,
              quantity: `${count(l.quantity)} ${l.quantity_unit}`,
              amount: money(l.amount_cents),
            })),
            ['project', 'model', 'item', 'quantity', 'amount'],
          ),
          '',
          `subtotal:  ${money(invoice.subtotal_cents)}`,
          ...(invoice.rounding_cents ? [`rounding:  ${money(invoice.rounding_cents)}`] : []),
          `credits:   ${money(-invoice.credits_cents)}`,
          `total:     ${money(invoice.total_cents)}`,
        ].join('\n'),
      );
    });
  invoices
    .command('download <invoice_id>')
    .option('--format <format>', 'pdf, html or csv', 'pdf')
    .option('--out <file>', 'file name (default: the invoice number)')
    .option('--org <organization_id>', 'of another organization')
    .action(async (id: string, options: { format: string; out?: string; org?: string }) => {
      if (!['pdf', 'html', 'csv'].includes(options.format))
        throw new CliError('--format is pdf, html or csv');
      const query = options.org ? `?organization_id=${encodeURIComponent(options.org)}` : '';
      const bytes = await new AdminClient(globals()).download(`/invoices/${id}.${options.format}${query}`);
      const file = options.out ?? `${id}.${options.format}`;
      writeFileSync(file, bytes);
      process.stdout.write(`Wrote ${file} (${bytes.length} bytes).\n`);
    });
  invoices
    .command('issue <month>')
    .description(
      "issue a month's invoice now, e.g. 2026-11 (operator; normally done hourly after the month ends)",
    )
    .option('--org <organization_id>', 'for another organization')
    .action(async (month: string, options: { org?: string }) => {
      const invoice = await new AdminClient(globals()).post<Invoice>('/invoices', {
        month,
        ...(options.org ? { organization_id: options.org } : {}),
      });
      output(
        globals(),
        invoice,
        () => `Issued ${invoice.number}: ${money(invoice.total_cents)} due (${invoice.id}).`,
      );
    });
  invoices
    .command('void <invoice_id>')
    .option('--org <organization_id>', 'of another organization')
    .action(async (id: string, options: { org?: string }) => {
      const invoice = await new AdminClient(globals()).post<Invoice>(
        `/invoices/${id}/void`,
        options.org ? { organization_id: options.org } : {},
      );
      output(globals(), invoice, () => `Voided ${invoice.number}.`);
    });

  // ---- payments -----------------------------------------------------------------------------------
  const payments = program.command('payments').description('payments received');
  payments
    .command('list')
    .option('--org <organization_id>', 'another organization (operator)')
    .action(async (options: { org?: string }) => {
      const items = await new AdminClient(globals()).listAll<Payment>('/billing/payments', {
        organization_id: options.org,
      });
      output(globals(), items, () =>
        table(
          items.map((p) => ({
            id: p.id,
            when: when(p.created_at),
            amount: money(p.amount_cents),
            invoice: p.invoice_id ?? 'top-up',
            method: p.method ?? '',
            reference: p.reference ?? '',
          })),
          ['id', 'when', 'amount', 'invoice', 'method', 'reference'],
        ),
      );
    });
  payments
    .command('record <dollars>')
    .description('record money received (operator): for an invoice, or a prepaid top-up that grants credit')
    .option('--invoice <invoice_id>', 'the invoice it pays')
    .option('--org <organization_id>', 'the organization that paid')
    .option('--method <method>', 'e.g. bank_transfer')
    .option('--reference <text>', 'e.g. the bank reference')
    .action(
      async (
        amount: string,
        options: { invoice?: string; org?: string; method?: string; reference?: string },
      ) => {
        const payment = await new AdminClient(globals()).post<Payment>('/billing/payments', {
          amount_cents: centsOf(amount),
          ...(options.invoice ? { invoice_id: options.invoice } : {}),
          ...(options.org ? { organization_id: options.org } : {}),
          ...(options.method ? { method: options.method } : {}),
          ...(options.reference ? { reference: options.reference } : {}),
        });
        output(
          globals(),
          payment,
          () =>
            `Recorded ${money(payment.amount_cents)} (${payment.id})${payment.invoice_id ? ` for ${payment.invoice_id}` : ' as prepaid credit'}.`,
        );
      },
    );
}
