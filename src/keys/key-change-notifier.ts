/**
 * Tells every instance's verifier that keys changed, and other caches that what they hold changed
 * (topics: an organization's limits, the price list, an organization's billing). In-process it
 * just invalidates the local caches; on PostgreSQL it also broadcasts with NOTIFY so other
 * instances drop theirs within moments rather than after the TTL.
 */
import type pg from 'pg';
import type { KeyVerifier } from './verify-key.ts';

/** Caches other than the key cache; the id says what changed (`*`: everything). */
export const TOPICS = ['limits', 'prices', 'billing'] as const;
export type Topic = (typeof TOPICS)[number];
type Listener = (id: string) => void;

const CHANNEL = 'keyport_key_changes';
const ALL = '*';

export interface KeyChangeNotifier {
  keyChanged(keyId: string): Promise<void>;
  /** Many keys at once: a project archived, its IP allow-list changed. */
  allChanged(): Promise<void>;
  /** Something under `topic` changed (an organization's limits: its id). */
  changed(topic: Topic, id: string): Promise<void>;
  /** Who drops the topic's cache. */
  on(topic: Topic, listener: Listener): void;
  close(): Promise<void>;
}

class TopicListeners {
  readonly #listeners = new Map<Topic, Listener[]>();
  add(topic: Topic, listener: Listener): void {
    this.#listeners.set(topic, [...(this.#listeners.get(topic) ?? []), listener]);
  }
  emit(topic: Topic, id: string): void {
    for (const listener of this.#listeners.get(topic) ?? []) listener(id);
  }
  emitAll(): void {
    for (const topic of TOPICS) this.emit(topic, ALL);
  }
}

export class LocalKeyChangeNotifier implements KeyChangeNotifier {
  readonly #topics = new TopicListeners();
  constructor(private readonly verifier: KeyVerifier) {}
  on(topic: Topic, listener: Listener): void {
    this.#topics.add(topic, listener);
  }
  async changed(topic: Topic, id: string): Promise<void> {
    this.#topics.emit(topic, id);
  }
  async keyChanged(keyId: string): Promise<void> {
    this.verifier.invalidateKey(keyId);
  }
  async allChanged(): Promise<void> {
    this.verifier.invalidateAll();
  }
  async close(): Promise<void> {}
}

/** A topic's payload is `<topic>:<id>`; key ids never contain a colon. */
const TOPIC_PAYLOAD = /^(limits|prices|billing):(.*)$/s;

export class PostgresKeyChangeNotifier implements KeyChangeNotifier {
  #listener: pg.PoolClient | undefined;
  #closed = false;
  readonly #topics = new TopicListeners();

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
    this.#listener = client;
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL) return;
      const topic = message.payload ? TOPIC_PAYLOAD.exec(message.payload) : null;
      if (message.payload === ALL || !message.payload) this.verifier.invalidateAll();
      else if (topic) this.#topics.emit(topic[1] as Topic, topic[2]!);
      else this.verifier.invalidateKey(message.payload);
    });
    client.on('error', (error) => {
      // Released already (closed, or an error before): the pool owns it now, nothing to do.
      if (this.#listener !== client) return;
      // The connection broke: anything may have changed meanwhile, so drop the cache and listen again.
      this.onError(error);
      client.release(true);
      this.#listener = undefined;
      this.verifier.invalidateAll();
      this.#topics.emitAll();
      if (!this.#closed) setTimeout(() => void this.listen().catch(this.onError), 1000).unref();
    });
    try {
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      if (this.#listener === client) {
        this.#listener = undefined;
        client.release(true);
      }
      throw error;
    }
  }

  async keyChanged(keyId: string): Promise<void> {
    this.verifier.invalidateKey(keyId);
    await this.pool.query('select pg_notify($1, $2)', [CHANNEL, keyId]);
  }

  async allChanged(): Promise<void> {
    this.verifier.invalidateAll();
    await this.pool.query('select pg_notify($1, $2)', [CHANNEL, ALL]);
  }

  on(topic: Topic, listener: Listener): void {
    this.#topics.add(topic, listener);
  }

  async changed(topic: Topic, id: string): Promise<void> {
    this.#topics.emit(topic, id);
    await this.pool.query('select pg_notify($1, $2)', [CHANNEL, `${topic}:${id}`]);
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
