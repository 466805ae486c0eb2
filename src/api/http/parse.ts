/** Request parsing with zod; failures become 400s in OpenAI's shape, naming the parameter. */
import { z } from 'zod';
import { badRequest } from '../../core/errors.ts';
import type { PageRequest } from '../../store/repositories/pagination.ts';

export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: 'body' | 'query',
): z.infer<S> {
  const input = value === undefined || value === null ? {} : value;
  if (where === 'body' && (typeof input !== 'object' || Array.isArray(input))) {
    throw badRequest('The request body must be a JSON object.');
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.map(String).join('.') || null;
  if (issue.code === 'invalid_type' && param && valueAt(input, issue.path) === undefined) {
    throw badRequest(`Missing required parameter: '${param}'.`, param);
  }
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    throw badRequest(`Unrecognized request argument supplied: ${key}`, key);
  }
  throw badRequest(`Invalid '${param ?? where}': ${issue.message}.`, param);
}

/** What the request holds at a zod issue's path (zod 4 leaves `issue.input` out unless asked). */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Query strings carry numbers and booleans as text. */
const queryInt = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
export const queryBoolean = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');

export const pageQuery = {
  after: z.string().min(1).max(128).optional(),
  limit: queryInt(1, 100).default(20),
  order: z.enum(['asc', 'desc']).default('asc'),
};

export function pageRequest(query: {
  after?: string | undefined;
  limit: number;
  order: 'asc' | 'desc';
}): PageRequest {
  return { after: query.after, limit: query.limit, order: query.order };
}

/** `expires_in_seconds` (OpenAI) or `expires_at` (Keyport: unix seconds, null = never) → a Date. */
export const expiresInSeconds = z
  .number()
  .int()
  .min(1)
  .max(10 * 365 * 24 * 3600);
export const expiresAtSeconds = z.number().int().positive().nullable();

export function expiryFrom(
  body: { expires_in_seconds?: number | null | undefined; expires_at?: number | null | undefined },
  now = Date.now(),
): Date | null | undefined {
  if (body.expires_in_seconds != null && body.expires_at !== undefined) {
    throw badRequest('Give either expires_in_seconds or expires_at, not both.', 'expires_at');
  }
  if (body.expires_in_seconds != null) return new Date(now + body.expires_in_seconds * 1000);
  if (body.expires_at === undefined) return undefined;
  return body.expires_at === null ? null : new Date(body.expires_at * 1000);
}

export const unixSeconds = (date: Date): number => Math.floor(date.getTime() / 1000);
export const unixSecondsOrNull = (date: Date | null | undefined): number | null =>
  date ? unixSeconds(date) : null;

/** The client's User-Agent, bounded (it is stored with audit entries and sessions). */
export function userAgentOf(request: {
  headers: Record<string, string | string[] | undefined>;
}): string | null {
  const value = request.headers['user-agent'];
  const text = Array.isArray(value) ? value[0] : value;
  return text ? text.slice(0, 512) : null;
}

/** `name`, `name[]`, repeated, or comma-separated: one list (undefined when absent). */
export function listParam(query: Record<string, unknown>, name: string): string[] | undefined {
  const values = [query[name], query[`${name}[]`]].flat().filter((v): v is string => typeof v === 'string');
  if (values.length === 0) return undefined;
  const list = values
    // A line item's name has a comma in it (`gpt-4o, input`): line_items are never split.
    .flatMap((v) => (name === 'line_items' ? [v] : v.split(',')))
    .map((v) => v.trim())
    .filter(Boolean);
  if (list.length > 1000) throw badRequest(`Too many values for '${name}' (at most 1000).`, name);
  return list;
}
