/**
 * The HTTP server: one Fastify app on one port for every surface (product.md, "One process, one
 * port"). Errors leave in OpenAI's shape with an `x-request-id` on every response.
 */
import { randomUUID } from 'node:crypto';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  LogController,
} from 'fastify';
import { ApiError } from '../core/errors.ts';
import { KEY_PATTERN_IN_TEXT, redactKey } from '../core/key-format.ts';
import { hasUnstorableText } from '../core/storable-text.ts';
import { registerGateway } from '../gateway/gateway.ts';
import type { Services } from '../services.ts';
import { isDataException } from '../store/sql-state.ts';
import { registerAdminApi } from './admin/routes.ts';
import { registerDashboardApi } from './dashboard/routes.ts';
import { metricsRegistry } from './http/metrics.ts';
import { lazyChildLogger } from './http/request-logger.ts';
import { linkPages } from './pages/link-pages.ts';

export const BODY_LIMIT_BYTES = 1024 * 1024;

export async function buildApp(services: Services): Promise<FastifyInstance> {
  const logsRequests = services.logger.isLevelEnabled('info');
  const app = Fastify({
    loggerInstance: services.logger as FastifyBaseLogger,
    // One line per request, written by our onResponse hook (no URL query, no headers).
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // randomUUID draws from a cached entropy pool (one getrandom per 128 ids), randomBytes makes a
    // syscall per call: 122 random bits either way, same `req_` + 32 hex digits.
    genReqId: () => `req_${randomUUID().replaceAll('-', '')}`,
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true },
    // The client's address: the socket's, or X-Forwarded-For only when the peer is a trusted proxy.
    trustProxy: services.config.trustedProxies.length > 0 ? services.config.trustedProxies : false,
    // A malformed URL (bad percent-encoding) answers in OpenAI's error shape too.
    frameworkErrors: (error, _request, reply) => {
      const apiError = new ApiError('invalid_request', `Invalid URL: ${error.message}`);
      (reply as FastifyReply).status(apiError.status).send(apiError.toBody());
    },
  });

  // An empty body with a JSON content type is an empty request, not an error (SDKs send that).
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text, refuseUnstorableText));
    } catch (error) {
      if (error instanceof UnstorableTextError) {
        return done(
          new ApiError(
            'invalid_request',
            'The JSON body contains text that cannot be stored: a NUL character (\\u0000) or an unpaired surrogate.',
          ),
        );
      }
      done(
        new ApiError(
          'invalid_json',
          'We could not parse the JSON body of your request. The body must be valid JSON.',
        ),
      );
    }
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // A key in a URL ends up in proxy logs and browser history: refuse it outright. The path
    // counts too (a secret pasted where an id belongs), or a 404 would echo it back.
    if (KEY_IN_URL.test(decodeURIComponentSafe(request.url))) {
      throw new ApiError(
        'invalid_request',
        'API keys must be sent in the Authorization header, never in the URL. Revoke a key that has been sent in a URL.',
      );
    }
  });

  app.addHook('onResponse', async (request, reply) => {
    if (request.gatewayStream) return; // a stream counts and logs itself, with its real outcome
    services.responses.count(request.url, reply.statusCode);
    if (!logsRequests) return; // skip building a line nobody will see
    request.log.info(
      {
        method: request.method,
        // The path without the query, any key pasted into it redacted.
        path: redactKeysIn(request.url.split('?')[0] ?? ''),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request',
    );
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    const apiError = toApiError(error, request.routeOptions.bodyLimit ?? BODY_LIMIT_BYTES);
    if (apiError.status >= 500) request.log.error({ err: error }, 'request failed');
    reply.status(apiError.status).headers(apiError.headers).send(apiError.toBody());
  });

  app.setNotFoundHandler((request, reply) => {
    const error = new ApiError('not_found', `Invalid URL (${request.method} ${request.url.split('?')[0]})`);
    reply.status(404).send(error.toBody());
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  if (services.config.metrics === 'on') {
    const metrics = metricsRegistry(services);
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', metrics.contentType);
      return metrics.metrics();
    });
  }
  app.get('/readyz', async (_request, reply) => {
    try {
      await services.store.db.execute('select 1');
      return { status: 'ok' };
    } catch {
      reply.status(503);
      return { status: 'unavailable' };
    }
  });

  linkPages(app);
  await app.register(registerDashboardApi(services), { prefix: '/api' });
  await app.register(registerAdminApi(services), { prefix: '/v1/organization' });
  await app.register(registerGateway(services), { prefix: '/v1' });
  return app;
}

/** `bodyLimit`: the limit of the route that refused the body (the gateway's is configurable). */
function toApiError(error: FastifyError | ApiError, bodyLimit: number): ApiError {
  if (error instanceof ApiError) return error;
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('request_too_large', `The request body is larger than ${bodyLimit} bytes.`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(
        'unsupported_media_type',
        'Unsupported Content-Type: send JSON (application/json).',
      );
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('invalid_json', 'We could not parse the JSON body of your request.');
  }
  if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
    return new ApiError('invalid_request', error.message);
  }
  // PostgreSQL refusing a value itself (SQLSTATE class 22: text it cannot store, a number out of
  // range) is the request's fault, whatever check let it through: a 400, not a 500.
  if (isDataException(error)) {
    return new ApiError(
      'invalid_request',
      'A value in your request is not valid: text with a NUL character or an unpaired surrogate, or a number out of range.',
    );
  }
  return new ApiError(
    'server_error',
    'The server had an error while processing your request. Sorry about that!',
  );
}

/** JSON.parse's reviver: text PostgreSQL cannot store is refused where it enters. */
function refuseUnstorableText(_key: string, value: unknown): unknown {
  if (typeof value === 'string' && hasUnstorableText(value)) throw new UnstorableTextError();
  return value;
}

class UnstorableTextError extends Error {}

function redactKeysIn(path: string): string {
  return decodeURIComponentSafe(path).replace(KEY_PATTERN_IN_TEXT, (key) => redactKey(key));
}

/** Not global, so `test` keeps no state between requests. */
const KEY_IN_URL = new RegExp(KEY_PATTERN_IN_TEXT.source);

function decodeURIComponentSafe(text: string): string {
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
