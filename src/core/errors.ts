/**
 * Every error a client can see, in one table: OpenAI's wire shape
 * `{"error": {"message", "type", "param", "code"}}` plus the HTTP status.
 */

export const ERROR_CODES = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  missing_api_key: { status: 401, type: 'invalid_request_error' },
  invalid_api_key: { status: 401, type: 'invalid_request_error' },
  expired_api_key: { status: 401, type: 'invalid_request_error' },
  disabled_api_key: { status: 401, type: 'invalid_request_error' },
  ip_not_authorized: { status: 401, type: 'invalid_request_error' },
  mismatched_organization: { status: 401, type: 'invalid_request_error' },
  mismatched_project: { status: 401, type: 'invalid_request_error' },
  missing_scope: { status: 403, type: 'invalid_request_error' },
  // Accounts and the dashboard.
  not_authenticated: { status: 401, type: 'invalid_request_error' },
  invalid_credentials: { status: 401, type: 'invalid_request_error' },
  invalid_mfa_code: { status: 401, type: 'invalid_request_error' },
  email_not_verified: { status: 403, type: 'invalid_request_error' },
  reauthentication_required: { status: 403, type: 'invalid_request_error' },
  csrf_failed: { status: 403, type: 'invalid_request_error' },
  permission_denied: { status: 403, type: 'invalid_request_error' },
  invalid_token: { status: 400, type: 'invalid_request_error' },
  too_many_attempts: { status: 429, type: 'invalid_request_error' },
  /** Only the instance operator's organization may do this (prices, credit, payments, plans). */
  operator_only: { status: 403, type: 'invalid_request_error' },
  not_found: { status: 404, type: 'invalid_request_error' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  conflict: { status: 409, type: 'invalid_request_error' },
  request_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  // OpenAI sets the type to the limit that was hit: `requests` or `tokens`.
  rate_limit_exceeded: { status: 429, type: 'requests' },
  insufficient_quota: { status: 429, type: 'insufficient_quota' },
  server_error: { status: 500, type: 'server_error' },
  bad_gateway: { status: 502, type: 'server_error' },
  service_unavailable: { status: 503, type: 'server_error' },
  gateway_timeout: { status: 504, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error meant for the client; anything else that is thrown becomes a 500 with no details. */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
    type?: string,
  ) {
    super(message);
    this.status = ERROR_CODES[code].status;
    this.type = type ?? ERROR_CODES[code].type;
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null) =>
  new ApiError('invalid_request', message, param);

export const notFound = (what: string, id: string) =>
  new ApiError('not_found', `No ${what} found with id '${id}'.`);
