/* `make docs`: writes the settings reference between the markers of
 * docs/configuration.md (settings_doc_splice()), creating the page when it
 * is not there; the text around the markers is kept as it is.
 *
 *   build/settings_doc docs/configuration.md
 *
 * Exit 0 when the page is written or already up to date, 1 on failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/settings.h"

#define PAGE_CAP (4 * 1024 * 1024)

static const char new_page[] =
	"# Configuration\n"
	"\n"
	"Every setting of meshnode, with its default, the values it accepts and the "
	"environment variables that set it.\n"
	"\n" SETTINGS_DOC_BEGIN SETTINGS_DOC_END;

/* The whole of 'path' into 'b'; MN_NOT_FOUND when it does not exist. */
static enum mn_err read_page(const char *path, struct buf *b)
{
	char chunk[8192];
	enum mn_err err = MN_OK;
	size_t n;
	FILE *fp = fopen(path, "rb");

	if (fp == NULL)
		return errno == ENOENT ? MN_NOT_FOUND : MN_IO;
	while (err == MN_OK && (n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		err = buf_append(b, chunk, n);
	if (err == MN_OK && ferror(fp))
		err = MN_IO;
	fclose(fp);
	return err;
}

static int write_page(const char *path, const struct buf *b)
{
	char tmp[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "wb");
	if (fp == NULL || fwrite(b->data, 1, b->len, fp) != b->len || fclose(fp) != 0 ||
	    rename(tmp, path) != 0) {
		fprintf(stderr, "settings_doc: cannot write '%s': %s\n", path, strerror(errno));
		remove(tmp);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct buf page, out;
	enum mn_err err;
	int rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: settings_doc docs/configuration.md\n");
		return 2;
	}
	buf_init(&page, PAGE_CAP);
	buf_init(&out, PAGE_CAP);
	err = read_page(argv[1], &page);
	if (err == MN_NOT_FOUND)
		err = buf_puts(&page, new_page);
	if (err != MN_OK) {
		fprintf(stderr, "settings_doc: cannot read '%s': %s\n", argv[1], mn_strerror(err));
		goto out_release;
	}
	err = settings_doc_splice(page.data, page.len, &out);
	if (err == MN_NOT_FOUND) {
		fprintf(stderr, "settings_doc: '%s' lacks the marker lines %s and %s", argv[1],
			SETTINGS_DOC_BEGIN, SETTINGS_DOC_END);
		goto out_release;
	}
	if (err != MN_OK) {
		fprintf(stderr, "settings_doc: %s\n", mn_strerror(err));
		goto out_release;
	}
	if (out.len == page.len && memcmp(out.data, page.data, out.len) == 0) {
		printf("%s: up to date\n", argv[1]);
		rc = 0;
		goto out_release;
	}
	rc = write_page(argv[1], &out);
	if (rc == 0)
		printf("%s: written\n", argv[1]);
out_release:
	buf_release(&page);
	buf_release(&out);
	return rc;
}
