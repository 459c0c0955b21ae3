#include "users/users_service.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_depth.h"
#include "core/json_load.h"
#include "core/text.h"

struct users_service {
	struct users_repo *repo;
};

struct users_service *users_service_create(struct users_repo *repo)
{
	struct users_service *svc = calloc(1, sizeof(*svc));

	if (svc)
		svc->repo = repo;
	return svc;
}

void users_service_destroy(struct users_service *svc) { free(svc); }

/* A plausible address: text on both sides of one '@', no whitespace. */
static bool email_plausible(const char *s)
{
	const char *at = strchr(s, '@');

	return at && at != s && at[1] != '\0' && strchr(at + 1, '@') == NULL &&
	       strpbrk(s, " \t\n\v\f\r") == NULL;
}

/* The string 'v' named 'key', with no control character, trimmed of
 * surrounding spaces, as a new string in *out of 'min' to 'max' bytes. MN_INVALID
 * (err says why) or MN_NOMEM, *out left NULL. */
static enum mn_err clean_string(json_t *v, const char *key, size_t min, size_t max, char **out,
				char *err, size_t errlen)
{
	const char *s;
	size_t len;
	unsigned cp;
	ssize_t at;

	*out = NULL;
	if (!json_is_string(v))
		return mn_error(err, errlen, MN_INVALID, "'%s' must be a string", key);
	/* jansson has checked the UTF-8 and refuses \u0000 unless told
	 * otherwise; the other escapes (\n, \u001b, \u0085) arrive here. */
	s = json_string_value(v);
	len = json_string_length(v);
	/* Anywhere, leading and trailing ones too: a control character is
	 * refused, never trimmed away. */
	at = text_find_control(s, len, &cp);
	if (at >= 0)
		return mn_error(err, errlen, MN_INVALID,
				"'%s' must not contain control characters (U+%04X at byte %zd)",
				key, cp, at);
	text_trim(&s, &len);
	if (len < min || len > max)
		return mn_error(err, errlen, MN_INVALID,
				"'%s' must be %zu to %zu bytes of text, not only spaces", key, min,
				max);
	*out = strndup(s, len);
	if (*out == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	return MN_OK;
}

enum mn_err users_validate(const char *body, size_t len, char **name, char **email, char *err,
			   size_t errlen)
{
	json_error_t jerr;
	bool nomem;
	json_t *root, *jname, *jemail;
	enum mn_err ret;

	*name = NULL;
	*email = NULL;
	/* before jansson, whose recursion a deep body would turn against
	 * the worker's small stack */
	ret = json_depth_check(body, len, err, errlen);
	if (ret != MN_OK)
		return ret;
	root = json_load_checked(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr,
				 &nomem);
	if (root == NULL && nomem)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	if (root == NULL)
		return mn_error(err, errlen, MN_INVALID, "invalid JSON: %s at line %d column %d",
				jerr.text, jerr.line, jerr.column);
	if (!json_is_object(root)) {
		ret = mn_error(err, errlen, MN_INVALID, "the body must be a JSON object");
		goto out;
	}
	jname = json_object_get(root, "name");
	jemail = json_object_get(root, "email");
	if (jname == NULL || json_is_null(jname)) {
		ret = mn_error(err, errlen, MN_INVALID, "'name' is required");
		goto out;
	}
	ret = clean_string(jname, "name", 1, USER_NAME_MAX, name, err, errlen);
	if (ret != MN_OK || jemail == NULL || json_is_null(jemail))
		goto out;
	/* an empty email is not an address: email_plausible() says so */
	ret = clean_string(jemail, "email", 0, SIZE_MAX, email, err, errlen);
	if (ret == MN_OK && (strlen(*email) > USER_EMAIL_MAX || !email_plausible(*email))) {
		free(*email);
		*email = NULL;
		ret = mn_error(err, errlen, MN_INVALID,
			       "'email' must be an address such as name@example.com, at most %d "
			       "bytes",
			       USER_EMAIL_MAX);
	}
out:
	if (ret != MN_OK) {
		free(*name);
		*name = NULL;
	}
	json_decref(root);
	return ret;
}

enum mn_err users_service_create_user(struct users_service *svc, const char *body, size_t len,
				      struct user *out, char *err, size_t errlen)
{
	char *name, *email;
	enum mn_err ret = users_validate(body, len, &name, &email, err, errlen);

	if (ret != MN_OK)
		return ret;
	ret = users_repo_create_user(svc->repo, name, email, out, err, errlen);
	if (ret == MN_CONFLICT)
		mn_error(err, errlen, MN_CONFLICT, "email '%s' is already taken", email);
	free(name);
	free(email);
	return ret;
}

enum mn_err users_service_get(struct users_service *svc, int64_t id, struct user *out)
{
	return users_repo_get(svc->repo, id, out);
}

enum mn_err users_service_list(struct users_service *svc, size_t limit, size_t offset,
			       struct user **out, size_t *n)
{
	return users_repo_list(svc->repo, limit, offset, out, n);
}

enum mn_err users_service_update(struct users_service *svc, int64_t id, const char *body,
				 size_t len, struct user *out, char *err, size_t errlen)
{
	char *name, *email;
	enum mn_err ret = users_validate(body, len, &name, &email, err, errlen);

	if (ret != MN_OK)
		return ret;
	ret = users_repo_update(svc->repo, id, name, email, out, err, errlen);
	if (ret == MN_CONFLICT)
		mn_error(err, errlen, MN_CONFLICT, "email '%s' is already taken", email);
	free(name);
	free(email);
	return ret;
}

enum mn_err users_service_delete(struct users_service *svc, int64_t id, char *err, size_t errlen)
{
	return users_repo_delete(svc->repo, id, err, errlen);
}
