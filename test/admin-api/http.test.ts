/**
 * What every Admin API request goes through before a handler: body parsing (broken JSON,
 * oversized bodies, wrong content types), unknown routes, and the `x-request-id` header.
 */
import OpenAI, { type APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMIT_BYTES } from '../../src/api/app.ts';
import {
  adminRequest,
  expectApiError,
  expectOk,
  type RawResponse,
  REQUEST_ID,
} from '../helpers/admin-api.ts';
import { backends } from '../helpers/stores.ts';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

describe.each(backends)('HTTP handling (%s)', (backend) => {
  let t: TestApp;
  let client: OpenAI;
  let projectId: string;
  beforeAll(async () => {
    t = await createTestApp({ backend });
    client = t.sdk();
    projectId = (await client.admin.organization.projects.create({ name: 'HTTP' })).id;
  });
  afterAll(() => t?.close());

  /** Everything a bad request could have written. */
  const snapshot = async () => ({
    projects: (await client.admin.organization.projects.list({ include_archived: true, limit: 100 })).data,
    // Without last_used_at, which the requests of the test itself move.
    adminKeys: (await client.admin.organization.adminAPIKeys.list({ limit: 100 })).data.map(
      ({ last_used_at: _used, ...key }) => key,
    ),
    keys: (await client.admin.organization.projects.apiKeys.list(projectId, { limit: 100 })).data,
    serviceAccounts: (
      await client.admin.organization.projects.serviceAccounts.list(projectId, { limit: 100 })
    ).data,
  });

  const creates = () => [
    '/projects',
    '/admin_api_keys',
    `/projects/${projectId}/api_keys`,
    `/projects/${projectId}/service_accounts`,
  ];

  describe('JSON bodies', () => {
    it.each([
      ['broken JSON', '{"name": "x",'],
      ['a trailing garbage', '{"name": "x"} x'],
      ['single quotes', "{'name': 'x'}"],
      ['a bare word', 'name'],
    ])('refuses %s with 400 invalid_json, writing nothing', async (_case, payload) => {
      const before = await snapshot();
      for (const path of creates()) {
        const response = await adminRequest(t, 'POST', path, {
          payload,
          headers: { 'content-type': 'application/json' },
        });
        expectApiError(response, 400, 'invalid_json', null);
      }
      expect(await snapshot()).toEqual(before);
    });

    it.each([
      ['a JSON array', '[{"name": "x"}]'],
      ['a JSON string', '"x"'],
      ['a JSON number', '42'],
    ])('refuses %s as the body with a 400', async (_case, payload) => {
      const before = await snapshot();
      for (const path of creates()) {
        const response = await adminRequest(t, 'POST', path, {
          payload,
          headers: { 'content-type': 'application/json' },
        });
        expectApiError(response, 400, 'invalid_request');
      }
      expect(await snapshot()).toEqual(before);
    });

    it('treats an empty JSON body as an empty object, as the SDK sends for bodiless POSTs', async () => {
      const project = await client.admin.organization.projects.create({ name: 'Empty body' });
      const archived = await adminRequest(t, 'POST', `/projects/${project.id}/archive`, {
        payload: '',
        headers: { 'content-type': 'application/json' },
      });
      expect(expectOk(archived)).toMatchObject({ id: project.id, status: 'archived' });
      const missing = await adminRequest(t, 'POST', '/projects', {
        payload: '',
        headers: { 'content-type': 'application/json' },
      });
      expectApiError(missing, 400, 'invalid_request', 'name');
    });

    it('tells a missing parameter from one of the wrong type, in the body and the query', async () => {
      /** The 400 a request gets, naming `param`: its message. */
      const refusal = async (method: 'GET' | 'POST', path: string, param: string, body?: unknown) =>
        expectApiError(await adminRequest(t, method, path, { body }), 400, 'invalid_request', param).message;
      expect(await refusal('POST', '/projects', 'name', {})).toBe("Missing required parameter: 'name'.");
      expect(await refusal('POST', '/projects', 'name', { name: 5 })).toMatch(
        /^Invalid 'name': .*expected string/,
      );
      expect(
        await refusal('POST', '/admin_api_keys', 'expires_in_seconds', {
          name: 'x',
          expires_in_seconds: 'soon',
        }),
      ).toMatch(/^Invalid 'expires_in_seconds': /);
      expect(await refusal('GET', '/projects?limit=abc', 'limit')).toMatch(/^Invalid 'limit': /);
    });

    it('refuses a body over 1 MiB with 413, writing nothing', async () => {
      const before = await snapshot();
      const payload = JSON.stringify({ name: 'x'.repeat(BODY_LIMIT_BYTES) });
      for (const path of creates()) {
        const response = await adminRequest(t, 'POST', path, {
          payload,
          headers: { 'content-type': 'application/json' },
        });
        expectApiError(response, 413, 'request_too_large');
      }
      expect(await snapshot()).toEqual(before);
    });

    it('reads a body just under 1 MiB (and judges its content)', async () => {
      const payload = JSON.stringify({ name: 'x'.repeat(BODY_LIMIT_BYTES - 100) });
      const response = await adminRequest(t, 'POST', '/projects', {
        payload,
        headers: { 'content-type': 'application/json' },
      });
      expectApiError(response, 400, 'invalid_request', 'name');
    });

    it.each([
      ['application/xml', '<project><name>x</name></project>'],
      ['application/x-www-form-urlencoded', 'name=x'],
      [
        'multipart/form-data; boundary=b',
        '--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--',
      ],
    ])('refuses a %s body with 415, writing nothing', async (contentType, payload) => {
      const before = await snapshot();
      for (const path of creates()) {
        const response = await adminRequest(t, 'POST', path, {
          payload,
          headers: { 'content-type': contentType },
        });
        expectApiError(response, 415, 'unsupported_media_type');
      }
      expect(await snapshot()).toEqual(before);
    });

    it('does not take a JSON document sent as text/plain for a request', async () => {
      const before = await snapshot();
      for (const path of creates()) {
        const response = await adminRequest(t, 'POST', path, {
          payload: '{"name": "x"}',
          headers: { 'content-type': 'text/plain' },
        });
        expect(response.status).toBeGreaterThanOrEqual(400);
        expect(response.status).toBeLessThan(500);
        expectApiError(
          response,
          response.status,
          response.status === 415 ? 'unsupported_media_type' : 'invalid_request',
        );
      }
      expect(await snapshot()).toEqual(before);
    });
  });

  describe('routes', () => {
    it.each([
      ['GET', '/v1/organization/nothing-here'],
      ['PUT', '/v1/organization/projects'],
      ['PATCH', `/v1/organization/projects/proj_x`],
      ['GET', '/v1/organization/projects/proj_x/api_keys/key_x/rotate'],
    ] as const)('answers %s %s with a 404 in OpenAI’s shape', async (method, path) => {
      const error = expectApiError(await adminRequest(t, method, path), 404, 'not_found');
      expect(error.message).toContain(path);
    });
  });

  describe('x-request-id', () => {
    it('is on every response, success or error, as req_ and 32 hex digits, never reused', async () => {
      const responses: RawResponse<unknown>[] = [];
      for (let i = 0; i < 5; i++) {
        responses.push(await adminRequest(t, 'GET', '/projects'));
        responses.push(await adminRequest(t, 'POST', '/projects', { body: { name: 1 } }));
        responses.push(await adminRequest(t, 'GET', '/projects', { key: null }));
        responses.push(await adminRequest(t, 'GET', '/projects/proj_missing'));
        responses.push(await adminRequest(t, 'GET', '/v1/organization/nothing-here'));
        responses.push(
          await adminRequest(t, 'POST', '/projects', {
            payload: '{',
            headers: { 'content-type': 'application/json' },
          }),
        );
        responses.push(await adminRequest(t, 'GET', `/projects?api_key=${t.adminKey}`));
        const health = await t.app.inject({ method: 'GET', url: '/healthz' });
        responses.push({
          status: health.statusCode,
          headers: health.headers,
          text: health.body,
          body: health.json(),
        });
      }
      const ids = responses.map((response) => response.headers['x-request-id']);
      for (const id of ids) expect(id).toMatch(REQUEST_ID);
      expect(new Set(ids).size).toBe(ids.length);
      expect(new Set(responses.map((response) => response.status))).toEqual(new Set([200, 400, 401, 404]));
    });

    it('ignores a request id sent by the client', async () => {
      const chosen = `req_${'a'.repeat(32)}`;
      const response = await adminRequest(t, 'GET', '/projects', { headers: { 'x-request-id': chosen } });
      expect(response.headers['x-request-id']).toMatch(REQUEST_ID);
      expect(response.headers['x-request-id']).not.toBe(chosen);
    });

    it('reaches SDK users on results and on errors', async () => {
      const { response, request_id } = await client.admin.organization.projects.list().withResponse();
      expect(request_id).toMatch(REQUEST_ID);
      expect(response.headers.get('x-request-id')).toBe(request_id);
      const error = await client.admin.organization.projects
        .retrieve('proj_missing')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.NotFoundError);
      expect((error as APIError).requestID).toMatch(REQUEST_ID);
      expect((error as APIError).requestID).not.toBe(request_id);
    });
  });
});
