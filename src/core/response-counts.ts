/**
 * HTTP responses counted by API and status class, for `/metrics`: an array add on the request
 * path, read at scrape time.
 */
const APIS = ['gateway', 'admin', 'dashboard', 'other'] as const;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** 499 (the client went away) counts as 4xx. */
export class ResponseCounts {
  readonly #counts = new Float64Array(APIS.length * STATUS_CLASSES.length);

  count(url: string, status: number): void {
    const api = url.startsWith('/v1/')
      ? url.startsWith('/v1/organization')
        ? 1
        : 0
      : url.startsWith('/api/')
        ? 2
        : 3;
    const statusClass = Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1;
    this.#counts[api * STATUS_CLASSES.length + statusClass]!++;
  }

  *entries(): Generator<[api: string, statusClass: string, count: number]> {
    for (let a = 0; a < APIS.length; a++) {
      for (let c = 0; c < STATUS_CLASSES.length; c++) {
        const count = this.#counts[a * STATUS_CLASSES.length + c]!;
        if (count > 0) yield [APIS[a]!, STATUS_CLASSES[c]!, count];
      }
    }
  }
}
