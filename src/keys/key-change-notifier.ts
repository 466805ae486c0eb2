/**
 * Tells every instance's verifier that keys changed (and the limits cache that an organization's
 * limits changed). In-process it just invalidates the local caches; on PostgreSQL it also
 * broadcasts with NOTIFY so other instances drop theirs within moments rather than after the TTL.
 */
import type pg from 'pg';
import type { KeyVerifier } from './verify-key.ts';

export interface KeyChangeNotifier {
  keyChanged(keyId: string): Promise<void>;
  /** Many keys at once: a project archived, its IP allow-list changed. */
  allChanged(): Promise<void>;
  /** An organization's rate limits, budgets or spend alerts changed. */
  limitsChanged(organizationId: string): Promise<void>;
  /** Who drops cached limits (set once the limits cache exists). */
  onLimitsChanged(listener: (organizationId: string) => void): void;
  close(): Promise<void>;
}

export class LocalKeyChangeNotifier implements KeyChangeNotifier {
  #limitsListener: (organizationId: string) => void = () => {};
  constructor(private readonly verifier: KeyVerifier) {}
  onLimitsChanged(listener: (organizationId: string) => void): void {
    this.#limitsListener = listener;
  }
  async limitsChanged(organizationId: string): Promise<void> {
    this.#limitsListener(organizationId);
  }
  async keyChanged(keyId: string): Promise<void> {
    this.verifier.invalidateKey(keyId);
  }
  async allChanged(): Promise<void> {
    this.verifier.invalidateAll();
  }
  async close(): Promise<void> {}
}

const CHANNEL = 'keyport_key_changes';
const ALL = '*';
/** Payload prefix for "this organization's limits changed" (key ids never start with it). */
const LIMITS = 'limits:';

export class PostgresKeyChangeNotifier implements KeyChangeNotifier {
  #listener: pg.PoolClient | undefined;
  #closed = false;
  #limitsListener: (organizationId: string) => void = () => {};

  private constructor(
    private readonly pool: pg.Pool,
    private readonly verifier: KeyVerifier,
    private readonly onError: (error: unknown) => void,
  ) {}

  static async start(pool: pg.Pool, verifier: KeyVerifier, onError: (error: unknown) => void) {
    const notifier = new PostgresKeyChangeNotifier(pool, verifier, onError);
    await notifier.listen();
    return notifier;
  }

  private async listen(): Promise<void> {
    const client = await this.pool.connect();
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL) return;
      if (message.payload === ALL || !message.payload) this.verifier.invalidateAll();
      else if (message.payload.startsWith(LIMITS)) this.#limitsListener(message.payload.slice(LIMITS.length));
      else this.verifier.invalidateKey(message.payload);
    });
    client.on('error', (error) => {
      // The connection broke: anything may have changed meanwhile, so drop the cache and listen again.
      this.onError(error);
      client.release(true);
      this.#listener = undefined;
      this.verifier.invalidateAll();
      this.#limitsListener(ALL);
      if (!this.#closed) setTimeout(() => void this.listen().catch(this.onError), 1000).unref();
    });
    await client.query(`LISTEN ${CHANNEL}`);
    this.#listener = client;
  }

  async keyChanged(keyId: string): Promise<void> {
    this.verifier.invalidateKey(keyId);
    await this.pool.query('select pg_notify($1, $2)', [CHANNEL, keyId]);
  }

  async allChanged(): Promise<void> {
    this.verifier.invalidateAll();
    await this.pool.query('select pg_notify($1, $2)', [CHANNEL, ALL]);
  }

  onLimitsChanged(listener: (organizationId: string) => void): void {
    this.#limitsListener = listener;
  }

  async limitsChanged(organizationId: string): Promise<void> {
    this.#limitsListener(organizationId);
    await this.pool.query('select pg_notify($1, $2)', [CHANNEL, LIMITS + organizationId]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const client = this.#listener;
    this.#listener = undefined;
    if (client) {
      await client.query(`UNLISTEN ${CHANNEL}`).catch(() => {});
      client.release();
    }
  }
}
