/**
 * Metering benchmarks:
 *  - sustained ingest: usage events written as the gateway's recorder writes them (ingestUsage:
 *    events, three roll-up widths and credit draws in one transaction), batches of 1000, on
 *    PostgreSQL (goal ≥ 20,000 records/s) and PGlite;
 *  - a 30-day Usage API query grouped by key over 10M records on PostgreSQL (goal ≤ 200 ms): the
 *    records are generated in SQL (at ~20k/s through ingestUsage they would take minutes) and
 *    their roll-ups built with the same aggregation ingestUsage runs; then the Admin API's
 *    `GET /v1/organization/usage/completions?bucket_width=1d&limit=30&group_by[]=api_key_id` is
 *    timed through the real HTTP stack (app.inject), cold and warm; with 200 keys, and with 1000
 *    (30,000 results: the response itself is ~6 MB).
 * KEYPORT_BENCH_RECORDS overrides the 10M (e.g. 1000000 for a quicker run).
 */

import { performance } from 'node:perf_hooks';
import { sql } from 'drizzle-orm';
import { buildApp } from '../src/api/app.ts';
import type { UsageEvent } from '../src/billing/usage-event.ts';
import { ingestUsage } from '../src/billing/usage-store.ts';
import { loadConfig } from '../src/config/config.ts';
import { SYSTEM } from '../src/core/actor.ts';
import { createLogger, createServices } from '../src/services.ts';
import { openStore, type Store } from '../src/store/database.ts';
import { insertOrganization } from '../src/store/repositories/organizations.ts';
import type { Row } from './verify-key.ts';

const MODELS = ['gpt-4o', 'gpt-4o-mini', 'llama-3-70b', 'text-embedding-3-small', 'o3'];

/** A batch as a gateway writes one: consecutive requests (5 per ms), 500 keys, 5 models. */
function batchOf(organizationId: string, n: number, offset: number, at: number): UsageEvent[] {
  return Array.from({ length: n }, (_, j) => {
    const i = offset + j;
    const key = (i * 7919) % 500;
    const input = 200 + (i % 1800);
    const output = 50 + (i % 700);
    return {
      requestId: `req_bench_${organizationId}_${i}`,
      createdAt: new Date(at + i / 5),
      organizationId,
      projectId: `proj_${key % 20}`,
      apiKeyId: `key_${key}`,
      userId: `user-${key % 50}`,
      serviceAccountId: null,
      method: 'POST',
      endpoint: '/v1/chat/completions',
      model: MODELS[(i * 31) % MODELS.length]!,
      upstream: 'bench',
      kind: 'completions',
      inputTokens: input,
      cachedTokens: i % 5 === 0 ? 100 : 0,
      outputTokens: output,
      units: 0,
      status: 200,
      latencyMs: 20,
      clientIp: '10.0.0.1',
      streamed: i % 2 === 0,
      estimated: false,
      costNanoUsd: input * 2500 + output * 10_000,
      costInputNanoUsd: input * 2500,
      costCachedNanoUsd: 0,
      costOutputNanoUsd: output * 10_000,
      costUnitsNanoUsd: 0,
    };
  });
}

/** `writers` concurrent writers (gateway instances), each writing batches of 1000 in a loop. */
async function ingestRate(store: Store, label: string, total: number, writers = 1): Promise<Row> {
  const org = await insertOrganization(store.db, `Ingest ${label} ${writers}`);
  const batch = 1000;
  const at = Date.now();
  let offset = 0;
  const next = () => {
    const events = batchOf(org.id, batch, offset, at);
    offset += batch;
    return events;
  };
  await ingestUsage(store.db, next(), 'UTC'); // warm up plans and connections
  const start = performance.now();
  let written = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (written < total) {
        written += batch;
        await ingestUsage(store.db, next(), 'UTC');
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return {
    benchmark: `sustained ingest on ${label}, ${writers} writer${writers > 1 ? 's' : ''} (${total.toLocaleString('en-US')} records, batches of ${batch}: records, minute roll-ups, hour marks, credit)`,
    result: `${Math.round(written / seconds).toLocaleString('en-US')} records/s`,
    goal: label === 'PostgreSQL' ? '≥ 20,000 /s' : 'recorded',
  };
}

/** 10M records over 30 days, written and rolled up in SQL; then the Usage API, timed. */
async function usageQuery(databaseUrl: string, records: number, keys: number): Promise<Row[]> {
  const config = loadConfig(
    {},
    { databaseUrl, logLevel: 'silent', mockUpstream: 'off', usageJournal: 'off' },
  );
  const services = await createServices(config, { logger: createLogger(config) });
  const app = await buildApp(services);
  try {
    const organization = await insertOrganization(services.store.db, 'Usage query');
    const adminKey = await services.keys.create(
      {
        organizationId: organization.id,
        kind: 'admin',
        name: 'bench',
        ownerUserId: null,
      },
      SYSTEM('bench'),
    );
    const end = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    const start = end - 30 * 86_400_000;
    const generated = performance.now();
    const db = services.store.db;
    await db.execute(sql`
      insert into usage_events (request_id, created_at, organization_id, project_id, api_key_id, user_id,
        method, endpoint, model, upstream, kind, input_tokens, cached_tokens, output_tokens, status,
        latency_ms, streamed, estimated, cost_nano_usd, cost_input_nano_usd, cost_output_nano_usd)
      select 'req_g_' || ${keys} || '_' || i, to_timestamp(${start / 1000} + (i::float8 * ${(end - start) / 1000} / ${records})),
        ${organization.id}, 'proj_' || (i % 50), 'key_' || (i % ${keys}), 'user-' || (i % 200),
        'POST', '/v1/chat/completions', (array['gpt-4o','gpt-4o-mini','llama-3-70b','o3'])[1 + (i / 250) % 4],
        'bench', 'completions', 200 + i % 1800, 0, 50 + i % 700, 200, 20, false, false,
        (200 + i % 1800) * 2500 + (50 + i % 700) * 10000, (200 + i % 1800) * 2500, (50 + i % 700) * 10000
      from generate_series(1, ${records}) as i`);
    // The roll-ups of exactly those records, with the aggregation ingestUsage uses.
    await db.execute(sql`
      insert into usage_rollups (width, bucket_start, organization_id, project_id, api_key_id, user_id, model, kind,
        requests, errors, input_tokens, cached_tokens, output_tokens, units,
        cost_input_nano_usd, cost_cached_nano_usd, cost_output_nano_usd, cost_units_nano_usd)
      select w.width, to_timestamp(floor(extract(epoch from e.created_at) / w.seconds) * w.seconds) as bucket,
        e.organization_id, coalesce(e.project_id, ''), e.api_key_id, coalesce(e.user_id, e.service_account_id, ''),
        coalesce(e.model, ''), e.kind, count(*),
        count(*) filter (where e.status >= 400 and e.input_tokens + e.output_tokens + e.units = 0),
        sum(e.input_tokens), sum(e.cached_tokens), sum(e.output_tokens), sum(e.units),
        sum(e.cost_input_nano_usd), sum(e.cost_cached_nano_usd), sum(e.cost_output_nano_usd), sum(e.cost_units_nano_usd)
      from usage_events e cross join (values ('1m', 60), ('1h', 3600), ('1d', 86400)) as w (width, seconds)
      where e.organization_id = ${organization.id}
      group by 1, 2, 3, 4, 5, 6, 7, 8`);
    await db.execute(sql`analyze usage_rollups`);
    const setupSeconds = (performance.now() - generated) / 1000;

    const url = `/v1/organization/usage/completions?start_time=${start / 1000}&end_time=${end / 1000}&bucket_width=1d&limit=30&group_by[]=api_key_id`;
    const call = async () => {
      const t0 = performance.now();
      const response = await app.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${adminKey.secret}` },
      });
      const ms = performance.now() - t0;
      if (response.statusCode !== 200) throw new Error(`usage query failed: ${response.body}`);
      const body = response.json() as { data: { results: unknown[] }[] };
      return {
        ms,
        buckets: body.data.length,
        results: body.data.reduce((sum, b) => sum + b.results.length, 0),
      };
    };
    const cold = await call();
    const samples: number[] = [];
    for (let i = 0; i < 20; i++) samples.push((await call()).ms);
    samples.sort((a, b) => a - b);
    return [
      {
        benchmark: `Usage API, 30 days × 1d grouped by api_key_id over ${records.toLocaleString('en-US')} records, ${keys} keys, on PostgreSQL (${cold.results.toLocaleString('en-US')} results in ${cold.buckets} buckets): first call / p50 / p95 of 20`,
        result: `${cold.ms.toFixed(0)} ms / ${samples[10]!.toFixed(0)} ms / ${samples[18]!.toFixed(0)} ms`,
        goal: '≤ 200 ms',
      },
      {
        benchmark: 'setting that up: generating the records and their roll-ups in SQL',
        result: `${setupSeconds.toFixed(0)} s`,
        goal: 'recorded',
      },
    ];
  } finally {
    await app.close();
    await services.close();
  }
}

export async function runMeteringBenchmarks(postgresUrl: string | undefined): Promise<Row[]> {
  const rows: Row[] = [];
  if (postgresUrl) {
    const store = await openStore({ databaseUrl: postgresUrl, poolSize: 4 });
    try {
      rows.push(await ingestRate(store, 'PostgreSQL', 200_000, 1));
      rows.push(await ingestRate(store, 'PostgreSQL', 200_000, 2));
    } finally {
      await store.close();
    }
  }
  const pglite = await openStore({ dataDir: 'memory' });
  try {
    rows.push(await ingestRate(pglite, 'PGlite (in-memory)', 50_000));
  } finally {
    await pglite.close();
  }
  if (postgresUrl) {
    const records = Number(process.env.KEYPORT_BENCH_RECORDS ?? 10_000_000);
    for (const keys of [200, 1000]) rows.push(...(await usageQuery(postgresUrl, records, keys)));
  }
  return rows;
}
