import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

describe('configuration', () => {
  it('has working defaults for the embedded mode', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ port: 8080, keyPrefix: 'kp', logLevel: 'info' });
    expect(config.databaseUrl).toBeUndefined();
    expect(path.isAbsolute(config.dataDir)).toBe(true);
  });

  it('reads every setting from its variable', () => {
    const config = loadConfig({
      KEYPORT_PORT: '9000',
      KEYPORT_DATA_DIR: '/tmp/kp-data',
      KEYPORT_DATABASE_URL: 'postgres://u@db:5432/keyport',
      KEYPORT_REDIS_URL: 'redis://cache:6379',
      KEYPORT_KEY_PREFIX: 'acme',
      KEYPORT_LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      port: 9000,
      dataDir: '/tmp/kp-data',
      databaseUrl: 'postgres://u@db:5432/keyport',
      redisUrl: 'redis://cache:6379',
      keyPrefix: 'acme',
      logLevel: 'debug',
    });
  });

  it.each([
    ['KEYPORT_PORT', 'eighty'],
    ['KEYPORT_PORT', '70000'],
    ['KEYPORT_DATABASE_URL', 'mysql://x'],
    ['KEYPORT_REDIS_URL', 'http://x'],
    ['KEYPORT_KEY_PREFIX', 'sk-'],
    ['KEYPORT_KEY_PREFIX', 'a_b'],
    ['KEYPORT_LOG_LEVEL', 'loud'],
  ])('names the bad variable %s=%s', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });

  it('reads a JSON config file, with environment variables taking precedence', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kp-config-'));
    const file = path.join(dir, 'keyport.json');
    writeFileSync(file, JSON.stringify({ port: 9100, keyPrefix: 'acme' }));
    expect(loadConfig({ KEYPORT_CONFIG: file })).toMatchObject({ port: 9100, keyPrefix: 'acme' });
    expect(loadConfig({ KEYPORT_CONFIG: file, KEYPORT_PORT: '9200' }).port).toBe(9200);
  });

  it('names the config file and the setting when the file is wrong', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kp-config-'));
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ port: 'x' }));
    expect(() => loadConfig({ KEYPORT_CONFIG: bad })).toThrow(/KEYPORT_CONFIG.*"port"/);
    const unknown = path.join(dir, 'unknown.json');
    writeFileSync(unknown, JSON.stringify({ prot: 1 }));
    expect(() => loadConfig({ KEYPORT_CONFIG: unknown })).toThrow(/unknown setting.*prot/);
    writeFileSync(unknown, '{ not json');
    expect(() => loadConfig({ KEYPORT_CONFIG: unknown })).toThrow(/KEYPORT_CONFIG/);
    expect(() => loadConfig({ KEYPORT_CONFIG: path.join(dir, 'missing.json') })).toThrow(/cannot read/);
  });

  it('builds one upstream from KEYPORT_UPSTREAM_* and requires its credential variable when named in a file', () => {
    const config = loadConfig({
      KEYPORT_UPSTREAM_URL: 'http://vllm:8000/v1/',
      KEYPORT_UPSTREAM_MODELS: 'llama-*, qwen-*',
      KEYPORT_UPSTREAM_API_KEY: 'upstream-secret',
    });
    expect(config.upstreams).toEqual([
      expect.objectContaining({
        name: 'default',
        baseUrl: 'http://vllm:8000/v1',
        models: ['llama-*', 'qwen-*'],
        apiKeyEnv: 'KEYPORT_UPSTREAM_API_KEY',
      }),
    ]);
    // The credential is read from the environment when used, never copied into the config.
    expect(JSON.stringify(config)).not.toContain('upstream-secret');
    expect(() => loadConfig({ KEYPORT_UPSTREAM_URL: 'ftp://x' })).toThrow(/KEYPORT_UPSTREAM_URL/);
    // Models or a credential for an upstream with no URL: refused, not ignored for the mock.
    expect(() => loadConfig({ KEYPORT_UPSTREAM_MODELS: 'llama-*' })).toThrow(
      /KEYPORT_UPSTREAM_MODELS: set KEYPORT_UPSTREAM_URL too/,
    );

    const dir = mkdtempSync(path.join(tmpdir(), 'kp-config-'));
    const file = path.join(dir, 'upstreams.json');
    writeFileSync(
      file,
      JSON.stringify({
        upstreams: [{ name: 'vllm', baseUrl: 'http://vllm:8000/v1', models: ['*'], apiKeyEnv: 'VLLM_KEY' }],
      }),
    );
    expect(() => loadConfig({ KEYPORT_CONFIG: file })).toThrow(/VLLM_KEY is not set/);
    expect(loadConfig({ KEYPORT_CONFIG: file, VLLM_KEY: 'k' }).upstreams[0]?.name).toBe('vllm');
    writeFileSync(
      file,
      JSON.stringify({ upstreams: [{ name: 'Bad Name', baseUrl: 'http://x/v1', models: [] }] }),
    );
    expect(() => loadConfig({ KEYPORT_CONFIG: file })).toThrow(/upstreams\.0\.(name|models)/);
  });

  it('reads trusted proxies and refuses bad ones', () => {
    expect(loadConfig({ KEYPORT_TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.1' }).trustedProxies).toEqual([
      '10.0.0.0/8',
      '192.168.1.1',
    ]);
    expect(() => loadConfig({ KEYPORT_TRUSTED_PROXIES: '10.0.0.0/40' })).toThrow(/KEYPORT_TRUSTED_PROXIES/);
  });
});
