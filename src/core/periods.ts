/**
 * Budget periods: a day or a calendar month in the operator's time zone (`KEYPORT_BILLING_TIME_ZONE`,
 * an IANA name). Pure: the instant is given. Daylight-saving changes are handled by asking Intl
 * for the zone's offset at the candidate instant rather than assuming a fixed one.
 */

export type BudgetPeriod = 'day' | 'month';

export interface PeriodBounds {
  /** ms since epoch, inclusive. */
  start: number;
  /** ms since epoch, exclusive: the next period's start. */
  end: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Throws RangeError for a time zone Intl does not know. */
export function assertTimeZone(timeZone: string): void {
  formatter(timeZone);
}

/** The wall-clock fields of an instant in a zone. */
function wallClock(instant: number, timeZone: string) {
  const parts: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(instant))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return {
    year: parts.year!,
    month: parts.month!,
    day: parts.day!,
    hour: parts.hour!,
    minute: parts.minute!,
    second: parts.second!,
  };
}

/** The zone's offset from UTC at an instant, in ms. */
function offsetAt(instant: number, timeZone: string): number {
  const w = wallClock(instant, timeZone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - Math.floor(instant / 1000) * 1000;
}

/**
 * The first instant of the given date on the zone's wall clock: its midnight, or — where clocks
 * jump forward at midnight (Santiago, Havana…) and 00:00 never shows — the instant they jump.
 */
function midnight(year: number, month: number, day: number, timeZone: string): number {
  const guess = Date.UTC(year, month - 1, day);
  // Two passes: the offset at the first estimate may differ from the offset at the answer (DST).
  let instant = guess - offsetAt(guess, timeZone);
  instant = guess - offsetAt(instant, timeZone);
  const w = wallClock(instant, timeZone);
  if (w.year === year && w.month === month && w.day === day && w.hour === 0 && w.minute === 0) return instant;
  // No midnight that day: search the jump, to the second, within three hours either side.
  const dateOf = (t: number) => {
    const c = wallClock(t, timeZone);
    return Date.UTC(c.year, c.month - 1, c.day);
  };
  let lo = instant - 3 * 3_600_000; // before the date
  let hi = instant + 3 * 3_600_000; // on it
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (dateOf(mid) >= guess) hi = mid;
    else lo = mid;
  }
  return hi;
}

export function periodBounds(period: BudgetPeriod, now: number, timeZone = 'UTC'): PeriodBounds {
  const { year, month, day } = wallClock(now, timeZone);
  if (period === 'day') {
    const next = new Date(Date.UTC(year, month - 1, day + 1));
    return {
      start: midnight(year, month, day, timeZone),
      end: midnight(next.getUTCFullYear(), next.getUTCMonth() + 1, next.getUTCDate(), timeZone),
    };
  }
  const nextMonth = month === 12 ? { year: year + 1, month: 1 } : { year, month: month + 1 };
  return {
    start: midnight(year, month, 1, timeZone),
    end: midnight(nextMonth.year, nextMonth.month, 1, timeZone),
  };
}
