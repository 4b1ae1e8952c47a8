/**
 * `text.slice(0, length)` as a string of its own. V8 may return a slice as a view into its parent,
 * which keeps the whole parent alive: a 100-character name cut from a 300 KB input would hold the
 * 300 KB for as long as the name lives. Building it anew shares nothing.
 */
export function detachedSlice(text: string, length: number): string {
  if (text.length <= length) return text;
  return Array.from(text.slice(0, length)).join('');
}

/** Session names are the start of the first message, cut to this many characters. */
const SESSION_NAME_LENGTH = 100;

/**
 * The name of a session whose first message is `input`: its first {@link SESSION_NAME_LENGTH}
 * characters, counted in code points, so that a cut never splits a surrogate pair (half an emoji,
 * which JSON and UTF-8 can only carry as U+FFFD). A string of its own (see {@link detachedSlice}). Every
 * store names sessions with it.
 */
export function sessionName(input: string): string {
  if (input.length <= SESSION_NAME_LENGTH) return input;
  let end = 0;
  for (let count = 0; count < SESSION_NAME_LENGTH && end < input.length; count++) {
    end += input.codePointAt(end)! > 0xffff ? 2 : 1;
  }
  return detachedSlice(input, end);
}
