/* The environment layer: Consul's own variables, the short aliases and
 * MESHNODE_<DOTTED_NAME_UPPERCASE_WITH_UNDERSCORES> for every setting. */
#include "config_state.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"

#define ENV_PREFIX      "MESHNODE_"
#define ENV_FILE_CAP    (64 * 1024)

static enum mn_err env_set(struct config_state *st, const char *var, const char *name,
			   const char *text)
{
	const struct setting_def *def = settings_find(name);
	char reason[256], *trimmed = NULL;
	size_t n = strlen(text);
	enum mn_err err;

	/* A secret's trailing whitespace is cut, as Consul's CLI does with a
	 * token file: a newline there is a copy-paste or a Kubernetes secret
	 * made from a file, never part of a token or a password. What is
	 * left is checked as written (a line break inside a token is
	 * refused). */
	if (def && def->secret && n > 0 && isspace((unsigned char)text[n - 1])) {
		while (n > 0 && isspace((unsigned char)text[n - 1]))
			n--;
		trimmed = strndup(text, n);
		if (trimmed == NULL)
			return MN_NOMEM;
		text = trimmed;
	}
	err = config_state_set(st, name, text, NULL, CONFIG_SRC_ENV, var, reason, sizeof(reason));
	if (trimmed) {
		explicit_bzero(trimmed, n);
		free(trimmed);
	}
	if (err == MN_NOMEM)
		return err;
	if (err != MN_OK)
		config_state_error(st, "environment variable '%s': %s", var, reason);
	return MN_OK;
}

static void trim(char *s)
{
	size_t n = strlen(s), i = 0;

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	while (isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

/* A setting read from the file an environment variable names (the row's
 * env_file: CONSUL_HTTP_TOKEN_FILE), trimmed. The value never reaches a
 * message: only the variable and the path do. */
static enum mn_err env_read_file(struct config_state *st, const struct setting_def *def,
				 const char *path)
{
	char chunk[4096];
	struct buf b;
	enum mn_err err = MN_OK;
	size_t n;
	FILE *fp;

	fp = fopen(path, "r");
	if (fp == NULL) {
		config_state_error(st, "environment variable '%s': cannot read '%s': %s",
				   def->env_file, path, strerror(errno));
		return MN_OK;
	}
	buf_init(&b, ENV_FILE_CAP);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		err = buf_append(&b, chunk, n);
		if (err != MN_OK)
			break;
	}
	if (err == MN_OK && ferror(fp))
		err = MN_IO;
	fclose(fp);
	if (err == MN_NOMEM)
		goto out_release;
	if (err != MN_OK) {
		config_state_error(st, "environment variable '%s': cannot read '%s': %s",
				   def->env_file, path, mn_strerror(err));
		err = MN_OK;
		goto out_release;
	}
	if (b.data == NULL && buf_puts(&b, "") != MN_OK) {
		err = MN_NOMEM;
		goto out_release;
	}
	trim(b.data);
	err = env_set(st, def->env_file, def->name, b.data);
	explicit_bzero(b.data, b.len);
out_release:
	buf_release(&b);
	return err;
}

/* "PEERS_<NAME>_<SETTING>" -> "peers.<name>.<setting>", recognising the
 * setting by its suffix (setting names contain '_'); '_' in the peer name
 * becomes '-' since peer names cannot hold '_'. */
static bool env_peer_name(const char *rest, char *out, size_t len)
{
	const struct setting_def *best = NULL;
	size_t best_len = 0, n = strlen(rest);

	for (size_t i = 0; i < settings_count; i++) {
		const char *s = settings_table[i].name;
		size_t sl;
		bool match = true;

		if (strncmp(s, "peers.*.", 8) != 0)
			continue;
		s += 8;
		sl = strlen(s);
		if (sl + 2 > n || rest[n - sl - 1] != '_')
			continue;
		for (size_t k = 0; k < sl; k++)
			if (toupper((unsigned char)s[k]) != rest[n - sl + k])
				match = false;
		if (match && sl > best_len) {
			best = &settings_table[i];
			best_len = sl;
		}
	}
	if (best == NULL || n + 7 > len)
		return false;
	memcpy(out, "peers.", 6);
	for (size_t k = 0; k < n - best_len - 1; k++) {
		char c = (char)tolower((unsigned char)rest[k]);

		out[6 + k] = c == '_' ? '-' : c;
	}
	snprintf(out + 6 + (n - best_len - 1), len - 6 - (n - best_len - 1), ".%s",
		 best->name + 8);
	return true;
}

/* Maps the part after MESHNODE_ to a dotted name; false when it names no
 * setting. */
static bool env_name(const char *rest, char *out, size_t len)
{
	size_t n = strlen(rest);

	if (n == 0 || n >= len)
		return false;
	for (size_t i = 0; i < settings_count; i++) {
		const char *s = settings_table[i].name;
		size_t k;

		if (settings_is_template(&settings_table[i]) || strlen(s) != n)
			continue;
		for (k = 0; k < n; k++) {
			char c = s[k] == '.' ? '_' : (char)toupper((unsigned char)s[k]);

			if (c != rest[k])
				break;
		}
		if (k == n) {
			memcpy(out, s, n + 1);
			return true;
		}
	}
	if (strncmp(rest, "PEERS_", 6) == 0)
		return env_peer_name(rest + 6, out, len);
	if (strncmp(rest, "FEATURES_", 9) == 0 && rest[9] != '\0') {
		snprintf(out, len, "features.%s", rest + 9);
		for (char *p = out + 9; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		return true;
	}
	return false;
}

/* The settings' aliases (settings_table's 'env'), before the MESHNODE_
 * variables so those win, in the table's env_order. */
static enum mn_err env_apply_aliases(struct config_state *st, char *const *environ)
{
	unsigned order = 1;
	bool more = true;
	enum mn_err err;

	while (more) {
		more = false;
		for (size_t i = 0; i < settings_count; i++) {
			const struct setting_def *def = &settings_table[i];
			const char *v;

			if (def->env == NULL || def->env_order != order)
				continue;
			more = true;
			v = env_get(environ, def->env);
			/* Consul's convention: an empty variable counts as unset. */
			if (v == NULL || *v == '\0')
				continue;
			err = env_set(st, def->env, def->name, v);
			if (err != MN_OK)
				return err;
		}
		order++;
	}
	return MN_OK;
}

enum mn_err config_env_apply(struct config_state *st, char *const *environ)
{
	const char *v;
	enum mn_err err;

	if (environ == NULL)
		return MN_OK;
	err = env_apply_aliases(st, environ);
	if (err != MN_OK)
		return err;
	/* after the aliases: a file wins over its setting's alias */
	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];

		if (def->env_file == NULL)
			continue;
		v = env_get(environ, def->env_file);
		if (v && *v) {
			err = env_read_file(st, def, v);
			if (err != MN_OK)
				return err;
		}
	}
	for (char *const *e = environ; *e; e++) {
		char var[256], name[256];
		const char *eq = strchr(*e, '=');
		size_t n;

		if (eq == NULL || strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
			continue;
		n = (size_t)(eq - *e);
		if (n >= sizeof(var))
			continue;
		memcpy(var, *e, n);
		var[n] = '\0';
		if (!env_name(var + strlen(ENV_PREFIX), name, sizeof(name))) {
			char hint[160], hint_var[200];

			if (settings_closest(var + strlen(ENV_PREFIX), true, hint, sizeof(hint))) {
				size_t k = 0;

				for (; hint[k] && k + 1 < sizeof(hint); k++)
					hint[k] = hint[k] == '.' ? '_'
						  : (char)toupper((unsigned char)hint[k]);
				hint[k] = '\0';
				snprintf(hint_var, sizeof(hint_var), "%s%s", ENV_PREFIX, hint);
				config_state_warning(st, "environment variable '%s': unknown setting, "
						     "ignored (did you mean '%s'?)", var, hint_var);
			} else {
				config_state_warning(st, "environment variable '%s': unknown "
						     "setting, ignored", var);
			}
			continue;
		}
		err = env_set(st, var, name, eq + 1);
		if (err != MN_OK)
			return err;
	}
	return MN_OK;
}
