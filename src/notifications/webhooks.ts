/**
 * Webhook delivery: one signed POST per attempt (re-signed, so a retry carries a fresh timestamp),
 * with undici. Redirects are not followed: a receiver that moved is a configuration error.
 */
import { request } from 'undici';
import type { AttemptOutcome } from './retry.ts';
import { EVENT_ID_HEADER, SIGNATURE_HEADER, signWebhook } from './webhook-signature.ts';

export interface WebhookEndpoint {
  url: string;
  secret: string;
  /** Alert kinds (`budget.hard_limit`), prefixes (`budget.*`) or `*`; undefined = every kind. */
  events?: readonly string[] | undefined;
}

export interface WebhookEvent {
  /** Stable across attempts: receivers deduplicate on it. */
  id: string;
  type: string;
  /** Unix seconds. */
  createdAt: number;
  data: Record<string, unknown>;
}

export const WEBHOOK_TIMEOUT_MS = 10_000;

export function wantsEvent(endpoint: WebhookEndpoint, kind: string): boolean {
  if (!endpoint.events) return true;
  return endpoint.events.some(
    (pattern) =>
      pattern === '*' ||
      pattern === kind ||
      (pattern.endsWith('.*') && kind.startsWith(pattern.slice(0, -1))),
  );
}

export function webhookBody(event: WebhookEvent): string {
  return JSON.stringify({
    id: event.id,
    object: 'alert',
    type: event.type,
    created_at: event.createdAt,
    data: event.data,
  });
}

/** Scheme, host and port only: a webhook URL's path or query may itself be a credential. */
export function webhookOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '[unparsable URL]';
  }
}

/** One attempt. Network errors, timeouts, 408, 429 and 5xx are worth retrying; other answers are final. */
export async function postWebhook(
  endpoint: WebhookEndpoint,
  event: WebhookEvent,
  body: string,
  timeoutMs = WEBHOOK_TIMEOUT_MS,
): Promise<AttemptOutcome> {
  try {
    const response = await request(endpoint.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'Keyport-Webhooks/1',
        [EVENT_ID_HEADER]: event.id,
        [SIGNATURE_HEADER]: signWebhook(endpoint.secret, body),
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Release the connection; what the receiver says is not needed.
    await response.body.dump();
    const status = response.statusCode;
    if (status >= 200 && status < 300) return { ok: true };
    return { ok: false, retry: status === 408 || status === 429 || status >= 500, reason: `HTTP ${status}` };
  } catch (error) {
    const { name, code, message } = error as { name?: string; code?: string; message?: string };
    const reason =
      name === 'TimeoutError' || name === 'AbortError'
        ? `no answer within ${timeoutMs} ms`
        : `${code ?? name ?? 'Error'}: ${message ?? String(error)}`;
    return { ok: false, retry: true, reason: reason.replaceAll(endpoint.url, webhookOrigin(endpoint.url)) };
  }
}
