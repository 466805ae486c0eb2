/**
 * Preloaded into the Portkey gateway by bench/gateway.ts (`node --import`). Plain JavaScript, so
 * Portkey runs as published (no TypeScript loader in its process). It changes two things, neither on
 * the request path's cost:
 *
 * 1. Loopback only. Portkey's start-server.js listens on every interface and has no flag for the
 *    address; a `listen(port)` without a host binds 127.0.0.1 here.
 *
 * 2. Streaming works. On Node 20, `@portkey-ai/gateway` 1.15 with `@hono/node-server` ≥ 1.14 fails
 *    every streamed request with `TypeError: immutable` (Portkey-AI/gateway#1389, #1550): hono's
 *    lightweight `Response`, built as `new Response(stream, upstreamResponse)`, keeps the upstream
 *    response's immutable `Headers` instead of copying them as the Fetch standard says, and Portkey
 *    then appends its `x-portkey-*` headers to them. Copying the headers in that one case restores
 *    what the standard (and Portkey) expect.
 */
import net from 'node:net';

const PlatformResponse = globalThis.Response;
let responsePatched = false;

/** Runs once @hono/node-server has swapped in its Response (it does so before listening). */
function copyHeadersOfPlatformResponses() {
  const HonoResponse = globalThis.Response;
  if (responsePatched || HonoResponse === PlatformResponse) return;
  responsePatched = true;
  class StandardInitResponse extends HonoResponse {
    constructor(body, init) {
      const fromPlatform = init instanceof PlatformResponse && !(init instanceof HonoResponse);
      super(
        body,
        fromPlatform
          ? { status: init.status, statusText: init.statusText, headers: new Headers(init.headers) }
          : init,
      );
    }
  }
  Object.defineProperty(globalThis, 'Response', {
    value: StandardInitResponse,
    writable: true,
    configurable: true,
  });
}

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  copyHeadersOfPlatformResponses();
  if (typeof args[0] === 'number' && (args[1] === undefined || typeof args[1] === 'function')) {
    if (args[1] === undefined) args[1] = '127.0.0.1';
    else args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
