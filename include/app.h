/* The composition root: builds every module in order, runs the node until a
 * stop signal, and tears everything down in reverse order. */
#ifndef MESHNODE_APP_H
#define MESHNODE_APP_H

#include <stdbool.h>

#include "config/config.h"

struct app_opts {
	const char *config_path;   /* the file to load */
	bool config_path_given;    /* given on the command line: it must exist */
	char *const *environ;      /* the process environment */
	const char *tls_dir;       /* the TLS runtime shims' directory compiled in
				      (MESHNODE_TLS_DIR); "": tls/ next to the
				      executable */
};

/* Runs the node in the foreground until SIGTERM or SIGINT. Returns the
 * process exit code: 0 clean stop, 1 runtime failure, 2 configuration error. */
int app_run(const struct app_opts *opts);

#endif
