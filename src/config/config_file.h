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

/* Reads the libconfig file 'path' and feeds its leaves to 'ops'.
 * MN_NOT_FOUND when the file does not exist (nothing appended), MN_CONFIG
 * when it cannot be read or parsed (one line appended to 'errors', which may
 * be NULL: "<file>:<line>: <libconfig's text>"), or what ops->set returned. */
enum mn_err config_file_read(const char *path, const struct config_file_ops *ops, void *ctx,
			     struct buf *errors);

#endif
