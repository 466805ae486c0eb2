import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { periodBounds } from './periods.ts';

const utc = (text: string) => Date.parse(text);

describe('periodBounds', () => {
  it('gives UTC days and months', () => {
    expect(periodBounds('day', utc('2026-11-24T17:00:00Z'))).toEqual({
      start: utc('2026-11-24T00:00:00Z'),
      end: utc('2026-11-25T00:00:00Z'),
    });
    expect(periodBounds('month', utc('2026-11-24T17:00:00Z'))).toEqual({
      start: utc('2026-11-01T00:00:00Z'),
      end: utc('2026-12-01T00:00:00Z'),
    });
  });

  it('crosses month and year ends, and leap February', () => {
    expect(periodBounds('month', utc('2026-12-31T23:59:59.999Z'))).toEqual({
      start: utc('2026-12-01T00:00:00Z'),
      end: utc('2027-01-01T00:00:00Z'),
    });
    expect(periodBounds('month', utc('2027-01-01T00:00:00Z')).start).toBe(utc('2027-01-01T00:00:00Z'));
    expect(periodBounds('day', utc('2028-02-28T12:00:00Z')).end).toBe(utc('2028-02-29T00:00:00Z'));
    expect(periodBounds('month', utc('2028-02-29T12:00:00Z')).end).toBe(utc('2028-03-01T00:00:00Z'));
  });

  it('follows the time zone: a month in New York starts at 05:00 UTC in winter', () => {
    // 2026-12-01 02:00 UTC is still November 30 in New York.
    expect(periodBounds('month', utc('2026-12-01T02:00:00Z'), 'America/New_York')).toEqual({
      start: utc('2026-11-01T04:00:00Z'), // EDT (UTC-4) on Nov 1 at midnight
      end: utc('2026-12-01T05:00:00Z'), // EST (UTC-5)
    });
  });

  it('has 23- and 25-hour days on daylight-saving changes', () => {
    const spring = periodBounds('day', utc('2026-03-08T12:00:00Z'), 'America/New_York');
    expect(spring.end - spring.start).toBe(23 * 3600_000);
    const autumn = periodBounds('day', utc('2026-11-01T12:00:00Z'), 'America/New_York');
    expect(autumn.end - autumn.start).toBe(25 * 3600_000);
  });

  it('always contains the instant, and periods tile time', () => {
    const zones = ['UTC', 'Europe/Paris', 'America/Los_Angeles', 'Asia/Kolkata', 'Australia/Lord_Howe'];
    fc.assert(
      fc.property(
        fc.integer({ min: utc('2020-01-01T00:00:00Z'), max: utc('2035-01-01T00:00:00Z') }),
        fc.constantFrom(...zones),
        fc.constantFrom('day' as const, 'month' as const),
        (now, zone, period) => {
          const bounds = periodBounds(period, now, zone);
          expect(bounds.start).toBeLessThanOrEqual(now);
          expect(bounds.end).toBeGreaterThan(now);
          expect(periodBounds(period, bounds.end, zone).start).toBe(bounds.end);
          expect(periodBounds(period, bounds.start - 1, zone).end).toBe(bounds.start);
        },
      ),
    );
  });
});

describe('days where midnight does not exist', () => {
  it('a day begins when the clocks jump forward at 00:00 (America/Santiago, 2024-09-08)', () => {
    // 2024-09-08 00:00 -04 never happened: clocks went from 23:59:59 -04 to 01:00 -03 (04:00Z).
    const now = Date.UTC(2024, 8, 8, 3, 30); // 23:30 on Sep 7, local time
    const sep7 = periodBounds('day', now, 'America/Santiago');
    expect(sep7.start <= now && now < sep7.end).toBe(true);
    expect(new Date(sep7.end).toISOString()).toBe('2024-09-08T04:00:00.000Z');
    const sep8 = periodBounds('day', sep7.end, 'America/Santiago');
    expect(sep8.start).toBe(sep7.end);
    expect(new Date(sep8.end).toISOString()).toBe('2024-09-09T03:00:00.000Z');
  });
});
