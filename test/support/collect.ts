/** Everything an async iterable yields, once it ends: a run's events, a model's chunks, a stream's frames. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
