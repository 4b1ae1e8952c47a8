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

/** Where user-perceived characters begin and end (a flag, a family emoji, a letter and its accent). */
const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * The name of a session whose first message is `input`: its first {@link SESSION_NAME_LENGTH}
 * characters (see {@link shortened}). Every store names sessions with it.
 */
export function sessionName(input: string): string {
  return shortened(input, SESSION_NAME_LENGTH);
}

/**
 * The start of `text`, at most `length` code points, cut between two user-perceived characters
 * (grapheme clusters): never half an emoji (half a surrogate pair, which JSON and UTF-8 can only
 * carry as U+FFFD), half a flag or family, or a letter without its accent. A string of its own (see
 * {@link detachedSlice}).
 */
export function shortened(text: string, length: number): string {
  if (text.length <= length) return text;
  // `length` code points are at most twice as many code units: the rest of the prefix is the
  // context that says where the cluster ending at the cut ends (it depends on what comes after it).
  const prefix = text.slice(0, 4 * length);
  let end = 0;
  let count = 0;
  for (const { segment, index } of graphemes.segment(prefix)) {
    count += codePointCount(segment);
    if (count > length) break;
    end = index + segment.length;
  }
  // One cluster longer than the whole cut (combining marks stacked by the hundred): cut inside it.
  if (end === 0) end = codePointEnd(text, length);
  return detachedSlice(text, end);
}

function codePointCount(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i += text.codePointAt(i)! > 0xffff ? 2 : 1) count++;
  return count;
}

/** The index in code units just after the first `count` code points of `text`. */
function codePointEnd(text: string, count: number): number {
  let end = 0;
  for (let n = 0; n < count && end < text.length; n++) end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  return end;
}
