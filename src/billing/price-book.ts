/**
 * The prices the gateway charges: the operator's rows in `model_prices` (effective-dated), then
 * the config file's `prices`, then OpenAI's list prices, else free. Held in memory (the gateway
 * prices every request), reloaded when a price is added (on every instance, through the change
 * notifier) and every minute as a backstop. Prices are the operator's, for the whole instance:
 * their changes are audited in the operator's organization (the one whose key made them).
 */
import { and, asc, eq, gt } from 'drizzle-orm';
import { type Actor, actorId } from '../core/actor.ts';
import { badRequest, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import {
  type CostBreakdown,
  DEFAULT_PRICES,
  type ModelPrice,
  PriceList,
  type PriceRule,
  type TokenCounts,
} from '../core/pricing.ts';
import { recordAudit } from '../guard/audit-log.ts';
import type { Db } from '../store/database.ts';
import { type ModelPriceRow, modelPrices } from '../store/schema.ts';

export interface PriceInput extends ModelPrice {
  model: string;
  /** ms since the epoch; default now. */
  effectiveFrom?: number | undefined;
}

/** One line of the price list as the Admin API shows it. */
export interface PriceEntry extends ModelPrice {
  id: string | null;
  model: string;
  effectiveFrom: number | null;
  /** `database`, `config` or `default` (OpenAI's list price). */
  source: 'database' | 'config' | 'default';
  /** False for a database price not in effect yet, or superseded by a later one. */
  current: boolean;
}

const MAX_USD_PER_MILLION = 100_000;

export class PriceBook {
  #list: PriceList;
  #rows: ModelPriceRow[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly configRules: readonly PriceRule[],
    /** Tells the other instances (and this one) that prices changed. */
    private readonly changed: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.#list = new PriceList(configRules);
  }

  async start(reloadMs = 60_000): Promise<void> {
    await this.reload();
    this.#timer = setInterval(() => void this.reload().catch(this.onError), reloadMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async reload(): Promise<void> {
    const rows = await this.db
      .select()
      .from(modelPrices)
      .orderBy(asc(modelPrices.effectiveFrom), asc(modelPrices.createdAt));
    this.#rows = rows;
    this.#list = new PriceList([
      ...rows.map((row) => ({ ...row, effectiveFrom: row.effectiveFrom.getTime(), source: row.id })),
      ...this.configRules.map((rule) => ({ ...rule, source: 'config' })),
    ]);
  }

  costOf(model: string | null | undefined, tokens: TokenCounts, at = Date.now()): CostBreakdown {
    return this.#list.costOf(model, tokens, at);
  }

  priceOf(model: string | null | undefined, at = Date.now()): ModelPrice {
    return this.#list.priceOf(model, at);
  }

  /**
   * Adds a price (a change from `effectiveFrom` on: what was recorded before keeps its cost),
   * audited in `organizationId`, the operator's.
   */
  async set(organizationId: string, input: PriceInput, actor: Actor): Promise<ModelPriceRow> {
    validate(input);
    const now = this.now();
    const effectiveFrom = input.effectiveFrom ?? now;
    if (effectiveFrom < now - 60_000) {
      throw badRequest(
        'effective_at is in the past: a price applies from now or later, so recorded costs never change.',
        'effective_at',
      );
    }
    const row = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .insert(modelPrices)
        .values({
          id: newId('price'),
          model: input.model,
          input: input.input,
          cachedInput: input.cachedInput ?? null,
          output: input.output,
          unit: input.unit ?? null,
          effectiveFrom: new Date(effectiveFrom),
          createdBy: actorId(actor),
        })
        .returning();
      await recordAudit(tx, {
        organizationId,
        type: 'price.updated',
        actor,
        resourceId: row!.id,
        details: {
          id: row!.id,
          changes_requested: {
            model: input.model,
            input: input.input,
            ...(input.cachedInput !== undefined ? { cached_input: input.cachedInput } : {}),
            output: input.output,
            ...(input.unit !== undefined ? { unit: input.unit } : {}),
            effective_at: Math.floor(effectiveFrom / 1000),
          },
        },
      });
      return row!;
    });
    // In effect here before this returns; the other instances reload on the announcement.
    await this.reload();
    await this.changed();
    return row;
  }

  /** Deletes a price that has not taken effect yet (one in effect is history: supersede it instead). */
  async remove(organizationId: string, id: string, actor: Actor): Promise<void> {
    const now = this.now();
    const row =
      this.#rows.find((r) => r.id === id) ??
      (await this.db.select().from(modelPrices).where(eq(modelPrices.id, id)))[0];
    if (!row) throw notFound('price', id);
    if (row.effectiveFrom.getTime() <= now) {
      throw badRequest(
        `Price ${id} is already in effect and has priced requests; add a new price to change it.`,
        'price_id',
      );
    }
    await this.db.transaction(async (tx) => {
      // Still in the future, and still there (another instance may have deleted it).
      const deleted = await tx
        .delete(modelPrices)
        .where(and(eq(modelPrices.id, id), gt(modelPrices.effectiveFrom, new Date(now))))
        .returning({ id: modelPrices.id });
      if (deleted.length === 0) throw notFound('price', id);
      await recordAudit(tx, {
        organizationId,
        type: 'price.deleted',
        actor,
        resourceId: id,
        details: { id },
      });
    });
    await this.reload();
    await this.changed();
  }

  /** The whole list: database rows (past, current and future), config rules, OpenAI's list prices. */
  entries(now = Date.now()): PriceEntry[] {
    const entries: PriceEntry[] = [];
    for (const row of this.#rows) {
      const rule = this.#list.ruleFor(row.model, now);
      entries.push({
        id: row.id,
        model: row.model,
        input: row.input,
        cachedInput: row.cachedInput,
        output: row.output,
        unit: row.unit,
        effectiveFrom: row.effectiveFrom.getTime(),
        source: 'database',
        current: rule?.source === row.id,
      });
    }
    for (const rule of this.configRules) {
      const inEffect = this.#list.ruleFor(rule.model, now);
      const current = inEffect?.source === 'config' && inEffect.model === rule.model;
      entries.push({ ...rule, id: null, effectiveFrom: null, source: 'config', current });
    }
    for (const [model, price] of Object.entries(DEFAULT_PRICES)) {
      entries.push({
        ...price,
        id: null,
        model,
        effectiveFrom: null,
        source: 'default',
        current: this.#list.ruleFor(model, now) === undefined,
      });
    }
    return entries;
  }
}

function validate(input: PriceInput): void {
  if (!/^[A-Za-z0-9._:/@+*?[\]{}!-]{1,200}$/.test(input.model)) {
    throw badRequest('Invalid model: a model name or a glob such as llama-*.', 'model');
  }
  const check = (value: number | null | undefined, param: string, max = MAX_USD_PER_MILLION) => {
    if (value === undefined || value === null) return;
    if (!Number.isFinite(value) || value < 0 || value > max) {
      throw badRequest(`Invalid ${param}: USD, from 0 to ${max}.`, param);
    }
  };
  check(input.input, 'input');
  check(input.cachedInput, 'cached_input');
  check(input.output, 'output');
  check(input.unit, 'unit', 1000);
}
