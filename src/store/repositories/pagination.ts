import { type SQL, sql } from 'drizzle-orm';
import type { AnyPgColumn, AnyPgTable } from 'drizzle-orm/pg-core';

export interface PageRequest {
  /** Return items after the one with this id. */
  after?: string | undefined;
  limit: number;
  order: 'asc' | 'desc';
}

export interface Page<T> {
  items: T[];
  hasMore: boolean;
}

/**
 * Keyset pagination over (created_at, id). The cursor row is read inside the query, so
 * timestamps keep the database's microsecond precision; soft-deleted rows still anchor a cursor.
 */
export function afterCursor(
  table: AnyPgTable,
  createdAt: AnyPgColumn,
  id: AnyPgColumn,
  page: PageRequest,
): SQL | undefined {
  if (!page.after) return undefined;
  const cursor = sql`(select ${createdAt}, ${id} from ${table} where ${id} = ${page.after})`;
  return page.order === 'asc'
    ? sql`(${createdAt}, ${id}) > ${cursor}`
    : sql`(${createdAt}, ${id}) < ${cursor}`;
}

export function toPage<T>(rows: T[], limit: number): Page<T> {
  return { items: rows.slice(0, limit), hasMore: rows.length > limit };
}
