import { describe, expect, it } from 'vitest';
import { lastCueEnd, SseUsageTap, unitsFrom } from './usage.ts';

const chunk = (content: string) =>
  `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${content}"}}],"usage":null}\n\n`;
const usageChunk =
  'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n';
const encode = (text: string) => new TextEncoder().encode(text);

describe('SseUsageTap', () => {
  it('passes events through whole, however the bytes are split', () => {
    const stream = `${chunk('Hel') + chunk('lo ✓') + usageChunk}data: [DONE]\n\n`;
    const bytes = encode(stream);
    for (const size of [1, 2, 3, 7, 64, bytes.length]) {
      const tap = new SseUsageTap('chat', false);
      let out = '';
      for (let i = 0; i < bytes.length; i += size) out += tap.push(bytes.subarray(i, i + size));
      out += tap.end();
      expect(out).toBe(stream.replace('data: [DONE]\n\n', '')); // held back until the usage is recorded
      out += tap.release();
      expect(out).toBe(stream);
      expect(tap.usage).toEqual({ inputTokens: 5, cachedTokens: 0, outputTokens: 2 });
    }
  });

  it('never holds a complete event back', () => {
    const tap = new SseUsageTap('chat', false);
    expect(tap.push(encode(chunk('a')))).toBe(chunk('a'));
    expect(tap.push(encode('data: {"partial'))).toBe('');
  });

  it('drops the usage-only chunk and the null usage fields when the client did not ask', () => {
    const tap = new SseUsageTap('chat', true);
    const out = tap.push(encode(`${chunk('Hi') + usageChunk}data: [DONE]\n\n`)) + tap.end() + tap.release();
    expect(out).toBe(
      'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n',
    );
    expect(tap.usage?.outputTokens).toBe(2);
  });

  it('keeps what was sent countable when the stream breaks', () => {
    const tap = new SseUsageTap('chat', true);
    tap.push(encode(chunk('Hello') + chunk(' world')));
    expect(tap.usage).toBeUndefined();
    expect(tap.outputText()).toBe('Hello world');
  });

  it('reads usage from the Responses API completed event', () => {
    const tap = new SseUsageTap('responses', false);
    tap.push(
      encode(
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n' +
          'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":1},"output_tokens":4}}}\n\n',
      ),
    );
    expect(tap.usage).toEqual({ inputTokens: 3, cachedTokens: 1, outputTokens: 4 });
    expect(tap.outputText()).toBe('Hi');
  });

  it('holds back only the terminal event, until released', () => {
    const chat = new SseUsageTap('chat', false);
    expect(chat.push(encode(`${chunk('a')}data: [DONE]\n\n`))).toBe(chunk('a'));
    expect(chat.end()).toBe('');
    expect(chat.release()).toBe('data: [DONE]\n\n');
    expect(chat.release()).toBe('');

    const responses = new SseUsageTap('responses', false);
    const delta =
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n';
    const completed =
      'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":1}}}\n\n';
    expect(responses.push(encode(delta + completed))).toBe(delta);
    expect(responses.release()).toBe(completed);
  });
});

describe('units of endpoints billed by the unit', () => {
  it('a transcript as SRT or VTT is billed to its last cue; plain text has no times', () => {
    const srt = '1\n00:00:00,000 --> 00:00:04,200\nHello\n\n2\n00:00:04,200 --> 00:01:02,500\nthere\n';
    const vtt = 'WEBVTT\n\n00:00.000 --> 00:03.100\nHi\n\n01:00:00.000 --> 01:00:09.250\nbye\n';
    expect(lastCueEnd(srt)).toBe(62.5);
    expect(unitsFrom('audio_transcriptions', {}, srt)).toBe(63);
    expect(unitsFrom('audio_transcriptions', {}, vtt)).toBe(3610);
    expect(unitsFrom('audio_transcriptions', {}, 'Just the words, no times.')).toBe(0);
    expect(unitsFrom('audio_transcriptions', {}, { text: 'x', duration: 12.2 })).toBe(13);
  });

  it('images: counted in the answer, or as many as asked for when the answer is not read (a stream)', () => {
    expect(unitsFrom('images', { n: 3 }, { data: [{}, {}] })).toBe(2);
    expect(unitsFrom('images', { n: 3 }, undefined)).toBe(3);
    expect(unitsFrom('images', {}, undefined)).toBe(1);
  });
});
