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
 * characters (see {@link shortened}) after the blank space around it, which would otherwise be all
 * the name of a message that starts with a hundred newlines shows. Every store names sessions with it.
 */
export function sessionName(input: string): string {
  const trimmed = input.trim();
  const name = shortened(trimmed, SESSION_NAME_LENGTH);
  // Trimmed but not cut, the name is a slice of the input, which it would keep alive: a copy.
  return name === trimmed && trimmed !== input ? Array.from(name).join('') : name;
}

/**
 * The start of `text`, at most `length` code points, cut between two user-perceived characters
 * (grapheme clusters): never half an emoji (half a surrogate pair, which JSON and UTF-8 can only
 * carry as U+FFFD), half a flag or family, or a letter without its accent. A string of its own (see
 * {@link detachedSlice}).
 */
export function shortened(text: string, length: number): string {
  if (text.length <= length) return text;
  let end = codePointEnd(text, length);
  if (end === text.length) return text;
  // Only the cluster at the cut matters, and segmenting costs ~1.5 µs a cluster: the cut's
  // neighbourhood is segmented, not the whole start. It begins before a run of regional indicators
  // (a flag is a pair of them, paired from the start of the run).
  let from = Math.max(0, end - CLUSTER_WINDOW);
  if (from > 0 && isLowSurrogate(text.charCodeAt(from))) from--;
  while (from >= 2 && isRegionalIndicator(text.codePointAt(from - 2)!)) from -= 2;
  const cluster = graphemes.segment(text.slice(from, end + CLUSTER_WINDOW)).containing(end - from)!;
  // (A cluster that begins before the window, combining marks stacked by the dozen, is cut inside.)
  if (cluster.index > 0) end = from + cluster.index;
  return detachedSlice(text, end);
}

/** How far around a cut its cluster is looked for, in code units: a family of four (one emoji) takes 11. */
const CLUSTER_WINDOW = 64;

/** The index in code units just after the first `count` code points of `text`. */
function codePointEnd(text: string, count: number): number {
  let end = 0;
  for (let n = 0; n < count && end < text.length; n++) end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  return end;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

function isRegionalIndicator(codePoint: number): boolean {
  return codePoint >= 0x1f1e6 && codePoint <= 0x1f1ff;
}
