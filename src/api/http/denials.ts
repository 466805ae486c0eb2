/** The one place where a verification denial becomes the error a client sees. */
import { ApiError } from '../../core/errors.ts';
import type { DenialCode } from '../../keys/verify-key.ts';

const HINT = 'You can find your API keys with `keyport keys list` or the Admin API.';

export function denialToError(code: DenialCode, redactedValue: string): ApiError {
  switch (code) {
    case 'MALFORMED':
    case 'NOT_FOUND':
      return new ApiError('invalid_api_key', `Incorrect API key provided: ${redactedValue}. ${HINT}`);
    case 'REVOKED':
      return new ApiError('invalid_api_key', `The API key ${redactedValue} has been revoked. ${HINT}`);
    case 'ROTATED':
      return new ApiError(
        'invalid_api_key',
        `The API key ${redactedValue} was rotated and this secret's grace period has ended; use the new secret.`,
      );
    case 'EXPIRED':
      return new ApiError('expired_api_key', `The API key ${redactedValue} has expired.`);
    case 'DISABLED':
      return new ApiError('disabled_api_key', `The API key ${redactedValue} is disabled.`);
    case 'PROJECT_ARCHIVED':
      return new ApiError(
        'invalid_api_key',
        `The API key ${redactedValue} belongs to an archived project; archived projects cannot be used.`,
      );
    case 'IP_NOT_ALLOWED':
      return new ApiError(
        'ip_not_authorized',
        `The API key ${redactedValue} is not allowed from this IP address; check the key's and the project's IP allow-lists.`,
      );
  }
}

/** Reads `Authorization: Bearer <key>`; the key is never accepted anywhere else. */
export function bearerToken(header: string | undefined): string {
  if (!header) {
    throw new ApiError(
      'missing_api_key',
      "You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY).",
    );
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new ApiError('invalid_api_key', 'Invalid Authorization header: expected "Bearer YOUR_KEY".');
  }
  return match[1] as string;
}
