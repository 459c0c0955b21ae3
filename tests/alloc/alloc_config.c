/* Allocation failures in the config loader (config/: the libconfig file
 * reader, the environment and KV layers, every setting's parse and check,
 * the typed fields, a reload over a running configuration), over the
 * shipped config/meshnode.cfg and the config fuzz seeds. A configuration
 * that loads is described by what /config shows of it, compared with the
 * load without failure. */
#include <jansson.h>
#include <sys/mman.h>

#include "config/config.h"
#include "torture.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);

/* As tests/fuzz/fuzz_config_file.c: Debian 12's libconfig (1.5) leaks the
 * text of a string token when a syntax error follows it
 * (hyperrealm/libconfig#142, fixed in 1.7.3). */
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

/* The leak checks after each run print no list of suppressions used. */
const char *__lsan_default_options(void)
{
	return "print_suppressions=0";
}

#define PAIRS_MAX 64
#define ENV_MAX	  64

static int file_fd = -1;
static char file_path[64];

/* One load; on success 'out' gets the configuration as /config shows it
 * and 'report' the warnings; on failure 'out' gets the errors. */
static struct torture_out report; /* the warnings, after the result */

static enum mn_err load(const struct config_sources *src, struct config **cfg,
			struct torture_out *out)
{
	struct buf errors, warnings;
	enum mn_err e;

	buf_init(&errors, 1u << 20);
	buf_init(&warnings, 1u << 20);
	*cfg = (struct config *)cfg; /* a failed load must set NULL */
	e = config_load(src, cfg, &errors, &warnings);
	if (e == MN_OK) {
		json_t *shown = TORTURE_PAUSED(config_to_json(*cfg));
		char *text;

		TORTURE_CHECK(shown != NULL);
		text = TORTURE_PAUSED(json_dumps(shown, JSON_SORT_KEYS | JSON_COMPACT));
		TORTURE_CHECK(text != NULL);
		torture_outf(out, "%s\n", text);
		torture_outf(&report, "warnings: %.*s\n", (int)warnings.len,
			     warnings.data ? warnings.data : "");
		free(text);
		json_decref(shown);
	} else {
		TORTURE_CHECK(*cfg == NULL);
		/* the failure is one-shot: the line saying it always fits */
		TORTURE_CHECK(e != MN_NOMEM ||
			      (errors.data && strstr(errors.data, "out of memory\n")));
		torture_outf(out, "%s: %.*s\n", mn_strerror(e), (int)errors.len,
			     errors.data ? errors.data : "");
	}
	buf_release(&errors);
	buf_release(&warnings);
	return e;
}

static enum mn_err defaults_run(const void *input, size_t len, struct torture_out *out)
{
	struct config_sources src = {.hostname = "torture-host"};
	struct config *cfg;
	enum mn_err e;

	(void)input, (void)len;
	e = load(&src, &cfg, out);
	config_free(cfg);
	return e;
}

/* A file, through the path of a memfd holding it. */
static enum mn_err file_run(const void *input, size_t len, struct torture_out *out)
{
	struct config_sources src = {.file_path = file_path, .hostname = "torture-host"};
	struct config *cfg;
	enum mn_err e;

	TORTURE_CHECK(ftruncate(file_fd, 0) == 0);
	TORTURE_CHECK(len == 0 || pwrite(file_fd, input, len, 0) == (ssize_t)len);
	e = load(&src, &cfg, out);
	config_free(cfg);
	return e;
}

/* The environment: one VAR=value a line (the token file lines of the fuzz
 * seeds taken as they are). */
static enum mn_err env_run(const void *input, size_t len, struct torture_out *out)
{
	char text[8192], *line = text, *vars[ENV_MAX + 1];
	struct config_sources src = {.environ = vars, .hostname = "torture-host"};
	struct config *cfg;
	size_t n = 0;
	enum mn_err e;

	TORTURE_CHECK(len < sizeof(text));
	memcpy(text, input, len);
	text[len] = '\0';
	while (n < ENV_MAX && *line) {
		char *end = line + strcspn(line, "\n");
		bool last = *end == '\0';

		*end = '\0';
		vars[n++] = line;
		if (last)
			break;
		line = end + 1;
	}
	vars[n] = NULL;
	e = load(&src, &cfg, out);
	config_free(cfg);
	return e;
}

/* KV: one key=value a line, loaded, then loaded again in the other order
 * as a reload over the first. */
static enum mn_err kv_run(const void *input, size_t len, struct torture_out *out)
{
	struct config_kv_pair pairs[PAIRS_MAX], rev[PAIRS_MAX];
	char text[8192], *line = text;
	struct config_sources src = {.kv_index = 7, .hostname = "torture-host"};
	struct config *first, *second;
	size_t n = 0;
	enum mn_err e;

	TORTURE_CHECK(len < sizeof(text));
	memcpy(text, input, len);
	text[len] = '\0';
	while (n < PAIRS_MAX && *line) {
		char *end = line + strcspn(line, "\n"), *eq;
		bool last = *end == '\0';

		*end = '\0';
		eq = strchr(line, '=');
		if (eq)
			*eq = '\0';
		pairs[n].key = line;
		pairs[n].value = eq ? eq + 1 : NULL;
		n++;
		if (last)
			break;
		line = end + 1;
	}
	for (size_t i = 0; i < n; i++)
		rev[i] = pairs[n - 1 - i];
	src.kv = pairs;
	src.n_kv = n;
	e = load(&src, &first, out);
	if (e != MN_OK)
		return e;
	src.kv = rev;
	src.running = first;
	e = load(&src, &second, out);
	if (e == MN_OK) {
		torture_outf(out, "pending restart:");
		for (size_t i = 0; i < second->n_pending_restart; i++)
			torture_outf(out, " %s", second->pending_restart[i]);
		torture_outf(out, "\n");
	}
	config_free(second);
	config_free(first);
	return e;
}

/* The warnings go after a '\f': the driver compares them apart (a warning
 * line that could not be written is no finding). */
#define WITH_REPORT(name)                                                                          \
	static enum mn_err name(const void *input, size_t len, struct torture_out *out)            \
	{                                                                                          \
		enum mn_err e;                                                                     \
                                                                                                   \
		report.len = 0;                                                                    \
		e = name##_run(input, len, out);                                                   \
		torture_outf(out, "\f%.*s", (int)report.len, report.data);                         \
		return e;                                                                          \
	}

WITH_REPORT(defaults)
WITH_REPORT(file)
WITH_REPORT(env)
WITH_REPORT(kv)

int main(void)
{
	torture_quiet_logs();
	file_fd = memfd_create("meshnode.cfg", MFD_CLOEXEC);
	TORTURE_CHECK(file_fd >= 0);
	snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);

	torture_case("defaults", defaults, "", 0);
	torture_files("config", ".cfg", file, 1);
	torture_files("tests/fuzz/corpus/fuzz_config_file", NULL, file, 4);
	torture_files("tests/fuzz/corpus/fuzz_config_env", NULL, env, 4);
	torture_files("tests/fuzz/corpus/fuzz_config_kv", NULL, kv, 3);
	close(file_fd);
	return torture_report("alloc_config");
}
