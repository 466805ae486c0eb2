/**
 * The usage journal: every usage event is appended to a local file before the response's last
 * byte leaves, so a completed request's record survives the process dying right after (kill -9,
 * an out-of-memory kill, a crash). The append is one `write(2)`: once it returns, the bytes are
 * the kernel's, and a process death cannot take them back. A machine crash can, until they reach
 * the disk: `fdatasync` runs every `syncMs` on the thread pool (group commit, off the event loop),
 * which bounds that window without putting a disk flush on any request's path.
 *
 * Files are segments (`000000000001.jsonl`, one event per line); a segment is deleted once every
 * event in it is in the database. At start, the segments left by the previous process are
 * replayed: the database ignores events it already has (idempotent by request id).
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { lockDataDir } from '../store/data-dir-lock.ts';
import { fromRow, type UsageEvent } from './usage-event.ts';

const SEGMENT = /^(\d{12})\.jsonl$/;

export interface JournalOptions {
  /** fdatasync at most this often while there are unsynced appends. */
  syncMs?: number;
  /** A segment is closed and a new one started past this size. */
  segmentBytes?: number;
  onError?: (error: unknown, what: string) => void;
}

export interface ReplayedSegment {
  seq: number;
  events: UsageEvent[];
  /** Lines that were not events (a torn last line after a machine crash). */
  skipped: number;
}

export class UsageJournal {
  readonly dir: string;
  readonly #syncMs: number;
  readonly #segmentBytes: number;
  readonly #onError: (error: unknown, what: string) => void;
  readonly #unlock: () => void;
  #fd: number | undefined;
  #seq = 0;
  /** The highest segment number seen on disk. */
  #highest = 0;
  #size = 0;
  #dirty = false;
  /** The descriptor a background fdatasync is running on; it is closed only after. */
  #syncingFd: number | undefined;
  #afterSync: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Appended and not yet committed, per open or closed segment. */
  readonly #outstanding = new Map<number, number>();
  #closed = false;

  constructor(dir: string, options: JournalOptions = {}) {
    this.dir = dir;
    this.#syncMs = options.syncMs ?? 100;
    this.#segmentBytes = options.segmentBytes ?? 16 * 1024 * 1024;
    this.#onError = options.onError ?? (() => {});
    mkdirSync(dir, { recursive: true });
    // Two processes appending to one journal would delete each other's segments.
    this.#unlock = lockDataDir(dir);
  }

  /** Segment numbers on disk, oldest first. */
  segments(): number[] {
    const found = readdirSync(this.dir)
      .map((name) => SEGMENT.exec(name)?.[1])
      .filter((seq): seq is string => seq !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    this.#highest = Math.max(this.#highest, found[found.length - 1] ?? 0);
    return found;
  }

  /** The events of a segment on disk (for replay). */
  read(seq: number): ReplayedSegment {
    const text = readFileSync(this.#file(seq), 'utf8');
    const events: UsageEvent[] = [];
    let skipped = 0;
    for (const line of text.split('\n')) {
      if (line.length === 0) continue;
      let event: UsageEvent | undefined;
      try {
        event = fromRow(JSON.parse(line));
      } catch {
        event = undefined;
      }
      if (event) events.push(event);
      else skipped++;
    }
    return { seq, events, skipped };
  }

  /** Starts appending to a new segment after those on disk. */
  open(): void {
    this.segments();
    // Numbers keep growing past the segments replayed and deleted: a name is never reused.
    this.#seq = this.#highest;
    this.#startSegment();
    this.#timer = setInterval(this.#sync, this.#syncMs);
    this.#timer.unref();
  }

  /**
   * Appends an event, as `serializeEvent` made it (one line of JSON); returns its segment, to hand
   * back to `committed` once the database has it. Throws when the disk refuses the write (full,
   * read-only): the caller still has the event.
   */
  append(serialized: string): number {
    if (this.#fd === undefined) throw new Error('the usage journal is not open');
    const line = `${serialized}\n`;
    const bytes = Buffer.byteLength(line);
    if (this.#size + bytes > this.#segmentBytes && this.#size > 0) this.#rotate();
    writeSync(this.#fd, line);
    this.#size += bytes;
    this.#dirty = true;
    this.#outstanding.set(this.#seq, (this.#outstanding.get(this.#seq) ?? 0) + 1);
    return this.#seq;
  }

  /** The database has `count` more events of segment `seq`: a closed segment holding no others goes. */
  committed(seq: number, count: number): void {
    const left = (this.#outstanding.get(seq) ?? 0) - count;
    if (left > 0) {
      this.#outstanding.set(seq, left);
      return;
    }
    this.#outstanding.delete(seq);
    if (seq !== this.#seq) this.remove(seq);
    // The open segment is drained too: start afresh, so the file does not grow for ever.
    else if (this.#size > 1024 * 1024) this.#rotate();
  }

  /** Deletes a segment whose events are all in the database. */
  remove(seq: number): void {
    if (seq === this.#seq && !this.#closed) return;
    this.#outstanding.delete(seq);
    rmSync(this.#file(seq), { force: true });
  }

  /** Closed segments whose events are not all committed (to replay after an overflow). */
  pendingClosedSegments(): number[] {
    return this.segments().filter((seq) => seq !== this.#seq);
  }

  /** Closes the current segment (its events still to be committed) and starts a new one. */
  rotate(): void {
    this.#rotate();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#fd !== undefined) {
      this.#retire(this.#fd);
      this.#fd = undefined;
    }
    while (this.#syncingFd !== undefined) await new Promise((resolve) => setTimeout(resolve, 1));
    if (!this.#outstanding.has(this.#seq)) rmSync(this.#file(this.#seq), { force: true });
    this.#unlock();
  }

  #rotate(): void {
    const previous = this.#seq;
    if (this.#fd !== undefined) this.#retire(this.#fd);
    this.#startSegment();
    if (!this.#outstanding.has(previous)) rmSync(this.#file(previous), { force: true });
  }

  #startSegment(): void {
    this.#seq += 1;
    this.#fd = openSync(this.#file(this.#seq), 'a');
    this.#size = 0;
    this.#dirty = false;
  }

  /** Syncs and closes a finished segment's descriptor; after the background sync if one runs on it. */
  #retire(fd: number): void {
    const finish = () => {
      try {
        fdatasyncSync(fd);
      } catch (error) {
        this.#onError(error, 'usage journal sync failed');
      }
      closeSync(fd);
    };
    if (this.#syncingFd === fd) this.#afterSync = finish;
    else finish();
  }

  readonly #sync = (): void => {
    if (!this.#dirty || this.#syncingFd !== undefined || this.#fd === undefined) return;
    const fd = this.#fd;
    this.#dirty = false;
    this.#syncingFd = fd;
    fdatasync(fd, (error) => {
      this.#syncingFd = undefined;
      if (error) {
        if (fd === this.#fd) this.#dirty = true;
        this.#onError(error, 'usage journal sync failed');
      }
      const after = this.#afterSync;
      this.#afterSync = undefined;
      after?.();
    });
  };

  #file(seq: number): string {
    return path.join(this.dir, `${String(seq).padStart(12, '0')}.jsonl`);
  }
}
