import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openStore, type Store } from './database.ts';
import { PGliteProxy } from './pglite-proxy.ts';

describe('the embedded database on its own thread', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function open(dataDir: string, onPgliteRestart?: (cause: Error) => void) {
    const store = await openStore({ dataDir, ...(onPgliteRestart ? { onPgliteRestart } : {}) });
    cleanups.push(() => store.close());
    const proxy = store.pglite as PGliteProxy;
    expect(proxy).toBeInstanceOf(PGliteProxy);
    return { store, proxy };
  }

  const count = async (store: Store) =>
    (await (store.pglite as PGliteProxy).query<{ n: number }>('select count(*)::int as n from t')).rows[0]!.n;

  it('starts again on its data directory when the thread dies: committed rows are there, the open transaction is lost', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keyport-pglite-crash-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const restarts: Error[] = [];
    const { store, proxy } = await open(dir, (cause) => restarts.push(cause));
    await proxy.exec('create table t (v int)');
    await proxy.query('insert into t values (1)');

    const lost = proxy.transaction(async (tx) => {
      await tx.query('insert into t values (2)');
      await proxy.simulateCrash();
      await tx.query('insert into t values (3)');
    });
    await expect(lost).rejects.toThrow(/database thread/);

    expect(await count(store)).toBe(1); // a new thread, the committed row, nothing of the transaction
    expect(restarts).toHaveLength(1);
    expect(proxy.generation).toBe(2);
    // And it works as before: transactions commit.
    await proxy.transaction(async (tx) => {
      await tx.query('insert into t values (4)');
    });
    expect(await count(store)).toBe(2);
  });

  it('a transaction begun before the thread died is never continued on the new one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keyport-pglite-crash-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const { store, proxy } = await open(dir);
    await proxy.exec('create table t (v int)');
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => {
      resume = resolve;
    });
    let begun = false;
    const stale = proxy.transaction(async (tx) => {
      await tx.query('insert into t values (1)');
      begun = true;
      await paused; // meanwhile the thread dies and another caller starts a new one
      await tx.query('insert into t values (2)');
    });
    // Begun, and written to, on the old thread (however long a busy machine takes), then it dies.
    await vi.waitFor(() => expect(begun).toBe(true), { timeout: 10_000, interval: 10 });
    await proxy.simulateCrash();
    expect(await count(store)).toBe(0);
    // A transaction of the new thread is open when the stale one tries to go on.
    const fresh = proxy.transaction(async (tx) => {
      await tx.query('insert into t values (10)');
      resume();
      await expect(stale).rejects.toThrow(/transaction was lost/);
      await tx.query('insert into t values (11)');
    });
    await fresh;
    const values = (
      (await proxy.query<{ v: number }>('select v from t order by v')).rows as { v: number }[]
    ).map((r) => r.v);
    expect(values).toEqual([10, 11]);
  });

  it('an in-memory database dies with its thread: calls fail, nothing pretends to be that database', async () => {
    const { proxy } = await open('memory');
    await proxy.exec('create table t (v int)');
    await proxy.simulateCrash();
    await expect(proxy.query('select 1')).rejects.toThrow(/database thread exited/);
  });
});
