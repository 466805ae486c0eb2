/**
 * Pages of time buckets, as OpenAI's Usage and Costs APIs page them: a page is up to `limit`
 * buckets from `from`, and `next_page` is an opaque cursor to the first bucket after it.
 */
import { badRequest } from '../../core/errors.ts';

/** The first bucket of the page a `page` cursor names (or of the range, without one). */
export function pageStart(page: string | undefined, rangeStart: number, stepMs: number): number {
  if (page === undefined) return rangeStart;
  const decoded = Number(Buffer.from(page, 'base64url').toString('utf8'));
  if (!Number.isInteger(decoded) || decoded < rangeStart || decoded % stepMs !== 0) {
    throw badRequest("Invalid 'page': use the next_page of the previous response.", 'page');
  }
  return decoded;
}

/** The page's bucket starts, where it ends, and the cursor of the next page (null: none). */
export function pageBuckets(from: number, end: number, stepMs: number, limit: number) {
  const starts: number[] = [];
  for (let t = from; t < end && starts.length < limit; t += stepMs) starts.push(t);
  const next = from + starts.length * stepMs;
  const nextPage = next < end ? Buffer.from(String(next)).toString('base64url') : null;
  return { starts, to: next, nextPage };
}
