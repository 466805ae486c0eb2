/**
 * The floor of the gateway benchmark: the least a Node.js reverse proxy can do. `node:http` in,
 * `node:http` out over a keep-alive agent, request and response piped through untouched; no
 * authentication, no parsing, no logging. Whatever Keyport costs on top of this is Keyport's.
 *
 *   tsx bench/raw-proxy.ts --port 8081 --upstream http://127.0.0.1:9090
 *
 * `--port 0` picks a free port; the address is printed once listening. Loopback only.
 */
import { Agent, createServer, type IncomingHttpHeaders, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The headers minus hop-by-hop ones (each side of a proxy frames its own connection). */
function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name];
  return out;
}

export async function startRawProxy(options: { port: number; upstream: string }): Promise<string> {
  const target = new URL(options.upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const server = createServer((req, res) => {
    const headers = endToEnd(req.headers);
    headers.host = target.host;
    const outgoing = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
      },
      (upstream) => {
        res.writeHead(upstream.statusCode ?? 502, endToEnd(upstream.headers));
        upstream.pipe(res);
      },
    );
    outgoing.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    req.pipe(outgoing);
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', resolve);
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * Runs a bench pass-through as its own process (`--port N --upstream URL`), when `moduleUrl` is the
 * script node was started with: the gateway benchmark spawns each one so.
 */
export async function serveFromCommandLine(
  moduleUrl: string,
  name: string,
  start: (options: { port: number; upstream: string }) => Promise<string>,
): Promise<void> {
  if (!process.argv[1] || fileURLToPath(moduleUrl) !== path.resolve(process.argv[1])) return;
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '0' }, upstream: { type: 'string' } },
  });
  if (!values.upstream) {
    const script = path.relative(process.cwd(), fileURLToPath(moduleUrl));
    process.stderr.write(`usage: tsx ${script} --port N --upstream http://127.0.0.1:M\n`);
    process.exit(2);
  }
  const url = await start({ port: Number(values.port), upstream: values.upstream });
  process.stdout.write(`${name} listening at ${url}\n`);
  const stop = () => process.exit(0);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await serveFromCommandLine(import.meta.url, 'Raw proxy', startRawProxy);
