/**
 * Raw Admin API requests for what the SDK cannot express (Keyport's extension routes, broken
 * bodies, odd headers), the assertions every error response must pass, and a second
 * organization in the same database for isolation tests.
 */

import type { AdminAPIKey } from 'openai/resources/admin/organization/admin-api-keys';
import type { ProjectAPIKey } from 'openai/resources/admin/organization/projects/api-keys';
import type { Project } from 'openai/resources/admin/organization/projects/projects';
import { expect } from 'vitest';
import type { IssuedKey } from '../../src/keys/key-service.ts';
import { addMember, insertOrganization, insertUser } from '../../src/store/repositories/organizations.ts';
import { insertProject } from '../../src/store/repositories/projects.ts';
import type { OrganizationRow, ProjectRow, UserRow } from '../../src/store/schema.ts';
import { TEST_ACTOR } from './stores.ts';
import type { TestApp } from './test-app.ts';

export const ADMIN_PREFIX = '/v1/organization';
export const REQUEST_ID = /^req_[0-9a-f]{32}$/;

/** A project key as Keyport returns it: the SDK's shape plus Keyport's extra fields. */
export type KeyportProjectKey = ProjectAPIKey & {
  scopes: string[];
  allowed_models: string[];
  allowed_ips: string[];
  enabled: boolean;
};
export type CreatedProjectKey = KeyportProjectKey & { value: string };
export type RotatedProjectKey = CreatedProjectKey & { previous_secret_expires_at: number };
export type KeyportProject = Project & { allowed_ips: string[] };
export type { AdminAPIKey };

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface RawResponse<T> {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  text: string;
  body: T;
}

export interface RawRequest {
  /** Sent as JSON unless `payload` is given. */
  body?: unknown;
  /** Sent as is (a string or buffer), e.g. broken JSON. */
  payload?: string | Buffer;
  /** The admin key to send; `null` sends no Authorization header. Defaults to the app's admin key. */
  key?: string | null;
  headers?: Record<string, string>;
}

/** One request through `app.inject`; `path` is relative to `/v1/organization` unless it starts with `/v1`. */
export async function adminRequest<T = unknown>(
  t: TestApp,
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH',
  path: string,
  request: RawRequest = {},
): Promise<RawResponse<T>> {
  const key = request.key === undefined ? t.adminKey : request.key;
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  let payload: string | Buffer | undefined = request.payload;
  if (payload === undefined && request.body !== undefined) {
    payload = JSON.stringify(request.body);
    headers['content-type'] = 'application/json';
  }
  Object.assign(headers, request.headers);
  const response = await t.app.inject({
    method,
    url: path.startsWith('/v1') ? path : `${ADMIN_PREFIX}${path}`,
    headers,
    ...(payload !== undefined ? { payload } : {}),
  });
  const text = response.body;
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.statusCode, headers: response.headers, text, body: body as T };
}

/** The request succeeded; returns its body. */
export function expectOk<T>(response: RawResponse<T>): T {
  if (response.status !== 200) throw new Error(`expected 200, got ${response.status}: ${response.text}`);
  expect(response.headers['x-request-id']).toMatch(REQUEST_ID);
  return response.body;
}

/** OpenAI's error shape, the status and code, and an `x-request-id`. */
export function expectApiError(
  response: RawResponse<unknown>,
  status: number,
  code: string,
  param?: string | null,
): ErrorBody['error'] {
  expect(response.status, response.text).toBe(status);
  expect(response.headers['x-request-id']).toMatch(REQUEST_ID);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const body = response.body as ErrorBody;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.code).toBe(code);
  expect(body.error.type).toBe(status >= 500 ? 'server_error' : 'invalid_request_error');
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body.error;
}

export interface SecondOrganization {
  organization: OrganizationRow;
  owner: UserRow;
  project: ProjectRow;
  adminKey: IssuedKey;
}

let organizations = 0;

/** Another organization in the same database, with an owner, a project and an admin key. */
export async function createSecondOrganization(
  t: TestApp,
  name = 'Other organization',
): Promise<SecondOrganization> {
  const { db } = t.services.store;
  const n = ++organizations;
  const organization = await insertOrganization(db, name);
  const owner = await insertUser(db, `owner-${n}-${organization.id}@other.test`, `Other owner ${n}`);
  await addMember(db, organization.id, owner.id, 'owner');
  const project = await insertProject(db, { organizationId: organization.id, name: `${name} project` });
  const adminKey = await t.services.keys.create(
    {
      organizationId: organization.id,
      kind: 'admin',
      name: `${name} admin key`,
      ownerUserId: owner.id,
    },
    TEST_ACTOR,
  );
  return { organization, owner, project, adminKey };
}

/** Creates a project key through Keyport's extension route and returns it with its secret. */
export async function createProjectKey(
  t: TestApp,
  projectId: string,
  body: Record<string, unknown> = {},
): Promise<CreatedProjectKey> {
  return expectOk(
    await adminRequest<CreatedProjectKey>(t, 'POST', `/projects/${projectId}/api_keys`, {
      body: { name: 'Test key', ...body },
    }),
  );
}

/** `kp_proj_3nT0…abcd`: the first 12 characters, an ellipsis, the last 4. */
export function redacted(secret: string): string {
  return `${secret.slice(0, 12)}…${secret.slice(-4)}`;
}
