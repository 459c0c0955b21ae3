#include "core/env.h"

#include <string.h>

#include "core/text.h"

const char *env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);
	const char *found = NULL;

	for (; env && *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			found = *env + n + 1;
	return found;
}

bool env_bool(char *const *env, const char *name, bool dflt)
{
	const char *v = env_get(env, name);
	bool b;

	return v && text_parse_bool(v, &b) ? b : dflt;
}
