/**
 * `GET /metrics`: Prometheus's text format, through prom-client. What an operator watches: the
 * responses per API and status class, the limiter (Redis outages and the calls answered locally
 * meanwhile, admissions from local grants), the usage recorder (events waiting for the database,
 * refused, lost), and Node's own (event-loop delay, GC, memory). Labels never carry an
 * organization, key or path: the series stay few whatever the traffic, and say nothing of tenants.
 *
 * The counters are Keyport's own, read at scrape time; the request path only adds to an array.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { DatabaseUsageRecorder } from '../../billing/usage-recorder.ts';
import type { ResponseCounts } from '../../core/response-counts.ts';
import { RedisLimiter } from '../../limits/redis-limiter.ts';
import type { Services } from '../../services.ts';

/** A registry of this instance's metrics (one per app, so that several apps in a process keep apart). */
export function metricsRegistry(services: Services): Registry {
  const responses: ResponseCounts = services.responses;
  const registers = [new Registry()];
  const [register] = registers as [Registry];
  collectDefaultMetrics({ register, prefix: 'keyport_' });

  new Counter({
    name: 'keyport_http_responses_total',
    help: 'HTTP responses, by API (gateway, admin, dashboard, other) and status class',
    labelNames: ['api', 'status_class'],
    registers,
    collect() {
      this.reset();
      for (const [api, statusClass, count] of responses.entries()) {
        this.inc({ api, status_class: statusClass }, count);
      }
    },
  });

  const limiter = services.enforcer.limiter;
  const redis = limiter instanceof RedisLimiter ? limiter : undefined;
  new Gauge({
    name: 'keyport_limiter_info',
    help: 'The rate-limit backend: memory (per instance) or redis (shared)',
    labelNames: ['backend'],
    registers,
    collect() {
      this.set({ backend: limiter.name }, 1);
    },
  });
  // Keyport's own counts, read at scrape time: a counter is set by resetting and adding.
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  const total = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  gauge(
    'keyport_limiter_redis_degraded',
    '1 while Redis is unreachable and limits are enforced per instance',
    () => (redis?.degraded ? 1 : 0),
  );
  total(
    'keyport_limiter_redis_outages_total',
    'Times Redis became unreachable (each outage counted once)',
    () => redis?.fallbacks ?? 0,
  );
  total(
    'keyport_limiter_redis_fallback_calls_total',
    'Limiter calls answered by local limits while Redis was unreachable',
    () => redis?.fallbackCalls ?? 0,
  );
  total(
    'keyport_limiter_local_grant_admissions_total',
    'Admissions decided from capacity taken from Redis ahead of need, with no round trip',
    () => redis?.grantedAdmissions ?? 0,
  );

  const recorder = services.usage instanceof DatabaseUsageRecorder ? services.usage : undefined;
  gauge(
    'keyport_usage_pending_events',
    'Usage events recorded and not written to the database yet',
    () => recorder?.pending ?? 0,
  );
  total(
    'keyport_usage_rejected_events_total',
    'Usage events the database refused to store (logged with their row, and dropped)',
    () => recorder?.rejected ?? 0,
  );
  total(
    'keyport_usage_lost_events_total',
    'Usage events lost: neither written, nor in the journal, nor kept in memory',
    () => recorder?.lost ?? 0,
  );
  return register;
}
