/**
 * Polls an observable condition until it holds, for what no event announces (a port accepting, a
 * client noticing that its server went away). Bounded: rejects after `timeoutMs`. Never a sleep for
 * synchronisation: it waits for the condition, not for a time.
 */
export async function eventually<T>(
  probe: () => T | Promise<T>,
  { timeoutMs = 10_000, everyMs = 10, what = 'the condition' } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
