/** Which headers cross the gateway, in each direction. */
import type { IncomingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Never forwarded upstream: the client's credential and identity, and what undici sets itself. */
const NOT_TO_UPSTREAM = new Set([
  'host',
  'authorization',
  'api-key',
  'content-length',
  'cookie',
  'openai-organization',
  'openai-project',
  'accept-encoding',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
  'x-request-id',
  // Node has already answered the client's 100-continue; undici refuses to send it again.
  'expect',
]);

/**
 * Never returned to the client: framing we redo, the upstream account's identity and limits
 * (a pooled key's organization and rate limits are not the client's), and cookies.
 */
const NOT_TO_CLIENT = new Set([
  'content-length',
  'content-encoding',
  'set-cookie',
  'openai-organization',
  'openai-project',
  'x-request-id',
  'date',
]);

const NONE_LISTED: ReadonlySet<string> = new Set();

function connectionListed(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): ReadonlySet<string> {
  const value = headers.connection;
  // The common cases name no header: keep-alive is hop-by-hop already, close is no header.
  if (value === undefined || value === 'keep-alive' || value === 'close') return NONE_LISTED;
  const text = Array.isArray(value) ? value.join(',') : value;
  return new Set(
    text
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}

export function headersForUpstream(
  incoming: IncomingHttpHeaders,
  credential: string | undefined,
  requestId: string,
): Record<string, string> {
  const listed = connectionListed(incoming);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || NOT_TO_UPSTREAM.has(name) || listed.has(name))
      continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  // We read usage from responses, so ask for them uncompressed.
  out['accept-encoding'] = 'identity';
  out['x-request-id'] = requestId;
  if (credential) out.authorization = `Bearer ${credential}`;
  return out;
}

export function headersForClient(
  upstream: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const listed = connectionListed(upstream);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(upstream)) {
    const lower = name.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(lower) || NOT_TO_CLIENT.has(lower) || listed.has(lower))
      continue;
    if (lower.startsWith('x-ratelimit-')) continue;
    out[lower] = value;
  }
  const upstreamId = upstream['x-request-id'];
  if (typeof upstreamId === 'string') out['x-upstream-request-id'] = upstreamId;
  return out;
}
