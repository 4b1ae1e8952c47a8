import { describe, expect, it } from 'vitest';
import { PushedIterator, type PushedSource } from '../src/model/pushed-iterator.js';

function source() {
  const calls: string[] = [];
  const pushedSource: PushedSource = {
    pause: () => calls.push('pause'),
    resume: () => calls.push('resume'),
    stop: () => calls.push('stop'),
  };
  return { calls, pushedSource };
}

describe('PushedIterator', () => {
  it('hands out what was pushed, in order, then the end', async () => {
    const values = new PushedIterator<number>();
    values.push(1);
    values.push(2);
    values.push(3);
    values.close();

    expect(await values.next()).toEqual({ done: false, value: 1 });
    expect(await values.next()).toEqual({ done: false, value: 2 });
    expect(await values.next()).toEqual({ done: false, value: 3 });
    expect(await values.next()).toEqual({ done: true, value: undefined });
  });

  it('answers a waiting next() with the next push, and a waiting one with the end', async () => {
    const values = new PushedIterator<string>();
    const first = values.next();
    values.push('a');
    expect(await first).toEqual({ done: false, value: 'a' });

    const second = values.next();
    values.close();
    expect(await second).toEqual({ done: true, value: undefined });
  });

  it('rejects with the error of close() after the values pushed before it, once', async () => {
    const values = new PushedIterator<string>();
    const error = new TypeError('terminated');
    values.push('a');
    values.close(error);
    values.push('ignored');

    expect(await values.next()).toEqual({ done: false, value: 'a' });
    await expect(values.next()).rejects.toBe(error);
    expect(await values.next()).toEqual({ done: true, value: undefined });
  });

  it('rejects a waiting next() with the error of close()', async () => {
    const values = new PushedIterator<string>();
    const waiting = values.next();
    const error = new Error('reset');
    values.close(error);

    await expect(waiting).rejects.toBe(error);
  });

  it('pauses its source while 256 values wait, and resumes it once they were read', async () => {
    const { calls, pushedSource } = source();
    const values = new PushedIterator<number>();
    values.source = pushedSource;
    for (let i = 0; i < 255; i++) values.push(i);
    expect(calls).toEqual([]);
    values.push(255);
    values.push(256);
    expect(calls).toEqual(['pause']);

    for (let i = 0; i < 256; i++) await values.next();
    expect(calls).toEqual(['pause']);
    expect(await values.next()).toEqual({ done: false, value: 256 });
    expect(calls).toEqual(['pause', 'resume']);
  });

  it('stops its source when the consumer leaves, and ignores what still comes', async () => {
    const { calls, pushedSource } = source();
    const values = new PushedIterator<number>();
    values.source = pushedSource;
    values.push(1);

    for await (const value of values) {
      expect(value).toBe(1);
      break;
    }
    values.push(2);
    values.close(new Error('late'));

    expect(calls).toEqual(['stop']);
    expect(await values.next()).toEqual({ done: true, value: undefined });
  });

  it('resumes a source it paused when the consumer leaves after the end', async () => {
    const { calls, pushedSource } = source();
    const values = new PushedIterator<number>();
    values.source = pushedSource;
    for (let i = 0; i < 300; i++) values.push(i);
    values.close();

    await values.return();

    expect(calls).toEqual(['pause', 'resume']);
  });

  it('starts its source at the first next(), once, and never for a consumer that leaves first', async () => {
    const started: string[] = [];
    const values = new PushedIterator<number>();
    values.source = {
      pause() {},
      resume() {},
      stop: () => started.push('stop'),
      start: () => started.push('start'),
    };
    expect(started).toEqual([]);
    values.push(1);
    await values.next();
    values.close();
    await values.next();
    expect(started).toEqual(['start']);

    const unread = new PushedIterator<number>();
    const calls: string[] = [];
    unread.source = {
      pause() {},
      resume() {},
      stop: () => calls.push('stop'),
      start: () => calls.push('start'),
    };
    await unread.return();
    expect(calls).toEqual(['stop']);
  });

  it('ends a waiting next() when return() is called', async () => {
    const values = new PushedIterator<number>();
    const waiting = values.next();
    await values.return();

    expect(await waiting).toEqual({ done: true, value: undefined });
  });
});
