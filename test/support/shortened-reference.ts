/**
 * The reference of `shortened`: the longest run of whole characters as shown (grapheme clusters, the
 * text segmented from its start) with at most `length` code points; the first `length` code points
 * when the first character alone has more.
 */
export function referenceShortened(text: string, length: number): string {
  let start = '';
  for (const { segment } of new Intl.Segmenter(undefined, { granularity: 'grapheme' }).segment(text)) {
    if ([...start].length + [...segment].length > length) break;
    start += segment;
  }
  return start === '' && text !== '' ? [...text].slice(0, length).join('') : start;
}
