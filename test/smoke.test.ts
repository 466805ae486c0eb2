import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './helpers/test-app.ts';

describe('smoke', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('lists projects with the SDK', async () => {
    const page = await t.sdk().admin.organization.projects.list();
    expect(page.data.map((p) => p.name)).toEqual(['Default project']);
  });
});
