import { randomBase62 } from './base62.ts';

/** Prefixed identifiers in OpenAI's styles, so ids say what they name. */
const ID_PREFIXES = {
  organization: 'org-',
  user: 'user-',
  project: 'proj_',
  serviceAccount: 'svc_acct_',
  apiKey: 'key_',
  request: 'req_',
  price: 'price_',
  creditGrant: 'credit_',
  invoice: 'inv_',
  payment: 'pay_',
  session: 'sess_',
  invite: 'invite-',
  auditLog: 'audit_log-',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

export function newId(kind: IdKind): string {
  return ID_PREFIXES[kind] + randomBase62(kind === 'apiKey' ? 16 : 24);
}

export function isIdOf(kind: IdKind, value: string): boolean {
  const prefix = ID_PREFIXES[kind];
  return value.startsWith(prefix) && /^[0-9A-Za-z]{8,64}$/.test(value.slice(prefix.length));
}
