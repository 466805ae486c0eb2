/** Builds the services once and serves every surface on one port. */
import type { FastifyInstance } from 'fastify';
import { buildApp } from './api/app.ts';
import type { Config } from './config/config.ts';
import { UserError } from './core/user-error.ts';
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
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new UserError(
        `KEYPORT_PORT: ${config.host}:${config.port} is already in use (another Keyport?). Stop it or choose another port.`,
      );
    }
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    app,
    services: svc,
    url,
    close: () => {
      closing ??= (async () => {
        await app.close();
        await svc.close();
      })();
      return closing;
    },
  };
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
