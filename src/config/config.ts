/**
 * Configuration: environment variables, optionally on top of a JSON file named by KEYPORT_CONFIG.
 * Parsed once at boot; a bad value stops the process with a message naming the variable.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { PREFIX_PATTERN } from '../core/key-format.ts';
import { UserError } from '../core/user-error.ts';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const configSchema = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  host: z.string().min(1).default('127.0.0.1'),
  dataDir: z.string().min(1).default('./.keyport'),
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
    .optional(),
  redisUrl: z
    .string()
    .regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL')
    .optional(),
  keyPrefix: z
    .string()
    .regex(PREFIX_PATTERN, 'expected 1-16 lower-case letters or digits, starting with a letter (no "_")')
    .default('kp'),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  /** How long a verified (or unknown) key stays in the in-process cache. Revocation on this instance is immediate regardless. */
  keyCacheTtlMs: z.coerce.number().int().min(0).max(60_000).default(5_000),
  /** How often coalesced `last_used_at` updates are written. */
  lastUsedFlushMs: z.coerce.number().int().min(100).max(300_000).default(10_000),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Environment variable for each setting; also how errors name it. */
const ENV_NAMES: Record<keyof Config, string> = {
  port: 'KEYPORT_PORT',
  host: 'KEYPORT_HOST',
  dataDir: 'KEYPORT_DATA_DIR',
  databaseUrl: 'KEYPORT_DATABASE_URL',
  redisUrl: 'KEYPORT_REDIS_URL',
  keyPrefix: 'KEYPORT_KEY_PREFIX',
  logLevel: 'KEYPORT_LOG_LEVEL',
  keyCacheTtlMs: 'KEYPORT_KEY_CACHE_TTL_MS',
  lastUsedFlushMs: 'KEYPORT_LAST_USED_FLUSH_MS',
};

export class ConfigError extends UserError {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigInput = {}): Config {
  const fromFile = env.KEYPORT_CONFIG ? readConfigFile(env.KEYPORT_CONFIG) : {};
  const fromEnv: Record<string, string> = {};
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const value = env[name];
    if (value !== undefined && value !== '') fromEnv[key] = value;
  }
  const source = env.KEYPORT_CONFIG ? `KEYPORT_CONFIG (${env.KEYPORT_CONFIG})` : undefined;
  const result = configSchema.safeParse({ ...fromFile, ...fromEnv, ...overrides });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '');
      const name = key in fromEnv ? ENV_NAMES[key as keyof Config] : source ? `${source}: "${key}"` : key;
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  return { ...result.data, dataDir: path.resolve(result.data.dataDir) };
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`KEYPORT_CONFIG: cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    const known = new Set(Object.keys(ENV_NAMES));
    const unknown = Object.keys(parsed).filter((key) => !known.has(key));
    if (unknown.length > 0) {
      throw new Error(`unknown setting(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
    }
    return parsed as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`KEYPORT_CONFIG: ${file} is not a valid JSON config: ${(error as Error).message}`);
  }
}
