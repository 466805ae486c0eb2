import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { DataDirLockedError, lockDataDir } from './data-dir-lock.ts';

const LOCK_MODULE = fileURLToPath(new URL('./data-dir-lock.ts', import.meta.url));
const dirs: string[] = [];
const fresh = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keyport-lock-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

describe('lockDataDir', () => {
  it('holds the directory with its pid until released; a live holder’s lock is refused', () => {
    const dir = fresh();
    const release = lockDataDir(dir);
    expect(readFileSync(path.join(dir, 'keyport.lock'), 'utf8')).toBe(String(process.pid));
    release();
    expect(readdirSync(dir)).toEqual([]);

    writeFileSync(path.join(dir, 'keyport.lock'), String(process.ppid)); // alive: our parent
    expect(() => lockDataDir(dir)).toThrow(DataDirLockedError);
    expect(() => lockDataDir(dir)).toThrow(`in use by another Keyport process (pid ${process.ppid})`);
  });

  it('takes over a lock whose process is gone, or that holds no pid, and leaves nothing aside', () => {
    const dir = fresh();
    for (const stale of [String(deadPid()), '', 'garbage', '0']) {
      writeFileSync(path.join(dir, 'keyport.lock'), stale);
      const release = lockDataDir(dir);
      expect(readFileSync(path.join(dir, 'keyport.lock'), 'utf8')).toBe(String(process.pid));
      expect(readdirSync(dir)).toEqual(['keyport.lock']);
      release();
    }
  });

  it('of processes starting at once on a directory with a stale lock, exactly one gets it', async () => {
    const dir = fresh();
    writeFileSync(path.join(dir, 'keyport.lock'), String(deadPid()));
    // Each child loads the module, says it is ready, waits for "go" and tries, then holds what it
    // got until its stdin closes.
    const script = `
      const { lockDataDir } = await import(${JSON.stringify(LOCK_MODULE)});
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => {
        try { lockDataDir(${JSON.stringify(dir)}); process.stdout.write('got\\n'); }
        catch (error) { process.stdout.write(error.constructor.name + '\\n'); }
        process.stdin.once('end', () => process.exit(0));
      });`;
    const children: { child: ChildProcess; output: string[] }[] = [];
    for (let i = 0; i < 6; i++) {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const output: string[] = [];
      child.stdout!.on('data', (chunk: Buffer) => output.push(...chunk.toString().trim().split('\n')));
      children.push({ child, output });
    }
    const waitFor = async (done: () => boolean) => {
      const deadline = Date.now() + 60_000;
      while (!done()) {
        if (Date.now() > deadline) throw new Error('the children did not answer in time');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    try {
      await waitFor(() => children.every((c) => c.output.includes('ready')));
      for (const { child } of children) child.stdin!.write('go\n');
      await waitFor(() => children.every((c) => c.output.length === 2));
      const outcomes = children.map((c) => c.output[1]);
      expect(outcomes.filter((o) => o === 'got')).toHaveLength(1);
      expect(outcomes.filter((o) => o !== 'got')).toEqual(Array(5).fill('DataDirLockedError'));
      expect(readdirSync(dir)).toEqual(['keyport.lock']);
    } finally {
      for (const { child } of children) child.stdin!.end();
    }
  }, 90_000);
});
