/* The libconfig reader: the only code that includes libconfig.h. It walks a
 * file's groups and hands every leaf over as (dotted name, typed JSON value,
 * file, line); it knows nothing of the settings themselves. This header must
 * not include config/config.h: libconfig.h declares its own config_destroy(). */
#ifndef MESHNODE_CONFIG_FILE_H
#define MESHNODE_CONFIG_FILE_H

#include <jansson.h>
#include <stdbool.h>

#include "core/buf.h"
#include "core/error.h"

struct config_file_ops {
	/* true when the group 'name' is one setting's value (a map) rather
	 * than a level of nesting */
	bool (*is_map)(void *ctx, const char *name);
	/* one leaf; 'value' is a new reference the callee steals. Anything
	 * but MN_OK stops the walk and is returned. */
	enum mn_err (*set)(void *ctx, const char *name, json_t *value, const char *file,
			   unsigned line);
};

/* What a configuration file, its @includes counted in, may hold: checked
 * before libconfig sees it (libconfig is quadratic in a line's length: an
 * 8 MB line takes it a minute). Constants, not settings: they guard the
 * reading of the settings themselves. */
#define CONFIG_FILE_MAX_BYTES (1u << 20)  /* the main file and its includes */
#define CONFIG_FILE_MAX_LINE (64u << 10)  /* one line, without its newline */
#define CONFIG_FILE_MAX_INCLUDE_DEPTH 10  /* libconfig's own limit */

/* Reads the libconfig file 'path' and feeds its leaves to 'ops'. The file
 * and every file it @includes must be regular files (a FIFO, a device or a
 * directory is refused without waiting on it) within the caps above.
 * MN_NOT_FOUND when the file does not exist (nothing appended), MN_CONFIG
 * when it is refused, cannot be read or parsed (one line appended to
 * 'errors', which may be NULL: "<file>:<line>: <reason>"; a syntax error in
 * 'path' itself quotes its line, nothing of an included file's content is
 * ever quoted), or what ops->set returned. */
enum mn_err config_file_read(const char *path, const struct config_file_ops *ops, void *ctx,
			     struct buf *errors);

#endif
