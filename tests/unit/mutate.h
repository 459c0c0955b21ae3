/* Deterministic mutations of captured inputs for parser tests: bytes
 * flipped, tails cut, JSON punctuation (or a NUL) out of place, spans
 * repeated. Header-only, for the test programs. */
#ifndef MESHNODE_TESTS_MUTATE_H
#define MESHNODE_TESTS_MUTATE_H

#include <stdint.h>
#include <string.h>

/* Applies 'edits' edits to m[0..*len) (capacity 'cap' >= *len + 64 for
 * growth; no NUL terminator is kept). */
static inline void mutate(char *m, size_t *len, size_t cap, uint64_t *rng, int edits)
{
	for (int k = 0; k < edits && *len > 0; k++) {
		uint64_t r;
		size_t at;

		*rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
		r = *rng;
		at = (size_t)(r % *len);
		switch ((r >> 32) % 4) {
		case 0:
			m[at] = (char)(r >> 40);
			break;
		case 1:
			*len = at + 1;
			break;
		case 2: /* index 8 is the NUL */
			m[at] = "\"{}[]:,\\"[(r >> 40) % 9];
			break;
		default:
			if (*len + 64 <= cap) {
				memmove(m + at + 64, m + at, *len - at);
				*len += 64;
			}
			break;
		}
	}
}

#endif
