import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import { expect } from 'vitest';
import type { RunEvent } from '../../src/index.js';

/** One parsed SSE frame: its `id:` and `event:` lines, and the JSON of its `data:` line. */
export interface Frame {
  id: string | undefined;
  event: string | undefined;
  data: RunEvent;
}

/** Reads an event-stream response frame by frame. */
export interface SseReader {
  /** The next frame, or `undefined` once the server ended the stream. */
  next(): Promise<Frame | undefined>;
  /** Every frame until the end of the stream. */
  rest(): Promise<Frame[]>;
  /** Resolves with the text of the next comment line (`: ping`). */
  nextComment(): Promise<string>;
}

/** Parses a fetch response as server-sent events with a real SSE parser. */
export function readSse(response: Response): SseReader {
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  let commentWaiters: Array<(comment: string) => void> = [];
  const parser = new EventSourceParserStream({
    onError: 'terminate',
    onComment: (comment) => {
      const waiters = commentWaiters;
      commentWaiters = [];
      for (const resolve of waiters) resolve(comment);
    },
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).pipeThrough(parser).getReader();
  const next = async (): Promise<Frame | undefined> => {
    const { value, done } = await reader.read();
    if (done) return undefined;
    const data = JSON.parse(value.data) as RunEvent;
    // The frame's lines agree with its JSON.
    expect(value.event).toBe(data.event);
    expect(value.id).toBe(String(data.seq));
    return { id: value.id, event: value.event, data };
  };
  return {
    next,
    async rest() {
      const frames: Frame[] = [];
      for (let frame = await next(); frame; frame = await next()) frames.push(frame);
      return frames;
    },
    nextComment: () => new Promise((resolve) => commentWaiters.push(resolve)),
  };
}

/** Every message of a whole SSE body, parsed by a real SSE parser (`id`, `event`, `data`). */
export function parseSse(text: string): EventSourceMessage[] {
  const messages: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => messages.push(message) });
  parser.feed(text);
  return messages;
}
