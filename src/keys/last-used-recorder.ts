/**
 * `last_used_at` without a database write per request: uses are coalesced in memory and written
 * in one statement every `flushMs` (and on shutdown). Reads merge the pending value, so an API
 * response is never staler than the last request that used the key on this instance.
 */
import type { Db } from '../store/database.ts';
import { writeLastUsed } from '../store/repositories/api-keys.ts';

export class LastUsedRecorder {
  /** Key id → epoch milliseconds of its latest use here. */
  #pending = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly flushMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    this.#timer ??= setInterval(() => void this.flush(), this.flushMs);
    this.#timer.unref();
  }

  /** On the verification hot path: a map write, no allocation. */
  record(keyId: string, atMs: number): void {
    const current = this.#pending.get(keyId);
    if (current === undefined || current < atMs) this.#pending.set(keyId, atMs);
  }

  /** The freshest of the stored and the pending time. */
  merge(keyId: string, stored: Date | null): Date | null {
    const pending = this.#pending.get(keyId);
    if (pending === undefined) return stored;
    return !stored || pending > stored.getTime() ? new Date(pending) : stored;
  }

  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (this.#pending.size === 0) return;
      const batch = this.#pending;
      this.#pending = new Map();
      try {
        await writeLastUsed(this.db, new Map([...batch].map(([id, ms]) => [id, new Date(ms)])));
      } catch (error) {
        // Put the batch back (newer pending values win) and try again next time.
        for (const [id, at] of batch) this.record(id, at);
        this.onError(error);
      }
    });
    return this.#flushing;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
