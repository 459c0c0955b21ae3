/* The one reader of environment variables: every module that reads one
 * takes the environment as an argument (a NULL-terminated array of
 * "NAME=value" strings, the process's `environ` or a test's), so nothing
 * reads the process environment behind the caller's back. */
#ifndef MESHNODE_CORE_ENV_H
#define MESHNODE_CORE_ENV_H

#include <stdbool.h>

/* The value of 'name' in 'env', NULL when absent or when 'env' is NULL.
 * When the array names a variable twice, the last entry wins (what a shell
 * that appends a variable means). */
const char *env_get(char *const *env, const char *name);

/* The boolean variable 'name' read with text_parse_bool(); 'dflt' when it
 * is unset or holds anything else. */
bool env_bool(char *const *env, const char *name, bool dflt);

#endif
