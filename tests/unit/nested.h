/* JSON nested on purpose, for the depth-limit tests of every parser that
 * takes outside JSON. Header-only; include after <cmocka.h>. */
#ifndef MESHNODE_TESTS_NESTED_H
#define MESHNODE_TESTS_NESTED_H

#include <stdlib.h>
#include <string.h>

/* 'head', then 'brackets' '[' and as many ']', then 'tail': a new string
 * (free with free()), its length in *len when len is not NULL. */
static inline char *nested_json(const char *head, size_t brackets, const char *tail, size_t *len)
{
	size_t hl = strlen(head), tl = strlen(tail), n = hl + 2 * brackets + tl;
	char *s = malloc(n + 1);

	assert_non_null(s);
	memcpy(s, head, hl);
	memset(s + hl, '[', brackets);
	memset(s + hl + brackets, ']', brackets);
	memcpy(s + hl + 2 * brackets, tail, tl + 1);
	if (len)
		*len = n;
	return s;
}

#endif
