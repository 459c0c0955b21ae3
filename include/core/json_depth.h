/* A guard in front of jansson: its parser, json_dumps(), json_deep_copy()
 * and json_decref() all recurse once per level of nesting, so a body of a
 * few thousand '[' overflows a small thread stack (civetweb's workers get
 * 100 KiB) before jansson's own limit of 2048 levels is reached. Every text
 * from outside (request bodies, Consul answers, KV values, peer replies) is
 * scanned here first, with constant stack, and refused when it nests deeper
 * than MN_JSON_MAX_DEPTH. The scan checks nothing else: jansson still
 * decides whether the text is JSON. */
#ifndef MESHNODE_CORE_JSON_DEPTH_H
#define MESHNODE_CORE_JSON_DEPTH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Deepest nesting of arrays and objects accepted from outside: `[[1]]` is
 * 2 levels. No answer of this API or of Consul comes near it; jansson uses
 * about 5 KiB of stack to parse and 20 KiB to dump 64 levels. */
#define MN_JSON_MAX_DEPTH 64

/* true when text[0..len) opens more than 'max_depth' arrays or objects
 * without closing them. Brackets inside strings do not count (escapes such
 * as \" and \\ are followed); an unterminated string or unbalanced brackets
 * are left for the parser to refuse. One linear pass, no allocation,
 * constant stack. */
bool json_depth_exceeds(const char *text, size_t len, size_t max_depth);

/* MN_OK when text[0..len) nests at most MN_JSON_MAX_DEPTH levels;
 * otherwise MN_INVALID with "JSON nested deeper than 64 levels" in the
 * optional 'err'. */
enum mn_err json_depth_check(const char *text, size_t len, char *err, size_t errlen);

#endif
