/**
 * The floor of Keyport's own stack: Fastify in, undici out, and the transport work the gateway
 * cannot skip, with nothing of Keyport's (no key, no limits, no usage record). The request body is
 * read whole and parsed (the gateway needs its model before choosing an upstream), the upstream's
 * JSON answer read whole and parsed (its `usage` is the bill), a stream passed through chunk by
 * chunk. What the raw node:http proxy does better than this is the libraries' cost; what Keyport
 * costs on top of this is Keyport's.
 *
 *   tsx bench/stack-floor.ts --port 8082 --upstream http://127.0.0.1:9090
 *
 * Loopback only.
 */
import Fastify from 'fastify';
import { Agent, request } from 'undici';
import { HOP_BY_HOP, serveFromCommandLine } from './raw-proxy.ts';

/** Each side frames its own connection and body length. */
const NOT_FORWARDED = new Set([...HOP_BY_HOP, 'host', 'content-length']);

function endToEnd(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !NOT_FORWARDED.has(name)) out[name] = value;
  }
  return out;
}

export async function startStackFloor(options: { port: number; upstream: string }): Promise<string> {
  const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
  const app = Fastify({ logger: false });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, raw, done) => {
    const buffer = raw as Buffer;
    done(null, { raw: buffer, json: buffer.length > 0 ? JSON.parse(buffer.toString('utf8')) : undefined });
  });
  app.route({
    method: ['GET', 'POST'],
    url: '/v1/*',
    handler: async (req, reply) => {
      const body = req.body as { raw: Buffer; json: { stream?: boolean } | undefined } | undefined;
      const response = await request(`${options.upstream}${req.url}`, {
        method: req.method as 'GET' | 'POST',
        headers: endToEnd(req.headers),
        body: req.method === 'GET' ? null : (body?.raw ?? null),
        dispatcher: agent,
      });
      const headers = endToEnd(response.headers);
      if (String(response.headers['content-type'] ?? '').includes('text/event-stream')) {
        return reply.status(response.statusCode).headers(headers).send(response.body);
      }
      const buffer = Buffer.from(await response.body.arrayBuffer());
      JSON.parse(buffer.toString('utf8'));
      return reply.status(response.statusCode).headers(headers).send(buffer);
    },
  });
  return app.listen({ port: options.port, host: '127.0.0.1' });
}

await serveFromCommandLine(import.meta.url, 'Stack floor', startStackFloor);
