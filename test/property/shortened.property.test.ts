/**
 * Property-based test of `shortened` (session names, the inspector's inputs) against a reference that
 * segments the whole text: texts made of the pieces that make multi-code-point characters (flags,
 * family emoji, accents, Hangul syllables, CR LF), cut at every length.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { shortened } from '../../src/runtime/detached-slice.js';
import { referenceShortened } from '../support/shortened-reference.js';

const pieces = [
  'a',
  ' ',
  'e\u0301', // e and a combining acute accent
  '\u0301',
  '🇫', // regional indicators: two make a flag
  '🇷',
  '👨',
  '\u200d', // zero-width joiner: 👨‍👩 is one character
  '👩',
  '🐉',
  '\u1100', // Hangul jamo: ᄀ + ᅡ + ᆨ is one syllable
  '\u1161',
  '\u11a8',
  '\r',
  '\n',
  'ก',
  '\u0e33', // a Thai spacing mark
];

const texts = fc.array(fc.constantFrom(...pieces), { maxLength: 120 }).map((parts) => parts.join(''));

describe('shortened', () => {
  it('pairs the regional indicators of a long run of flags from its start, however far back', () => {
    for (const lead of ['', 'x', 'xy']) {
      const flags = `${lead}${'🇫🇷'.repeat(60)}`;
      for (const length of [99, 100, 101]) {
        expect(shortened(flags, length), `${lead} ${length}`).toBe(referenceShortened(flags, length));
      }
    }
  });

  it('cuts where the reference does: at most `length` code points, between two characters', () => {
    fc.assert(
      fc.property(texts, fc.integer({ min: 1, max: 60 }), (text, length) => {
        const expected = referenceShortened(text, length);
        // A character that begins more than 64 code units before the cut (the window `shortened`
        // looks in) is cut inside: not generated on purpose, and left out of the comparison.
        const cut = [...text].slice(0, length).join('').length;
        fc.pre(cut - expected.length < 64);
        expect(shortened(text, length)).toBe(expected);
      }),
      { numRuns: 2000, seed: 9_0531 },
    );
  });
});
