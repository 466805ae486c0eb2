/**
 * `npm run bench`: every benchmark, printed as a Markdown table for BENCHMARKS.md.
 * PostgreSQL variants run when KEYPORT_BENCH_DATABASE_URL (or KEYPORT_TEST_DATABASE_URL) is set;
 * they write to a throw-away database they create and drop. `npm run bench -- verify|limiter|metering` runs
 * one group.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { runLimiterBenchmarks } from './limiter.ts';
import { runMeteringBenchmarks } from './metering.ts';
import { machine, type Row, runVerifyBenchmarks } from './verify-key.ts';

async function withScratchDatabase<T>(
  baseUrl: string | undefined,
  run: (url: string | undefined) => Promise<T>,
) {
  if (!baseUrl) return run(undefined);
  const name = `keyport_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  try {
    return await run(url.toString());
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

const baseUrl = process.env.KEYPORT_BENCH_DATABASE_URL ?? process.env.KEYPORT_TEST_DATABASE_URL;
const only = process.argv[2]; // `npm run bench -- limiter` runs one group
const rows: Row[] = [];
if (!only || only === 'verify') rows.push(...(await withScratchDatabase(baseUrl, runVerifyBenchmarks)));
if (!only || only === 'limiter') rows.push(...(await runLimiterBenchmarks()));
if (!only || only === 'metering') rows.push(...(await withScratchDatabase(baseUrl, runMeteringBenchmarks)));

console.log(`\nMachine: ${machine()}\nCommand: npm run bench${baseUrl ? ' (with PostgreSQL)' : ''}\n`);
console.log('| benchmark | result | goal |');
console.log('| --- | --- | --- |');
for (const row of rows) console.log(`| ${row.benchmark} | ${row.result} | ${row.goal} |`);
