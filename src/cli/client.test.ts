import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveBaseUrl } from './client.ts';

describe('which Keyport the CLI talks to', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kp-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'keyport.json');
  writeFileSync(config, JSON.stringify({ port: 9000 }));

  it('--url, then KEYPORT_URL, then KEYPORT_PORT, then the config file’s port, then 8080', () => {
    expect(resolveBaseUrl({ url: 'http://h:1/' }, { KEYPORT_URL: 'http://x:2' })).toBe('http://h:1');
    expect(resolveBaseUrl({}, { KEYPORT_URL: 'http://x:2/', KEYPORT_PORT: '3' })).toBe('http://x:2');
    expect(resolveBaseUrl({}, { KEYPORT_PORT: '3', KEYPORT_CONFIG: config })).toBe('http://127.0.0.1:3');
    // The server listens where its config file says; so does the CLI look.
    expect(resolveBaseUrl({}, { KEYPORT_CONFIG: config })).toBe('http://127.0.0.1:9000');
    expect(resolveBaseUrl({}, { KEYPORT_CONFIG: path.join(dir, 'missing.json') })).toBe(
      'http://127.0.0.1:8080',
    );
    expect(resolveBaseUrl({}, {})).toBe('http://127.0.0.1:8080');
  });
});
