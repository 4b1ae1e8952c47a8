/**
 * `task` for many callers at once: at most one run at a time, and every call made while one runs
 * is served by the next run, which starts after it (and takes the items of all those calls). So a
 * caller's promise resolves once a run that started after its call is done: what it wrote before
 * calling is seen. A thousand runs finishing together cost a few runs of `task`, not a thousand.
 */
export function coalesce<T>(task: (items: readonly T[]) => Promise<void>): (item: T) => Promise<void> {
  let running: Promise<void> = Promise.resolve();
  let next: { items: T[]; done: Promise<void> } | undefined;
  return (item) => {
    if (next) {
      next.items.push(item);
      return next.done;
    }
    const items = [item];
    const done = running.then(() => {
      next = undefined;
      return task(items);
    });
    running = done.catch(() => undefined);
    next = { items, done };
    return done;
  };
}
