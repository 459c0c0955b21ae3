#include "users/users_service.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_depth.h"

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

static bool blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

static bool email_plausible(const char *s)
{
	const char *at = strchr(s, '@');

	return at && at != s && at[1] != '\0' && strchr(at + 1, '@') == NULL;
}

enum mn_err users_validate(const char *body, size_t len, char **name, char **email, char *err,
			   size_t errlen)
{
	json_error_t jerr;
	json_t *root, *jname, *jemail;
	enum mn_err ret = MN_OK;

	*name = NULL;
	*email = NULL;
	/* before jansson, whose recursion a deep body would turn against
	 * the worker's small stack */
	ret = json_depth_check(body, len, err, errlen);
	if (ret != MN_OK)
		return ret;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
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
	if (!json_is_string(jname)) {
		ret = mn_error(err, errlen, MN_INVALID, "'name' must be a string");
		goto out;
	}
	/* jansson refuses \u0000 in strings unless told otherwise, so the
	 * lengths below are the C string lengths. */
	if (blank(json_string_value(jname)) || json_string_length(jname) > USER_NAME_MAX) {
		ret = mn_error(err, errlen, MN_INVALID,
			       "'name' must be 1 to %d bytes of text, not only spaces", USER_NAME_MAX);
		goto out;
	}
	if (jemail && !json_is_null(jemail)) {
		if (!json_is_string(jemail)) {
			ret = mn_error(err, errlen, MN_INVALID, "'email' must be a string");
			goto out;
		}
		if (json_string_length(jemail) > USER_EMAIL_MAX ||
		    !email_plausible(json_string_value(jemail))) {
			ret = mn_error(err, errlen, MN_INVALID,
				       "'email' must be an address such as name@example.com");
			goto out;
		}
		*email = strdup(json_string_value(jemail));
	}
	*name = strdup(json_string_value(jname));
	if (*name == NULL || (jemail && !json_is_null(jemail) && *email == NULL)) {
		free(*name);
		free(*email);
		*name = *email = NULL;
		ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
	}
out:
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
	ret = users_repo_create_user(svc->repo, name, email, out);
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
	ret = users_repo_update(svc->repo, id, name, email, out);
	if (ret == MN_CONFLICT)
		mn_error(err, errlen, MN_CONFLICT, "email '%s' is already taken", email);
	free(name);
	free(email);
	return ret;
}

enum mn_err users_service_delete(struct users_service *svc, int64_t id)
{
	return users_repo_delete(svc->repo, id);
}
