/** Builds the services once and serves every surface on one port. */

import type { FastifyInstance } from 'fastify';
import { buildApp } from './api/app.ts';
import type { Config } from './config/config.ts';
import { UserError } from './core/user-error.ts';
import { purgeExpiredAuditLogs } from './guard/audit-query.ts';
import { createServices, type Services } from './services.ts';

export interface RunningServer {
  app: FastifyInstance;
  services: Services;
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  close(): Promise<void>;
}

export async function startServer(config: Config, services?: Services): Promise<RunningServer> {
  const svc = services ?? (await createServices(config));
  let app: FastifyInstance;
  try {
    app = await buildApp(svc);
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await svc.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new UserError(
        `KEYPORT_PORT: ${config.host}:${config.port} is already in use (another Keyport?). Stop it or choose another port.`,
      );
    }
    if (code === 'ENOTFOUND' || code === 'EADDRNOTAVAIL' || code === 'EAI_AGAIN') {
      throw new UserError(
        `KEYPORT_HOST: cannot listen on "${config.host}" (${code}): give an address of this machine, such as 127.0.0.1 or 0.0.0.0.`,
      );
    }
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const cycle = startBillingCycle(svc);
  let closing: Promise<void> | undefined;
  return {
    app,
    services: svc,
    url,
    close: () => {
      closing ??= (async () => {
        clearInterval(cycle);
        await app.close();
        await svc.close();
      })();
      return closing;
    },
  };
}

/**
 * Issues last month's invoices soon after start and then every hour, and deletes audit entries past
 * their retention; on several instances each runs it, and the database keeps one invoice per
 * organization and month (a purge is idempotent).
 */
function startBillingCycle(services: Services): NodeJS.Timeout {
  const run = () => {
    void services.billing.runCycle().then(
      (issued) => {
        if (issued > 0) services.logger.info({ issued }, 'monthly invoices issued');
      },
      (error) =>
        services.logger.error({ err: error }, 'the billing cycle failed; it runs again within the hour'),
    );
    void purgeExpiredAuditLogs(services.store.db, services.config.auditRetentionDays).then(
      (deleted) => {
        if (deleted > 0) services.logger.info({ deleted }, 'audit entries past their retention deleted');
      },
      (error) =>
        services.logger.error({ err: error }, 'the audit-log purge failed; it runs again within the hour'),
    );
  };
  setTimeout(run, 10_000).unref();
  const timer = setInterval(run, 3_600_000);
  timer.unref();
  return timer;
}

/** SIGINT/SIGTERM: stop accepting, finish in-flight requests, flush, close the database. */
export function closeOnSignals(server: RunningServer): void {
  const stop = (signal: string) => {
    server.services.logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (error) => {
        server.services.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
