import { describe, expect, it } from 'vitest';
import { isDataException, sqlStateOf } from './sql-state.ts';

describe('sqlStateOf', () => {
  it('reads the SQLSTATE from the error or what it wraps, not an errno code', () => {
    expect(sqlStateOf(Object.assign(new Error('x'), { code: '23505' }))).toBe('23505');
    const drizzle = new Error('Failed query', { cause: Object.assign(new Error('pg'), { code: '22003' }) });
    expect(sqlStateOf(drizzle)).toBe('22003');
    expect(isDataException(drizzle)).toBe(true);
    expect(sqlStateOf(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBeUndefined();
    expect(isDataException(Object.assign(new Error('unique'), { code: '23505' }))).toBe(false);
    expect(sqlStateOf(Object.assign(new Error('pipe'), { code: 'EPIPE' }))).toBeUndefined();
    expect(sqlStateOf('not an error')).toBeUndefined();
  });
});
