/* The settings reference (docs/configuration.md): generated from the table,
 * one row per setting, and the checked-in page is the one `make docs`
 * writes. Run from the top of the tree (scripts/run-tests.sh does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../src/config/settings.h"

#define PAGE "docs/configuration.md"

static char *read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *data = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
		data = malloc((size_t)n + 1);
		if (data && fread(data, 1, (size_t)n, fp) == (size_t)n) {
			data[n] = '\0';
			*len = (size_t)n;
		} else {
			free(data);
			data = NULL;
		}
	}
	fclose(fp);
	return data;
}

/* The page as checked in is what `make docs` would write now. */
static void test_page_up_to_date(void **state)
{
	struct buf out;
	size_t len = 0;
	char *page = read_all(PAGE, &len);

	(void)state;
	if (page == NULL)
		fail_msg("cannot read %s (run from the top of the tree)", PAGE);
	buf_init(&out, 4 * 1024 * 1024);
	assert_int_equal(settings_doc_splice(page, len, &out), MN_OK);
	if (out.len != len || memcmp(out.data, page, len) != 0)
		fail_msg("%s is stale: run make docs and commit it", PAGE);
	buf_release(&out);
	free(page);
}

/* One row per setting, in the table's order, and nothing else. */
static void test_one_row_per_setting(void **state)
{
	struct buf out;
	const char *p;
	size_t lines = 0;

	(void)state;
	buf_init(&out, 1024 * 1024);
	assert_int_equal(settings_doc_table(&out), MN_OK);
	assert_non_null(out.data);
	for (p = out.data; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, settings_count + 2);
	assert_non_null(strstr(out.data, "| `server.threads` | integer | `512` | 1 to 1024 | no | "
					 "no | `MESHNODE_SERVER_THREADS` |\n"));
	assert_non_null(strstr(out.data, "| `peers.<name>.lb` | string | `round_robin` | one of "
					 "`round_robin`, `random`, `least_inflight` | yes | no | "
					 "`MESHNODE_PEERS_<NAME>_LB` |\n"));
	assert_non_null(strstr(out.data, "`CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE` (a file "
					 "holding it), `MESHNODE_CONSUL_TOKEN` |\n"));
	p = out.data;
	for (size_t i = 0; i < settings_count; i++) {
		char name[160];
		size_t k = 0;

		for (const char *s = settings_table[i].name; *s && k + 8 < sizeof(name); s++) {
			if (*s == '*') {
				memcpy(name + k, "<name>", 6);
				k += 6;
			} else {
				name[k++] = *s;
			}
		}
		name[k] = '\0';
		p = strstr(p, name);
		if (p == NULL)
			fail_msg("no row for '%s' after the previous one", settings_table[i].name);
	}
	buf_release(&out);
}

/* Only the lines between the markers change; the prose around them stays. */
static void test_splice_keeps_the_rest(void **state)
{
	static const char page[] = "# Title\n\nprose\n" SETTINGS_DOC_BEGIN
				   "old table\n" SETTINGS_DOC_END "more prose\n";
	struct buf out, table;

	(void)state;
	buf_init(&out, 1024 * 1024);
	buf_init(&table, 1024 * 1024);
	assert_int_equal(settings_doc_splice(page, strlen(page), &out), MN_OK);
	assert_int_equal(settings_doc_table(&table), MN_OK);
	assert_int_equal(out.len, strlen(page) - strlen("old table\n") + table.len);
	assert_memory_equal(out.data, "# Title\n\nprose\n" SETTINGS_DOC_BEGIN,
			    strlen("# Title\n\nprose\n" SETTINGS_DOC_BEGIN));
	assert_memory_equal(out.data + strlen("# Title\n\nprose\n" SETTINGS_DOC_BEGIN), table.data,
			    table.len);
	assert_string_equal(out.data + out.len - strlen(SETTINGS_DOC_END "more prose\n"),
			    SETTINGS_DOC_END "more prose\n");
	buf_release(&out);
	buf_release(&table);
}

static void test_splice_needs_both_markers(void **state)
{
	static const char no_end[] = "x\n" SETTINGS_DOC_BEGIN "y\n";
	static const char reversed[] = SETTINGS_DOC_END SETTINGS_DOC_BEGIN;
	/* a marker must be a line of its own */
	static const char inline_marker[] = "see " SETTINGS_DOC_BEGIN SETTINGS_DOC_END;
	struct buf out;

	(void)state;
	buf_init(&out, 1024 * 1024);
	assert_int_equal(settings_doc_splice("", 0, &out), MN_NOT_FOUND);
	assert_int_equal(settings_doc_splice(no_end, strlen(no_end), &out), MN_NOT_FOUND);
	assert_int_equal(settings_doc_splice(reversed, strlen(reversed), &out), MN_NOT_FOUND);
	assert_int_equal(settings_doc_splice(inline_marker, strlen(inline_marker), &out),
			 MN_NOT_FOUND);
	buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page_up_to_date),
		cmocka_unit_test(test_one_row_per_setting),
		cmocka_unit_test(test_splice_keeps_the_rest),
		cmocka_unit_test(test_splice_needs_both_markers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
