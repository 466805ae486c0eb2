/** Email over SMTP with nodemailer. The URL carries the password: it is shown only redacted. */
import nodemailer, { type Transporter } from 'nodemailer';
import { type EmailMessage, MailError, type Mailer } from './mailer.ts';

/** `smtp://user:[redacted]@host:587`: safe to log. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = 'redacted';
    // Query parameters may carry credentials too (nodemailer reads options from them).
    for (const name of [...parsed.searchParams.keys()]) parsed.searchParams.set(name, 'redacted');
    return parsed.toString().replace(':redacted@', ':[redacted]@');
  } catch {
    return '[unparsable URL]';
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** nodemailer error codes that mean the server was not reached or the connection broke. */
const NETWORK_CODES = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ETLS', 'EPROTOCOL']);

export class SmtpMailer implements Mailer {
  readonly #transport: Transporter;
  /** Every form the password could take in a server's reply or an error message. */
  readonly #secrets: string[];

  constructor(
    url: string,
    from: string,
    timeouts: { connectionMs?: number; greetingMs?: number; socketMs?: number } = {},
  ) {
    const parsed = new URL(url);
    const user = safeDecode(parsed.username);
    const password = safeDecode(parsed.password);
    // As typed, as in the URL, and as AUTH LOGIN and AUTH PLAIN send it.
    this.#secrets = password
      ? [
          password,
          parsed.password,
          Buffer.from(password).toString('base64'),
          Buffer.from(`\0${user}\0${password}`).toString('base64'),
        ]
      : [];
    // nodemailer's defaults wait minutes; an alert should fail fast and be retried.
    this.#transport = nodemailer.createTransport(
      {
        url,
        connectionTimeout: timeouts.connectionMs ?? 10_000,
        greetingTimeout: timeouts.greetingMs ?? 10_000,
        socketTimeout: timeouts.socketMs ?? 30_000,
      },
      { from },
    );
  }

  async send(message: EmailMessage): Promise<void> {
    try {
      await this.#transport.sendMail({ to: message.to, subject: message.subject, text: message.text });
    } catch (error) {
      throw this.#toMailError(error);
    }
  }

  async close(): Promise<void> {
    this.#transport.close();
  }

  #toMailError(error: unknown): MailError {
    const { code, responseCode, message } = error as {
      code?: string;
      responseCode?: number;
      message?: string;
    };
    const transient =
      (typeof responseCode === 'number' && responseCode >= 400 && responseCode < 500) ||
      (code !== undefined && NETWORK_CODES.has(code));
    let text = `${code ? `${code}: ` : ''}${message ?? String(error)}`;
    for (const secret of this.#secrets) text = text.replaceAll(secret, '[redacted]');
    return new MailError(text, transient);
  }
}
