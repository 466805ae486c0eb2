/**
 * The OpenAI API surface the gateway proxies, as a table: each endpoint's resource and whether it
 * reads or writes, which decides the permission a key needs (see permissions.ts). An endpoint not
 * in the table is not proxied: a key's permissions could not be checked against it.
 */
import type { Access, Resource } from './permissions.ts';

export interface RouteRule {
  resource: Resource;
  access: Access;
  /** Usage of these endpoints is metered from the response (`usage`) and, for streams, the SSE events. */
  metered?: 'chat' | 'completions' | 'embeddings' | 'responses';
  /** The Usage API family its requests are reported under (`other` when absent). */
  kind?: 'completions' | 'embeddings' | 'moderations' | 'images' | 'audio_speeches' | 'audio_transcriptions';
  /**
   * Runs models the request need not name (a batch's input file, a thread run's assistant): a key
   * limited to some models may call it only naming one, and a batch not at all.
   */
  modelElsewhere?: true;
}

type Method = 'GET' | 'POST' | 'DELETE';

/** `:id` matches one path segment. Order matters: the first match wins. */
const TABLE: [Method | '*', string, RouteRule][] = [
  ['GET', '/models', { resource: 'model', access: 'read' }],
  ['GET', '/models/**', { resource: 'model', access: 'read' }],
  ['DELETE', '/models/**', { resource: 'model', access: 'write' }],
  [
    'POST',
    '/chat/completions',
    { resource: 'chat.completions', access: 'write', metered: 'chat', kind: 'completions' },
  ],
  ['GET', '/chat/completions**', { resource: 'chat.completions', access: 'read' }],
  ['*', '/chat/completions/**', { resource: 'chat.completions', access: 'write' }],
  [
    'POST',
    '/completions',
    { resource: 'completions', access: 'write', metered: 'completions', kind: 'completions' },
  ],
  [
    'POST',
    '/embeddings',
    { resource: 'embeddings', access: 'write', metered: 'embeddings', kind: 'embeddings' },
  ],
  ['POST', '/moderations', { resource: 'moderations', access: 'write', kind: 'moderations' }],
  ['POST', '/images/**', { resource: 'images', access: 'write', kind: 'images' }],
  ['*', '/images/**', { resource: 'images', access: 'write' }],
  ['POST', '/audio/speech', { resource: 'audio', access: 'write', kind: 'audio_speeches' }],
  ['POST', '/audio/transcriptions', { resource: 'audio', access: 'write', kind: 'audio_transcriptions' }],
  ['POST', '/audio/translations', { resource: 'audio', access: 'write', kind: 'audio_transcriptions' }],
  ['*', '/audio/**', { resource: 'audio', access: 'write' }],
  [
    'POST',
    '/responses',
    { resource: 'responses', access: 'write', metered: 'responses', kind: 'completions' },
  ],
  ['POST', '/responses/input_tokens', { resource: 'responses', access: 'read' }],
  ['GET', '/responses/**', { resource: 'responses', access: 'read' }],
  ['*', '/responses/**', { resource: 'responses', access: 'write' }],
  ['GET', '/conversations/**', { resource: 'responses', access: 'read' }],
  ['*', '/conversations**', { resource: 'responses', access: 'write' }],
  ['GET', '/assistants**', { resource: 'assistants', access: 'read' }],
  ['*', '/assistants**', { resource: 'assistants', access: 'write' }],
  ['POST', '/threads/runs', { resource: 'threads', access: 'write', modelElsewhere: true }],
  ['POST', '/threads/:id/runs', { resource: 'threads', access: 'write', modelElsewhere: true }],
  ['GET', '/threads/**', { resource: 'threads', access: 'read' }],
  ['*', '/threads**', { resource: 'threads', access: 'write' }],
  ['GET', '/files**', { resource: 'files', access: 'read' }],
  ['*', '/files**', { resource: 'files', access: 'write' }],
  ['*', '/uploads**', { resource: 'files', access: 'write' }],
  ['GET', '/fine_tuning/**', { resource: 'fine_tuning', access: 'read' }],
  ['*', '/fine_tuning/**', { resource: 'fine_tuning', access: 'write' }],
  ['POST', '/batches', { resource: 'batch', access: 'write', modelElsewhere: true }],
  ['GET', '/batches**', { resource: 'batch', access: 'read' }],
  ['*', '/batches**', { resource: 'batch', access: 'write' }],
  ['GET', '/vector_stores**', { resource: 'vector_stores', access: 'read' }],
  ['*', '/vector_stores**', { resource: 'vector_stores', access: 'write' }],
  ['POST', '/evals/:id/runs', { resource: 'evals', access: 'write', modelElsewhere: true }],
  ['GET', '/evals**', { resource: 'evals', access: 'read' }],
  ['*', '/evals**', { resource: 'evals', access: 'write' }],
];

const COMPILED = TABLE.map(([method, pattern, rule]) => ({ method, regex: compile(pattern), rule }));

/** `**` at the end: the path itself or anything below it; `/**`: strictly below it. */
function compile(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
    .replace(/\/\*\*$/, '(?:/[^?]+)')
    .replace(/\*\*$/, '(?:/[^?]*)?')
    .replace(/:id/g, '[^/]+');
  return new RegExp(`^${escaped}$`);
}

/** `path` is relative to /v1, without the query string. */
export function ruleFor(method: string, path: string): RouteRule | undefined {
  const normalized = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const upper = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
  for (const entry of COMPILED) {
    if ((entry.method === '*' || entry.method === upper) && entry.regex.test(normalized)) return entry.rule;
  }
  return undefined;
}
