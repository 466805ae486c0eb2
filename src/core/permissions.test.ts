import { describe, expect, it } from 'vitest';
import { InvalidScopeError, permissionsFromScopes, permits, scopesFromPermissions } from './permissions.ts';

describe('permissions', () => {
  it('maps OpenAI scope lists to All, Read only and Restricted', () => {
    expect(permissionsFromScopes([])).toEqual({ mode: 'all' });
    expect(permissionsFromScopes(['api.all.read'])).toEqual({ mode: 'read_only' });
    expect(permissionsFromScopes(['api.model.read', 'api.files.write'])).toEqual({
      mode: 'restricted',
      resources: { model: 'read', files: 'write' },
    });
  });

  it('all permits everything; read only permits reads only', () => {
    expect(permits({ mode: 'all' }, 'files', 'write')).toBe(true);
    expect(permits({ mode: 'read_only' }, 'files', 'read')).toBe(true);
    expect(permits({ mode: 'read_only' }, 'chat.completions', 'write')).toBe(false);
  });

  it('restricted: write implies read, absent means none', () => {
    const p = permissionsFromScopes(['api.files.write', 'api.model.read']);
    expect(permits(p, 'files', 'read')).toBe(true);
    expect(permits(p, 'files', 'write')).toBe(true);
    expect(permits(p, 'model', 'read')).toBe(true);
    expect(permits(p, 'model', 'write')).toBe(false);
    expect(permits(p, 'embeddings', 'write')).toBe(false);
  });

  it('api.model.request grants every model capability', () => {
    const p = permissionsFromScopes(['api.model.request']);
    for (const capability of [
      'chat.completions',
      'completions',
      'embeddings',
      'images',
      'audio',
      'moderations',
    ] as const) {
      expect(permits(p, capability, 'write')).toBe(true);
    }
    expect(permits(p, 'files', 'read')).toBe(false);
  });

  it('round-trips through the canonical scope list', () => {
    const scopes = ['api.files.read', 'api.files.write', 'api.model.read'];
    expect(scopesFromPermissions(permissionsFromScopes(scopes))).toEqual([
      'api.model.read',
      'api.files.write',
    ]);
    expect(scopesFromPermissions({ mode: 'all' })).toEqual([]);
    expect(scopesFromPermissions({ mode: 'read_only' })).toEqual(['api.all.read']);
  });

  it('refuses unknown scopes and read-only mixed with others', () => {
    expect(() => permissionsFromScopes(['api.nope.read'])).toThrow(InvalidScopeError);
    expect(() => permissionsFromScopes(['api.files.delete'])).toThrow(InvalidScopeError);
    expect(() => permissionsFromScopes(['files'])).toThrow(InvalidScopeError);
    expect(() => permissionsFromScopes(['api.all.read', 'api.files.write'])).toThrow(InvalidScopeError);
  });
});
