/**
 * The rows of a raw `db.execute(sql…)`: both drivers answer an object with `rows` (PGlite's
 * Results, node-postgres's QueryResult), which Drizzle's shared type does not say.
 */
export function rowsOf<T>(result: unknown): T[] {
  return (result as { rows: T[] }).rows;
}
