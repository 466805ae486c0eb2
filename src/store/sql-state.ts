/**
 * PostgreSQL's SQLSTATE of a failed query, from the error or what it wraps (Drizzle puts the
 * driver's error in `cause`; PGlite's thread and `pg` set `code`). Undefined for anything else
 * (a connection refused has an errno code, not a five-character SQLSTATE).
 */
/** Five characters; no class starts with E, as errno codes of five (`EPIPE`, `EPERM`) do. */
const SQLSTATE = /^[0-9A-DF-Z][0-9A-Z]{4}$/;

export function sqlStateOf(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'string' && SQLSTATE.test(e.code)) return e.code;
  }
  return undefined;
}

/** Class 22, data exception: the values themselves (text it cannot store, a number out of range). */
export function isDataException(error: unknown): boolean {
  return sqlStateOf(error)?.startsWith('22') ?? false;
}
