/**
 * Real receivers on 127.0.0.1 with ephemeral ports: an SMTP server (smtp-server) that accepts a
 * login and keeps every message, and an HTTP server that keeps every webhook request. Both answer
 * as a test scripts them, by attempt number.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer } from 'smtp-server';
import { createLogger } from '../../src/services.ts';

export interface ReceivedMail {
  from: string;
  to: string[];
  /** Headers, unfolded, names lower-cased. */
  headers: Record<string, string>;
  /** The text body, transfer encoding undone. */
  text: string;
}

export interface SmtpReceiver {
  port: number;
  messages: ReceivedMail[];
  logins: { username: string; password: string }[];
  close(): Promise<void>;
}

/** `reply(n)` for the n-th message (1-based): undefined accepts it, an error is sent as the SMTP reply. */
export async function startSmtpServer(
  options: {
    reply?: (n: number) => { code: number; message: string } | undefined;
    rejectLogin?: boolean;
  } = {},
): Promise<SmtpReceiver> {
  const messages: ReceivedMail[] = [];
  const logins: SmtpReceiver['logins'] = [];
  let received = 0;
  const server = new SMTPServer({
    // Plain SMTP on loopback: no STARTTLS with a self-signed certificate to trust.
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, callback) {
      logins.push({ username: auth.username ?? '', password: auth.password ?? '' });
      // A server that echoes what it was sent: the client must still not log the password.
      if (options.rejectLogin)
        return callback(new Error(`Authentication failed for password ${auth.password}`));
      callback(null, { user: auth.username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const reply = options.reply?.(++received);
        if (reply) {
          const error = new Error(reply.message) as Error & { responseCode: number };
          error.responseCode = reply.code;
          return callback(error);
        }
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          ...parseMessage(Buffer.concat(chunks).toString('utf8')),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    messages,
    logins,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function parseMessage(raw: string): { headers: Record<string, string>; text: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let text = raw.slice(split + 4);
  if (headers['content-transfer-encoding'] === 'quoted-printable') {
    text = Buffer.from(
      text
        .replace(/=\r\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
      'latin1',
    ).toString('utf8');
  }
  return { headers, text: text.replace(/\r\n/g, '\n') };
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as it arrived: what a receiver verifies the signature over. */
  raw: string;
}

export interface WebhookReceiver {
  url: string;
  requests: ReceivedRequest[];
  close(): Promise<void>;
}

/** `status(n)` answers the n-th request (1-based); 200 by default. */
export async function startWebhookReceiver(
  status: (n: number) => number = () => 200,
): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      requests.push({
        method: request.method ?? '',
        path: request.url ?? '',
        headers: request.headers,
        raw: Buffer.concat(chunks).toString('utf8'),
      });
      response.statusCode = status(requests.length);
      response.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hooks/keyport/a-path-secret`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A pino logger whose lines are kept, parsed. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw.push(String(chunk));
      done();
    },
  });
  const logger = createLogger({ logLevel: 'debug' }, sink);
  return {
    logger,
    get lines() {
      return raw.map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    text: () => raw.join(''),
  };
}
