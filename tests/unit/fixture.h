/* Reading the fixtures under tests/fixtures/ (answers captured from a real
 * consul agent) in cmocka test programs. Header-only; include after
 * <cmocka.h>. */
#ifndef MESHNODE_TESTS_FIXTURE_H
#define MESHNODE_TESTS_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/kv.h"

/* The whole of tests/fixtures/<name>, NUL-terminated (free with free()). */
static inline char *fixture_read(const char *name, size_t *len)
{
	char path[512];
	char *data;
	long size;
	FILE *f;

	snprintf(path, sizeof(path), "tests/fixtures/%s", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	data = malloc((size_t)size + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	data[size] = '\0';
	fclose(f);
	*len = (size_t)size;
	return data;
}

/* An HTTP answer saved with `curl -si | tr -d '\r'`: its status,
 * X-Consul-Index and body (pointing into text). */
struct fixture_answer {
	char *text;
	long status;
	uint64_t index;
	const char *body;
	size_t len;
};

static inline void fixture_answer_load(struct fixture_answer *a, const char *name)
{
	static const char index_header[] = "\nX-Consul-Index: ";
	char *sep, *hdr;
	size_t len;

	a->text = fixture_read(name, &len);
	assert_int_equal(sscanf(a->text, "HTTP/1.1 %ld", &a->status), 1);
	sep = strstr(a->text, "\n\n");
	assert_non_null(sep);
	*sep = '\0';
	a->body = sep + 2;
	a->len = strlen(a->body);
	hdr = strstr(a->text, index_header);
	assert_non_null(hdr);
	hdr += strlen(index_header);
	hdr[strcspn(hdr, "\n")] = '\0';
	a->index = consul_index_parse(hdr);
}

static inline void fixture_answer_free(struct fixture_answer *a) { free(a->text); }

#endif
