/**
 * One process per PGlite data directory: two PGlite instances writing the same directory
 * corrupt it (electric-sql/pglite#1106), so Keyport holds a pid lock file while it has it open.
 *
 * The lock appears with its pid already in it (written aside, then hard-linked into place, which
 * fails if a lock is there): a process starting at the same moment never reads an empty lock and
 * takes it for a stale one. A stale lock (its process gone) is moved aside before it is replaced,
 * and only if what was moved is still that dead process's: of two processes finding the same stale
 * lock, the second cannot delete the lock the first has just taken.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { UserError } from '../core/user-error.ts';

export class DataDirLockedError extends UserError {}

const ATTEMPTS = 5;

export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'keyport.lock');
  const aside = () => `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (tryCreate(file, aside())) {
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(file, { force: true });
      };
    }
    const holder = readPid(file);
    if (holder === undefined) continue; // gone meanwhile: try again
    if (holder !== process.pid && isAlive(holder)) {
      throw new DataDirLockedError(
        `the data directory ${dataDir} is in use by another Keyport process (pid ${holder}). ` +
          'Stop it first, or use the CLI against the running server (keyport keys … talks to it over HTTP).',
      );
    }
    removeStale(file, holder, aside());
  }
  throw new DataDirLockedError(`could not lock ${dataDir}: other processes keep taking its lock`);
}

/** The lock file, made with this process's pid in it; false if one is there. */
function tryCreate(file: string, temporary: string): boolean {
  const fd = openSync(temporary, 'wx');
  try {
    writeSync(fd, String(process.pid));
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temporary, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
}

/** The pid in the lock file; undefined if there is none. NaN (garbage) reads as a dead process. */
function readPid(file: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(file, 'utf8'), 10);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Moves the lock aside; if what moved is not the dead holder's (another process replaced the
 * stale lock meanwhile), puts it back, unless a third has taken the place.
 */
function removeStale(file: string, stalePid: number, temporary: string): void {
  try {
    renameSync(file, temporary);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it
    throw error;
  }
  const moved = readPid(temporary);
  if (moved !== undefined && moved !== stalePid && !(Number.isNaN(moved) && Number.isNaN(stalePid))) {
    try {
      linkSync(temporary, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  rmSync(temporary, { force: true });
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
