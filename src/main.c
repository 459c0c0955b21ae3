/* meshnode: command line. Everything else lives in app.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "config/live.h"
#include "core/escape.h"
#include "store/pg_pool.h"

extern char **environ;

/* The file read when no -c is given (a missing one is fine), compiled in by
 * the Makefile: config/meshnode.cfg for build/meshnode, run from the source
 * tree; $(SYSCONFDIR)/meshnode/meshnode.cfg for the binary `make install`
 * installs. */
#ifndef MESHNODE_DEFAULT_CONFIG
#error "MESHNODE_DEFAULT_CONFIG is not defined: build with the Makefile"
#endif
#define DEFAULT_CONFIG MESHNODE_DEFAULT_CONFIG
/* Where the TLS runtime shims are (docs/connect.md, "TLS runtime"): ""
 * for build/meshnode (tls/ next to it), $(LIBDIR)/meshnode installed. */
#ifndef MESHNODE_TLS_DIR
#error "MESHNODE_TLS_DIR is not defined: build with the Makefile"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: meshnode [-c|--config FILE] [--check-config] [--print-config] [-V|--version] "
		"[-h|--help]\n"
		"\n"
		"  -c, --config FILE  configuration file (default %s)\n"
		"  --check-config     load and validate file, environment and Consul KV; exit 0 or 2\n"
		"  --print-config     print the effective configuration with sources as JSON\n"
		"  -V, --version      print the version\n"
		"  -h, --help         print this help\n"
		"\n"
		"The node follows Consul KV edits live; SIGHUP reloads the file and KV.\n"
		"\n"
		"Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration error.\n",
		DEFAULT_CONFIG);
}

enum { OPT_CHECK = 256, OPT_PRINT, OPT_VERSION, OPT_HELP };

/* With database.driver = "postgres": connects once. A login or database
 * the server refuses is a configuration error (2); a server that does not
 * answer is only reported, like the Consul agent. The message is escaped
 * to one line: it holds libpq's words (never the password). */
static int check_postgres(const struct config *cfg)
{
	struct pg_pool_opts o;
	char msg[1024];
	enum mn_err e;
	struct buf line;

	pg_pool_opts_from_config(cfg, &o);
	e = pg_pool_check(&o, msg, sizeof(msg));
	buf_init(&line, sizeof(msg) * 4 + 1);
	escape_buf(&line, msg, strlen(msg), ESCAPE_TEXT);
	fprintf(e == MN_CONFIG ? stderr : stdout, "%s\n", line.data ? line.data : msg);
	buf_release(&line);
	return e == MN_CONFIG ? 2 : 0;
}

/* --check-config and --print-config: load everything, report, exit. A
 * check fails (2) on a file or environment error and on any warning about
 * what an operator wrote (a key or variable that names no setting, a KV
 * value refused, a KV listing over the caps); an agent that is not there
 * is only reported. */
static int config_command(const struct app_opts *opts, bool print)
{
	struct config_live_opts live_opts = {
		.file_path = opts->config_path,
		.file_optional = !opts->config_path_given,
		.environ = opts->environ,
	};
	struct config_live *live = NULL;
	const struct config *cfg;
	struct buf errors, warnings, read;
	int code = 0;

	buf_init(&errors, 1 << 16);
	buf_init(&warnings, 1 << 16);
	buf_init(&read, 1 << 12);
	if (config_live_create(&live_opts, &live, &errors, &warnings) != MN_OK) {
		fprintf(stderr, "%s", errors.data ? errors.data : "configuration error\n");
		code = 2;
		goto out;
	}
	cfg = config_store_get(config_live_store(live));
	if (print) {
		json_t *o = config_document(cfg);
		char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

		if (s == NULL) {
			fprintf(stderr, "meshnode: cannot print the configuration\n");
			code = 1;
		} else {
			printf("%s\n", s);
		}
		free(s);
		json_decref(o);
	} else {
		config_live_describe(live, &read);
		printf("%s", read.data ? read.data : "");
		if (config_live_content_trouble(live))
			code = 2;
		if (strcmp(cfg->database_driver, "postgres") == 0 && check_postgres(cfg) != 0)
			code = 2;
	}
	if (warnings.len)
		fprintf(stderr, "%s", warnings.data);
	if (!print && code == 0)
		printf("configuration ok\n");
	config_store_put(config_live_store(live), cfg);
out:
	config_live_destroy(live);
	buf_release(&errors);
	buf_release(&warnings);
	buf_release(&read);
	return code;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, OPT_CHECK},
		{"print-config", no_argument, NULL, OPT_PRINT},
		{"version", no_argument, NULL, OPT_VERSION},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0},
	};
	struct app_opts opts = {DEFAULT_CONFIG, false, environ, MESHNODE_TLS_DIR};
	bool check = false, print = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			opts.config_path = optarg;
			opts.config_path_given = true;
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_PRINT:
			print = true;
			break;
		case 'V':
		case OPT_VERSION:
			printf("meshnode %s\n", MESHNODE_VERSION);
			return 0;
		case 'h':
		case OPT_HELP:
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "meshnode: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "meshnode: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (check || print)
		return config_command(&opts, print);
	return app_run(&opts);
}
