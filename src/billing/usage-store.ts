/**
 * Writing usage: a batch of events, the roll-ups they add to, and the credit they draw, in one
 * transaction. Idempotent by request id: an event already stored (a journal replayed after a
 * crash, a batch retried after a timeout) is neither stored again nor summed again, because the
 * roll-ups and the credit draws are computed from the rows the insert really inserted.
 */

import { type SQL, sql } from 'drizzle-orm';
import { periodBounds } from '../core/periods.ts';
import type { Db, DbOrTx } from '../store/database.ts';
import { rowsOf } from '../store/rows.ts';
import { DIMENSIONS, EPOCH, MEASURE_COLUMNS, MEASURES, SUMMED } from './rollup-columns.ts';
import { serializeEvent, type UsageEvent } from './usage-event.ts';

export interface IngestResult {
  /** Events stored now (the others were stored before). */
  inserted: number;
  /** nano-USD drawn from credit grants. */
  creditDrawn: number;
}

const INSERTED_COLUMNS = sql.raw(
  [
    'created_at',
    'organization_id',
    'project_id',
    'api_key_id',
    'user_id',
    'service_account_id',
    'model',
    'kind',
    'status',
    'input_tokens',
    'cached_tokens',
    'output_tokens',
    'units',
    'cost_nano_usd',
    'cost_input_nano_usd',
    'cost_cached_nano_usd',
    'cost_output_nano_usd',
    'cost_units_nano_usd',
  ].join(', '),
);

/**
 * One statement for events, minute roll-ups and hour marks: the whole batch is one JSON parameter
 * (building a 26-parameters-per-row insert cost more CPU than the gateway's own work), and the
 * minutes sum `inserted`, the rows the insert returned. Hours and days are left to compaction:
 * writing all three widths here tripled the statement's cost.
 */
export function ingestUsage(db: Db, events: readonly UsageEvent[], timeZone: string): Promise<IngestResult> {
  return ingestSerialized(db, events.map(serializeEvent), timeZone);
}

/** `ingestUsage` of events already serialized (`serializeEvent`), as the recorder holds them. */
export async function ingestSerialized(
  db: Db,
  serialized: readonly string[],
  timeZone: string,
): Promise<IngestResult> {
  if (serialized.length === 0) return { inserted: 0, creditDrawn: 0 };
  const rows = `[${serialized.join(',')}]`;
  return db.transaction(async (tx) => {
    const spent = rowsOf<{
      organization_id: string;
      minute: string | Date;
      cost: string | number;
      n: string | number;
    }>(
      await tx.execute(sql`
        with inserted as (
          insert into usage_events
          select * from json_populate_recordset(null::usage_events, ${rows}::json)
          on conflict (request_id) do nothing
          -- What the roll-ups and the credit draws read: the ids, paths and addresses stay unread.
          returning ${INSERTED_COLUMNS}
        ),
        minutes as (
          insert into usage_rollups as r (width, bucket_start, ${DIMENSIONS}, ${MEASURE_COLUMNS})
          select '1m', date_bin(interval '1 minute', i.created_at, ${EPOCH}) as bucket,
                 i.organization_id, coalesce(i.project_id, ''), i.api_key_id,
                 coalesce(i.user_id, i.service_account_id, ''), coalesce(i.model, ''), i.kind,
                 count(*),
                 count(*) filter (where i.status >= 400 and i.input_tokens + i.output_tokens + i.units = 0),
                 sum(i.input_tokens), sum(i.cached_tokens), sum(i.output_tokens), sum(i.units),
                 sum(i.cost_input_nano_usd), sum(i.cost_cached_nano_usd), sum(i.cost_output_nano_usd),
                 sum(i.cost_units_nano_usd)
          from inserted i
          group by 2, 3, 4, 5, 6, 7, 8
          -- In key order: instances writing at once take the rows' locks in the same order, so
          -- they wait for each other instead of deadlocking.
          order by 3, 2, 4, 5, 6, 7, 8
          on conflict (width, organization_id, bucket_start, project_id, api_key_id, user_id, model, kind)
          do update set ${sql.raw(MEASURES.map((m) => `${m} = r.${m} + excluded.${m}`).join(', '))}
        ),
        marked as (
          -- The hour's roll-ups are stale now; the version tells compaction it missed this write.
          insert into rollup_dirty as d (organization_id, hour)
          select distinct organization_id, date_bin(interval '1 hour', created_at, ${EPOCH})
          from inserted
          order by 1, 2
          on conflict (organization_id, hour) do update set version = d.version + 1
        )
        select organization_id,
               date_bin(interval '1 minute', created_at, ${EPOCH}) as minute,
               sum(cost_nano_usd) as cost,
               count(*) as n
        from inserted
        group by 1, 2
        order by 2`),
    );
    const inserted = spent.reduce((sum, row) => sum + Number(row.n), 0);
    const charges = spent
      .map((row) => ({
        organizationId: row.organization_id,
        at: new Date(row.minute).getTime(),
        cost: Number(row.cost),
      }))
      .filter((charge) => charge.cost > 0);
    const creditDrawn = charges.length > 0 ? await drawCredit(tx, charges, timeZone) : 0;
    return { inserted, creditDrawn };
  });
}

interface Charge {
  organizationId: string;
  /** The minute the usage happened in (ms). */
  at: number;
  cost: number;
}

interface OpenGrant {
  id: string;
  organization_id: string;
  remaining: number;
  created_at: number;
  expires_at: number | null;
}

/**
 * Usage draws on the organizations' credit: each charge, in time order, from the grants that
 * were in force then, the one expiring first first. What a grant cannot cover is simply owed
 * (pay as you go) or, on a plan that stops at zero, refused from then on by the gateway.
 */
async function drawCredit(tx: DbOrTx, charges: Charge[], timeZone: string): Promise<number> {
  const organizations = [...new Set(charges.map((charge) => charge.organizationId))];
  const grants = rowsOf<{
    id: string;
    organization_id: string;
    remaining_nano_usd: string | number;
    created_at: string | Date;
    expires_at: string | Date | null;
  }>(
    await tx.execute(sql`
      select id, organization_id, remaining_nano_usd, created_at, expires_at
      from credit_grants
      where organization_id in (select jsonb_array_elements_text(${JSON.stringify(organizations)}::jsonb))
        and remaining_nano_usd > 0 and voided_at is null
      order by organization_id, expires_at asc nulls last, created_at, id
      for update`),
  ).map(
    (g): OpenGrant => ({
      id: g.id,
      organization_id: g.organization_id,
      remaining: Number(g.remaining_nano_usd),
      created_at: new Date(g.created_at).getTime(),
      expires_at: g.expires_at === null ? null : new Date(g.expires_at).getTime(),
    }),
  );
  if (grants.length === 0) return 0;

  const draws = new Map<
    string,
    { grantId: string; organizationId: string; monthStart: number; amount: number }
  >();
  let total = 0;
  for (const charge of charges) {
    let owed = charge.cost;
    for (const grant of grants) {
      if (owed === 0) break;
      if (grant.organization_id !== charge.organizationId || grant.remaining === 0) continue;
      // In force during that minute: granted before it ended, not expired before it began.
      if (grant.created_at >= charge.at + 60_000) continue;
      if (grant.expires_at !== null && grant.expires_at <= charge.at) continue;
      const take = Math.min(owed, grant.remaining);
      grant.remaining -= take;
      owed -= take;
      total += take;
      const monthStart = periodBounds('month', charge.at, timeZone).start;
      const key = `${grant.id}\u0000${monthStart}`;
      const draw = draws.get(key);
      if (draw) draw.amount += take;
      else
        draws.set(key, {
          grantId: grant.id,
          organizationId: grant.organization_id,
          monthStart,
          amount: take,
        });
    }
  }
  if (draws.size === 0) return 0;

  const touched = grants.filter((grant) => [...draws.values()].some((draw) => draw.grantId === grant.id));
  await tx.execute(sql`
    update credit_grants as g set remaining_nano_usd = v.remaining
    from json_to_recordset(${JSON.stringify(touched.map((g) => ({ id: g.id, remaining: g.remaining })))}::json)
      as v(id text, remaining bigint)
    where g.id = v.id`);
  const drawRows = [...draws.values()].map((draw) => ({
    grant_id: draw.grantId,
    organization_id: draw.organizationId,
    month_start: new Date(draw.monthStart).toISOString(),
    amount: draw.amount,
  }));
  await tx.execute(sql`
    insert into credit_draws (grant_id, organization_id, month_start, amount_nano_usd)
    select grant_id, organization_id, month_start, amount
    from json_to_recordset(${JSON.stringify(drawRows)}::json)
      as v(grant_id text, organization_id text, month_start timestamptz, amount bigint)
    on conflict (grant_id, month_start)
    do update set amount_nano_usd = credit_draws.amount_nano_usd + excluded.amount_nano_usd`);
  return total;
}

/**
 * Recomputes the hour and day roll-ups of marked hours from their minutes, for hours that have
 * ended (the current hour is read from its minutes until then). One instance at a time (an
 * advisory lock: another running now is left to it). A mark is cleared only if no write touched
 * its hour since it was read: a write racing the recompute keeps the hour marked, so it is never
 * left stale. Returns the hours compacted.
 */
/**
 * Replaces the `width` roll-ups of the buckets `buckets` lists (a relation `k(organization_id,
 * bucket)`) with the sums of their `from` rows, in key order as ingest writes.
 */
async function rebuildRollups(
  tx: DbOrTx,
  width: '1h' | '1d',
  from: '1m' | '1h',
  buckets: SQL,
): Promise<void> {
  const target = sql.raw(`'${width}'`);
  const source = sql.raw(`'${from}'`);
  const span = sql.raw(width === '1h' ? "interval '1 hour'" : "interval '1 day'");
  await tx.execute(sql`
    delete from usage_rollups r using ${buckets}
    where r.width = ${target} and r.organization_id = k.organization_id and r.bucket_start = k.bucket`);
  await tx.execute(sql`
    insert into usage_rollups (width, bucket_start, ${DIMENSIONS}, ${MEASURE_COLUMNS})
    select ${target}, k.bucket, f.organization_id, f.project_id, f.api_key_id, f.user_id, f.model, f.kind, ${SUMMED}
    from ${buckets}
    join usage_rollups f on f.width = ${source} and f.organization_id = k.organization_id
      and f.bucket_start >= k.bucket and f.bucket_start < k.bucket + ${span}
    group by 2, 3, 4, 5, 6, 7, 8
    order by 3, 2, 4, 5, 6, 7, 8`);
}

export async function compactRollups(db: Db, limit = 500): Promise<number> {
  return db.transaction(async (tx) => {
    const [lock] = rowsOf<{ locked: boolean }>(
      await tx.execute(sql`select pg_try_advisory_xact_lock(7242012) as locked`),
    );
    if (!lock?.locked) return 0;
    const picked = rowsOf<{ organization_id: string; hour: string | Date; version: string | number }>(
      await tx.execute(sql`
        select organization_id, hour, version from rollup_dirty
        where hour < date_bin(interval '1 hour', now(), ${EPOCH})
        order by organization_id, hour
        limit ${limit}`),
    );
    if (picked.length === 0) return 0;
    const hours = JSON.stringify(
      picked.map((p) => ({
        organization_id: p.organization_id,
        hour: new Date(p.hour).toISOString(),
        version: Number(p.version),
      })),
    );
    const list = sql`json_to_recordset(${hours}::json) as p(organization_id text, hour timestamptz, version bigint)`;
    await rebuildRollups(tx, '1h', '1m', sql`(select p.organization_id, p.hour as bucket from ${list}) as k`);
    // Their days, from the days' hours (a day with an hour still marked is read from its hours
    // and minutes until that hour is compacted too).
    await rebuildRollups(
      tx,
      '1d',
      '1h',
      sql`(select distinct p.organization_id, date_bin(interval '1 day', p.hour, ${EPOCH}) as bucket from ${list}) as k`,
    );
    await tx.execute(sql`
      delete from rollup_dirty d using ${list}
      where d.organization_id = p.organization_id and d.hour = p.hour and d.version = p.version`);
    return picked.length;
  });
}
