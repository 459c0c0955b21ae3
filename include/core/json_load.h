/* jansson's parser, with allocation failures told apart from bad text.
 * jansson 2.14 reports an allocation that failed while parsing as a syntax
 * error ("invalid token near ..."), and its lexer drops a byte it could not
 * save (lex_save() ignores strbuffer_append_byte()'s failure), so a parse
 * short of memory can even succeed with a string one byte short. The
 * allocation functions this module gives jansson (installed before main(),
 * once) note a failure per thread, and json_load_checked() refuses any
 * parse during which one failed. */
#ifndef MESHNODE_CORE_JSON_LOAD_H
#define MESHNODE_CORE_JSON_LOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* json_loadb(text, len, flags, error), except that when an allocation
 * failed during the parse the result is NULL with *nomem true (error's
 * text then "out of memory"); otherwise *nomem is false. New reference. */
json_t *json_load_checked(const char *text, size_t len, size_t flags, json_error_t *error,
			  bool *nomem);

#endif
