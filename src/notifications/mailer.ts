/** The email port: SMTP when configured, otherwise a log line; memory for tests. */
import type { Logger } from 'pino';

export interface EmailMessage {
  to: string[];
  subject: string;
  text: string;
}

export interface Mailer {
  /** Rejects with a MailError (its message free of credentials) when the message was not accepted. */
  send(message: EmailMessage): Promise<void>;
  close(): Promise<void>;
}

export class MailError extends Error {
  constructor(
    message: string,
    /** Worth another attempt: a network failure or a 4xx SMTP reply. */
    readonly transient: boolean,
  ) {
    super(message);
    this.name = 'MailError';
  }
}

/** No SMTP configured: says who would have been emailed, and about what. */
export class LogMailer implements Mailer {
  constructor(private readonly logger: Logger) {}

  async send(message: EmailMessage): Promise<void> {
    this.logger.info(
      { to: message.to, subject: message.subject },
      'email not sent: no SMTP server configured (KEYPORT_SMTP_URL)',
    );
  }

  async close(): Promise<void> {}
}

export class MemoryMailer implements Mailer {
  readonly sent: EmailMessage[] = [];

  async send(message: EmailMessage): Promise<void> {
    this.sent.push(message);
  }

  async close(): Promise<void> {}
}
