/**
 * `text.slice(0, length)` as a string of its own. V8 may return a slice as a view into its parent,
 * which keeps the whole parent alive: a 100-character name cut from a 300 KB input would hold the
 * 300 KB for as long as the name lives. Building it anew shares nothing.
 */
export function detachedSlice(text: string, length: number): string {
  if (text.length <= length) return text;
  return Array.from(text.slice(0, length)).join('');
}
