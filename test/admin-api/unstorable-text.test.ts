/**
 * Text PostgreSQL cannot store (NUL, unpaired surrogates) sent to the Admin API: a 400 in OpenAI's
 * shape where it enters, nothing written — not a 500 from deep in the database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/test-app.ts';

describe('text the database cannot store', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(() => app?.close());

  const call = (method: 'GET' | 'POST', url: string, body?: unknown) =>
    app.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${app.adminKey}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });

  it('in a JSON body: 400 invalid_request_error, and nothing is created', async () => {
    const project = app.instance.project.id;
    const projectsBefore = (await call('GET', '/v1/organization/projects?limit=100')).json().data.length;
    const keysBefore = (await call('GET', `/v1/organization/projects/${project}/api_keys?limit=100`)).json()
      .data.length;
    const attempts: [string, unknown][] = [
      ['/v1/organization/projects', { name: 'nul\u0000name' }],
      ['/v1/organization/projects', { name: 'lone \ud800 surrogate' }],
      [`/v1/organization/projects/${project}/api_keys`, { name: 'trailing low \udc00' }],
      ['/v1/organization/invites', { email: 'x\u0000@example.com', role: 'reader' }],
    ];
    for (const [url, body] of attempts) {
      const response = await call('POST', url, body);
      expect(response.statusCode, url).toBe(400);
      expect(response.json().error).toMatchObject({ type: 'invalid_request_error' });
      expect(response.json().error.message).toContain('cannot be stored');
    }
    expect((await call('GET', '/v1/organization/projects?limit=100')).json().data).toHaveLength(
      projectsBefore,
    );
    expect(
      (await call('GET', `/v1/organization/projects/${project}/api_keys?limit=100`)).json().data,
    ).toHaveLength(keysBefore);
    // A surrogate pair (an emoji) is text like any other.
    expect((await call('POST', '/v1/organization/projects', { name: 'Rockets 🚀' })).statusCode).toBe(200);
  });

  it('in a path or a query: a 400 too, not a 500', async () => {
    for (const url of ['/v1/organization/projects/proj_%00', '/v1/organization/projects?after=proj_%00']) {
      const response = await call('GET', url);
      expect(response.statusCode, url).toBeLessThan(500);
      expect(response.json().error).toMatchObject({ type: 'invalid_request_error' });
    }
  });
});
