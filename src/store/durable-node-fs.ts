/**
 * PGlite's NodeFS never calls fsync: its `syncToFs()` is empty and Emscripten's NODEFS answers
 * fsync without touching the disk (see electric-sql/pglite#1107). Keyport's embedded database
 * must keep what it acknowledged, so after every query PGlite runs we fdatasync the WAL segments
 * that changed. The WAL is what crash recovery replays; a committed transaction is on disk
 * before the HTTP response that reports it. Data files written by checkpoints are synced on close.
 */
import { closeSync, fdatasyncSync, fsyncSync, openSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { NodeFS } from '@electric-sql/pglite/nodefs';

const SEGMENT_NAME = /^[0-9A-F]{24}$/;

export class DurableNodeFS extends NodeFS {
  readonly #walDir: string;
  readonly #dataDir: string;
  /** Segment name → "mtime:size" when last synced. */
  #synced = new Map<string, string>();

  constructor(dataDir: string) {
    super(dataDir);
    this.#dataDir = path.resolve(dataDir);
    this.#walDir = path.join(this.#dataDir, 'pg_wal');
  }

  override async syncToFs(): Promise<void> {
    this.syncWal();
  }

  syncWal(): void {
    let names: string[];
    try {
      names = readdirSync(this.#walDir).filter((name) => SEGMENT_NAME.test(name));
    } catch {
      return; // before initdb has created pg_wal
    }
    let newSegment = false;
    for (const name of names) {
      const file = path.join(this.#walDir, name);
      const stat = statSync(file, { throwIfNoEntry: false });
      if (!stat) continue;
      const version = `${stat.mtimeMs}:${stat.size}`;
      if (this.#synced.get(name) === version) continue;
      if (!this.#synced.has(name)) newSegment = true;
      syncFile(file, fdatasyncSync);
      this.#synced.set(name, version);
    }
    if (newSegment) syncFile(this.#walDir, fsyncSync);
    if (this.#synced.size > names.length) {
      const present = new Set(names);
      for (const name of this.#synced.keys()) if (!present.has(name)) this.#synced.delete(name);
    }
  }

  override async closeFs(): Promise<void> {
    await super.closeFs();
    syncTree(this.#dataDir);
  }
}

function syncFile(file: string, sync: (fd: number) => void): void {
  const fd = openSync(file, 'r');
  try {
    sync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync every file and directory under `dir` (used once, at close, after the shutdown checkpoint). */
function syncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) syncTree(file);
    else if (entry.isFile()) syncFile(file, fsyncSync);
  }
  syncFile(dir, fsyncSync);
}
