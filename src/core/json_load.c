#include "core/json_load.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local bool alloc_failed;

static void *json_load_malloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		alloc_failed = true;
	return p;
}

/* Before main(), so before any thread: jansson's allocator is never
 * switched under a running parse. free() is free() for blocks of either
 * allocator. */
__attribute__((constructor)) static void json_load_install(void)
{
	json_set_alloc_funcs(json_load_malloc, free);
}

json_t *json_load_checked(const char *text, size_t len, size_t flags, json_error_t *error,
			  bool *nomem)
{
	json_t *v;

	alloc_failed = false;
	v = json_loadb(text, len, flags, error);
	*nomem = alloc_failed;
	if (alloc_failed) {
		json_decref(v);
		if (error)
			snprintf(error->text, sizeof(error->text), "out of memory");
		return NULL;
	}
	return v;
}
