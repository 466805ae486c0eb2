/**
 * IP allow-lists, per key and per project, against the address the request really came from: the
 * socket's, or X-Forwarded-For only when the socket is a configured trusted proxy (and then the
 * rightmost address that is not a trusted proxy).
 */

import type OpenAI from 'openai';
import { type APIError, AuthenticationError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, expectOk } from '../helpers/admin-api.ts';
import { TEST_ACTOR } from '../helpers/stores.ts';
import { canListen, createTestGateway, refusal, type TestGateway } from '../helpers/test-gateway.ts';

async function chat(client: OpenAI, headers: Record<string, string> = {}) {
  return client.chat.completions
    .create({ model: 'mock-gpt-4o', messages: [{ role: 'user', content: 'From where?' }] }, { headers })
    .withResponse();
}

const expectIpRefused = (error: APIError) => {
  expect(error).toBeInstanceOf(AuthenticationError);
  expect(error.code).toBe('ip_not_authorized');
};

const ipv6Loopback = await canListen('::1');

describe('IP allow-lists, no trusted proxies', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway();
  });
  afterAll(() => gw?.close());

  it('a key allowing 127.0.0.1/32 works from 127.0.0.1', async () => {
    const key = await gw.createKey({ allowedIps: ['127.0.0.1/32'] });
    const { data, request_id } = await chat(gw.openai(key.secret));
    expect(data.object).toBe('chat.completion');
    expect((await gw.usageFor(request_id as string))[0]?.clientIp).toBe('127.0.0.1');
  });

  it('a key allowing only 10.0.0.0/8 is refused from 127.0.0.1, without reaching the upstream', async () => {
    const key = await gw.createKey({ allowedIps: ['10.0.0.0/8'] });
    const before = gw.mock.stats.requests;
    const error = await refusal(chat(gw.openai(key.secret)));
    expectIpRefused(error);
    expect(error.message).toContain(key.key.redactedValue);
    expect(gw.mock.stats.requests).toBe(before);
  });

  it('also for reads (models) and with several ranges of which none matches', async () => {
    const key = await gw.createKey({ allowedIps: ['10.0.0.0/8', '192.168.0.0/16', '2001:db8::/32'] });
    expectIpRefused(await refusal(gw.openai(key.secret).models.list()));
  });

  it('a spoofed X-Forwarded-For is ignored: the socket address counts', async () => {
    const key = await gw.createKey({ allowedIps: ['10.0.0.0/8'] });
    expectIpRefused(await refusal(chat(gw.openai(key.secret), { 'x-forwarded-for': '10.1.2.3' })));
    const open = await gw.createKey();
    const { request_id } = await chat(gw.openai(open.secret), { 'x-forwarded-for': '10.1.2.3' });
    expect((await gw.usageFor(request_id as string))[0]?.clientIp).toBe('127.0.0.1');
  });

  it('the project’s allow-list applies to its keys', async () => {
    const { organization } = gw.instance;
    const closed = await gw.services.projects.create(
      organization.id,
      {
        name: 'Office only',
        allowedIps: ['10.0.0.0/8'],
      },
      TEST_ACTOR,
    );
    const open = await gw.services.projects.create(
      organization.id,
      {
        name: 'Loopback',
        allowedIps: ['127.0.0.0/8'],
      },
      TEST_ACTOR,
    );
    const refusedKey = await gw.createKey({ projectId: closed.id });
    expectIpRefused(await refusal(chat(gw.openai(refusedKey.secret))));
    const allowedKey = await gw.createKey({ projectId: open.id });
    expect((await chat(gw.openai(allowedKey.secret))).data.object).toBe('chat.completion');
    // Both lists must allow: a key list allowing 127.0.0.1 does not widen the project's.
    const both = await gw.createKey({ projectId: closed.id, allowedIps: ['127.0.0.1'] });
    expectIpRefused(await refusal(chat(gw.openai(both.secret))));
  });

  it('a project allow-list changed through the Admin API applies to the next request', async () => {
    const project = await gw.services.projects.create(
      gw.instance.organization.id,
      { name: 'Tightened' },
      TEST_ACTOR,
    );
    const key = await gw.createKey({ projectId: project.id });
    const client = gw.openai(key.secret);
    expect((await chat(client)).data.object).toBe('chat.completion');
    expectOk(
      await adminRequest(gw, 'POST', `/projects/${project.id}`, { body: { allowed_ips: ['10.0.0.0/8'] } }),
    );
    expectIpRefused(await refusal(chat(client)));
    expectOk(await adminRequest(gw, 'POST', `/projects/${project.id}`, { body: { allowed_ips: [] } }));
    expect((await chat(client)).data.object).toBe('chat.completion');
  });

  it('a key allow-list changed through the Admin API applies to the next request', async () => {
    const key = await gw.createKey();
    const client = gw.openai(key.secret);
    expect((await chat(client)).data.object).toBe('chat.completion');
    const path = `/projects/${gw.instance.project.id}/api_keys/${key.key.id}`;
    expectOk(await adminRequest(gw, 'POST', path, { body: { allowed_ips: ['10.0.0.0/8'] } }));
    expectIpRefused(await refusal(chat(client)));
  });

  it('no secret in any response or log line', async () => {
    expect(await gw.findLeaks()).toEqual([]);
  });
});

describe('IP allow-lists behind a trusted proxy (127.0.0.1/32)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ config: { trustedProxies: ['127.0.0.1/32'] } });
  });
  afterAll(() => gw?.close());

  it('X-Forwarded-For from the trusted proxy is believed', async () => {
    const key = await gw.createKey({ allowedIps: ['10.0.0.0/8'] });
    const { data, request_id } = await chat(gw.openai(key.secret), { 'x-forwarded-for': '10.1.2.3' });
    expect(data.object).toBe('chat.completion');
    expect((await gw.usageFor(request_id as string))[0]?.clientIp).toBe('10.1.2.3');
  });

  it('and then the proxy’s own address no longer counts', async () => {
    const key = await gw.createKey({ allowedIps: ['127.0.0.1/32'] });
    expectIpRefused(await refusal(chat(gw.openai(key.secret), { 'x-forwarded-for': '10.1.2.3' })));
    // Without the header, the proxy's address is the client's.
    expect((await chat(gw.openai(key.secret))).data.object).toBe('chat.completion');
  });

  it('a chain resolves to the rightmost address that is not a trusted proxy', async () => {
    const key = await gw.createKey({ allowedIps: ['10.0.0.0/8'] });
    const client = gw.openai(key.secret);
    // 10.1.2.3 may be forged by the client; 192.168.1.9 is what the trusted proxy saw.
    expectIpRefused(await refusal(chat(client, { 'x-forwarded-for': '10.1.2.3, 192.168.1.9' })));
    // A trusted hop on the right is skipped.
    const { request_id } = await chat(client, { 'x-forwarded-for': '10.1.2.3, 127.0.0.1' });
    expect((await gw.usageFor(request_id as string))[0]?.clientIp).toBe('10.1.2.3');
  });

  it('X-Forwarded-For is not passed on to the upstream', async () => {
    const key = await gw.createKey();
    await chat(gw.openai(key.secret), { 'x-forwarded-for': '10.1.2.3' });
    expect(gw.mock.received.at(-1)?.headers['x-forwarded-for']).toBeUndefined();
  });

  it('no secret in any response or log line', async () => {
    expect(await gw.findLeaks()).toEqual([]);
  });
});

describe.skipIf(!ipv6Loopback)('IPv6 allow-lists, over [::1]', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await createTestGateway({ host: '::1' });
  });
  afterAll(() => gw?.close());

  it('a key allowing ::1/128 works from ::1', async () => {
    const key = await gw.createKey({ allowedIps: ['::1/128'] });
    const { data, request_id } = await chat(gw.openai(key.secret));
    expect(data.object).toBe('chat.completion');
    expect((await gw.usageFor(request_id as string))[0]?.clientIp).toBe('::1');
  });

  it('a key allowing only an IPv4 range or another IPv6 range is refused from ::1', async () => {
    const v4 = await gw.createKey({ allowedIps: ['127.0.0.1/32'] });
    expectIpRefused(await refusal(chat(gw.openai(v4.secret))));
    const v6 = await gw.createKey({ allowedIps: ['2001:db8::/32'] });
    expectIpRefused(await refusal(chat(gw.openai(v6.secret))));
  });

  it('no secret in any response or log line', async () => {
    expect(await gw.findLeaks()).toEqual([]);
  });
});
