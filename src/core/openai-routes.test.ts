import { describe, expect, it } from 'vitest';
import { ruleFor } from './openai-routes.ts';

describe('OpenAI route table', () => {
  it.each([
    ['GET', '/models', 'model', 'read'],
    ['GET', '/models/gpt-4o', 'model', 'read'],
    ['DELETE', '/models/ft:gpt-4o:acme', 'model', 'write'],
    ['POST', '/chat/completions', 'chat.completions', 'write'],
    ['GET', '/chat/completions', 'chat.completions', 'read'],
    ['GET', '/chat/completions/chatcmpl-1/messages', 'chat.completions', 'read'],
    ['DELETE', '/chat/completions/chatcmpl-1', 'chat.completions', 'write'],
    ['POST', '/completions', 'completions', 'write'],
    ['POST', '/embeddings', 'embeddings', 'write'],
    ['POST', '/moderations', 'moderations', 'write'],
    ['POST', '/images/generations', 'images', 'write'],
    ['POST', '/audio/transcriptions', 'audio', 'write'],
    ['POST', '/responses', 'responses', 'write'],
    ['GET', '/responses/resp_1', 'responses', 'read'],
    ['GET', '/responses/resp_1/input_items', 'responses', 'read'],
    ['POST', '/responses/resp_1/cancel', 'responses', 'write'],
    ['DELETE', '/responses/resp_1', 'responses', 'write'],
    ['GET', '/assistants', 'assistants', 'read'],
    ['POST', '/assistants', 'assistants', 'write'],
    ['POST', '/threads/thread_1/runs', 'threads', 'write'],
    ['GET', '/threads/thread_1/messages', 'threads', 'read'],
    ['GET', '/files', 'files', 'read'],
    ['GET', '/files/file-1/content', 'files', 'read'],
    ['POST', '/files', 'files', 'write'],
    ['POST', '/uploads', 'files', 'write'],
    ['POST', '/fine_tuning/jobs', 'fine_tuning', 'write'],
    ['GET', '/fine_tuning/jobs', 'fine_tuning', 'read'],
    ['POST', '/batches', 'batch', 'write'],
    ['GET', '/batches/batch_1', 'batch', 'read'],
    ['POST', '/vector_stores/vs_1/files', 'vector_stores', 'write'],
    ['GET', '/evals', 'evals', 'read'],
  ])('%s %s → %s %s', (method, path, resource, access) => {
    expect(ruleFor(method, path)).toMatchObject({ resource, access });
  });

  it('meters the token endpoints', () => {
    expect(ruleFor('POST', '/chat/completions')?.metered).toBe('chat');
    expect(ruleFor('POST', '/embeddings')?.metered).toBe('embeddings');
    expect(ruleFor('POST', '/responses')?.metered).toBe('responses');
    expect(ruleFor('GET', '/responses/resp_1')?.metered).toBeUndefined();
  });

  it('reports each model endpoint under its Usage API family', () => {
    expect(ruleFor('POST', '/chat/completions')?.kind).toBe('completions');
    expect(ruleFor('POST', '/responses')?.kind).toBe('completions');
    expect(ruleFor('POST', '/completions')?.kind).toBe('completions');
    expect(ruleFor('POST', '/embeddings')?.kind).toBe('embeddings');
    expect(ruleFor('POST', '/moderations')?.kind).toBe('moderations');
    expect(ruleFor('POST', '/images/generations')?.kind).toBe('images');
    expect(ruleFor('POST', '/images/edits')?.kind).toBe('images');
    expect(ruleFor('POST', '/audio/speech')?.kind).toBe('audio_speeches');
    expect(ruleFor('POST', '/audio/transcriptions')?.kind).toBe('audio_transcriptions');
    expect(ruleFor('POST', '/audio/translations')?.kind).toBe('audio_transcriptions');
    expect(ruleFor('GET', '/files')?.kind).toBeUndefined();
    // The permission is unchanged by the split rows.
    expect(ruleFor('POST', '/audio/speech')).toMatchObject({ resource: 'audio', access: 'write' });
    expect(ruleFor('DELETE', '/images/x')).toMatchObject({ resource: 'images', access: 'write' });
  });

  it('has no rule for paths outside the table (they are not proxied)', () => {
    for (const path of ['/organization/projects', '/realtime', '/', '/modelsx', '/chat', '/embeddingsfoo']) {
      expect(ruleFor('POST', path)).toBeUndefined();
    }
    expect(ruleFor('PUT', '/models')).toBeUndefined();
  });
});
