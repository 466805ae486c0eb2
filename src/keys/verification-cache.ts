/**
 * In-process cache of secret lookups (hits and misses) with a short TTL. Entries are indexed by
 * key id too, so an update or revocation drops every secret of that key at once.
 */
export class VerificationCache<T> {
  #entries = new Map<string, { value: T | null; keyId: string | null; until: number }>();
  #byKey = new Map<string, Set<string>>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** `undefined` when absent or stale; `null` for a cached miss. */
  get(hash: string, now = this.now()): T | null | undefined {
    const entry = this.#entries.get(hash);
    if (!entry) return undefined;
    if (entry.until <= now) {
      this.#delete(hash);
      return undefined;
    }
    return entry.value;
  }

  set(hash: string, value: T | null, keyId: string | null, now = this.now()): void {
    if (this.ttlMs === 0) return;
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#delete(oldest);
    }
    this.#delete(hash);
    this.#entries.set(hash, { value, keyId, until: now + this.ttlMs });
    if (keyId) {
      const hashes = this.#byKey.get(keyId) ?? new Set<string>();
      hashes.add(hash);
      this.#byKey.set(keyId, hashes);
    }
  }

  invalidateKey(keyId: string): void {
    const hashes = this.#byKey.get(keyId);
    if (!hashes) return;
    for (const hash of hashes) this.#entries.delete(hash);
    this.#byKey.delete(keyId);
  }

  clear(): void {
    this.#entries.clear();
    this.#byKey.clear();
  }

  get size(): number {
    return this.#entries.size;
  }

  #delete(hash: string): void {
    const entry = this.#entries.get(hash);
    if (!entry) return;
    this.#entries.delete(hash);
    if (entry.keyId) {
      const hashes = this.#byKey.get(entry.keyId);
      hashes?.delete(hash);
      if (hashes?.size === 0) this.#byKey.delete(entry.keyId);
    }
  }
}
