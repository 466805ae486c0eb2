import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decompose, type RangePiece, WIDTH_MS } from './usage-query.ts';

const MINUTE = WIDTH_MS['1m'];
const HOUR = WIDTH_MS['1h'];
const DAY = WIDTH_MS['1d'];
const T0 = Date.UTC(2025, 2, 10); // a UTC midnight

/** Pieces in time order (decompose lists the minute edges first). */
const sorted = (pieces: RangePiece[]) => [...pieces].sort((a, b) => a.from - b.from);

describe('decompose', () => {
  it('refuses ends that are not whole minutes', () => {
    expect(() => decompose(T0 + 1, T0 + HOUR)).toThrow(RangeError);
    expect(() => decompose(T0, T0 + HOUR + 30_000)).toThrow(RangeError);
  });

  it('an empty or backwards range has no pieces', () => {
    expect(decompose(T0, T0)).toEqual([]);
    expect(decompose(T0 + HOUR, T0)).toEqual([]);
  });

  it('inside one hour: minutes only', () => {
    expect(decompose(T0 + 5 * MINUTE, T0 + 17 * MINUTE)).toEqual([
      { width: '1m', from: T0 + 5 * MINUTE, to: T0 + 17 * MINUTE },
    ]);
  });

  it('exactly one hour, one day, several days: one roll-up row each', () => {
    expect(decompose(T0 + 3 * HOUR, T0 + 4 * HOUR)).toEqual([
      { width: '1h', from: T0 + 3 * HOUR, to: T0 + 4 * HOUR },
    ]);
    expect(decompose(T0, T0 + DAY)).toEqual([{ width: '1d', from: T0, to: T0 + DAY }]);
    expect(decompose(T0, T0 + 3 * DAY)).toEqual([{ width: '1d', from: T0, to: T0 + 3 * DAY }]);
  });

  it('a range across days: minutes, hours, days, hours, minutes', () => {
    const start = T0 + 22 * HOUR + 50 * MINUTE;
    const end = T0 + 2 * DAY + 2 * HOUR + 10 * MINUTE;
    expect(sorted(decompose(start, end))).toEqual([
      { width: '1m', from: start, to: T0 + 23 * HOUR },
      { width: '1h', from: T0 + 23 * HOUR, to: T0 + DAY },
      { width: '1d', from: T0 + DAY, to: T0 + 2 * DAY },
      { width: '1h', from: T0 + 2 * DAY, to: T0 + 2 * DAY + 2 * HOUR },
      { width: '1m', from: T0 + 2 * DAY + 2 * HOUR, to: end },
    ]);
  });

  it('hours on both sides of midnight with no whole day: hours only', () => {
    expect(sorted(decompose(T0 + 20 * HOUR, T0 + DAY + 3 * HOUR))).toEqual([
      { width: '1h', from: T0 + 20 * HOUR, to: T0 + DAY },
      { width: '1h', from: T0 + DAY, to: T0 + DAY + 3 * HOUR },
    ]);
  });

  it('minutes on both sides of an hour with no whole hour: minutes only', () => {
    expect(sorted(decompose(T0 + 40 * MINUTE, T0 + HOUR + 20 * MINUTE))).toEqual([
      { width: '1m', from: T0 + 40 * MINUTE, to: T0 + HOUR },
      { width: '1m', from: T0 + HOUR, to: T0 + HOUR + 20 * MINUTE },
    ]);
  });

  it('tiles the range exactly with aligned pieces, as few as possible (property)', () => {
    const minute = fc.integer({ min: -3 * 24 * 60, max: 40 * 24 * 60 }).map((m) => T0 + m * MINUTE);
    fc.assert(
      fc.property(minute, minute, (a, b) => {
        const [start, end] = a <= b ? [a, b] : [b, a];
        const pieces = sorted(decompose(start, end));
        if (start === end) {
          expect(pieces).toEqual([]);
          return;
        }
        // Contiguous, non-empty, from start to end: every minute exactly once.
        expect(pieces[0]!.from).toBe(start);
        expect(pieces.at(-1)!.to).toBe(end);
        for (let i = 0; i < pieces.length; i++) {
          const piece = pieces[i]!;
          expect(piece.to).toBeGreaterThan(piece.from);
          if (i > 0) expect(piece.from).toBe(pieces[i - 1]!.to);
          // Both ends on the piece's own width (a roll-up row covers exactly one bucket).
          const width = WIDTH_MS[piece.width];
          expect(piece.from % width).toBe(0);
          expect(piece.to % width).toBe(0);
          // Fewest rows: a minute piece never holds a whole UTC hour, an hour piece never a whole day.
          const bigger = piece.width === '1m' ? HOUR : piece.width === '1h' ? DAY : undefined;
          if (bigger !== undefined) {
            const firstWhole = Math.ceil(piece.from / bigger) * bigger;
            expect(firstWhole + bigger).toBeGreaterThan(piece.to);
          }
        }
        // At most one day run, and at most two runs of hours and of minutes (one at each edge).
        const count = (w: string) => pieces.filter((p) => p.width === w).length;
        expect(count('1d')).toBeLessThanOrEqual(1);
        expect(count('1h')).toBeLessThanOrEqual(2);
        expect(count('1m')).toBeLessThanOrEqual(2);
        // The widths never narrow then widen again: minutes at the edges, days in the middle.
        const rank = { '1m': 0, '1h': 1, '1d': 2 } as const;
        const ranks: number[] = pieces.map((p) => rank[p.width]);
        const peak = ranks.indexOf(Math.max(...ranks));
        for (let i = 1; i <= peak; i++) expect(ranks[i]!).toBeGreaterThanOrEqual(ranks[i - 1]!);
        for (let i = peak + 1; i < ranks.length; i++) expect(ranks[i]!).toBeLessThanOrEqual(ranks[i - 1]!);
      }),
      { numRuns: 1000 },
    );
  });
});
