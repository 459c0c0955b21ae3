/* A users create/update body (POST /users, PUT /users/{id}) as a client
 * sends it, through users_validate() and the service over a memory store.
 * What validates has a name and email within the documented limits, the
 * service stores exactly that, and the store's JSON gives it back. */
#include <ctype.h>
#include <jansson.h>

#include "fuzz.h"
#include "store/drivers.h"
#include "users/users_repo.h"
#include "users/users_service.h"

static bool blank(const char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return *s == '\0';
}

static void check_user_json(const struct user *u, const char *name, const char *email)
{
	json_t *o = user_to_json(u), *back;
	char *text;

	FUZZ_CHECK(o != NULL);
	text = json_dumps(o, JSON_COMPACT);
	FUZZ_CHECK(text != NULL);
	back = json_loads(text, 0, NULL);
	FUZZ_CHECK(back != NULL);
	FUZZ_CHECK(json_integer_value(json_object_get(back, "id")) == u->id);
	FUZZ_CHECK(strcmp(json_string_value(json_object_get(back, "name")), name) == 0);
	if (email)
		FUZZ_CHECK(strcmp(json_string_value(json_object_get(back, "email")), email) == 0);
	else
		FUZZ_CHECK(json_is_null(json_object_get(back, "email")));
	json_decref(back);
	free(text);
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	char *name = (char *)&name, *email = (char *)&email;
	char err[256] = "";
	struct users_repo *repo;
	struct users_service *svc;
	struct user u, again;
	enum mn_err e;
	const char *at;

	/* the body is not NUL-terminated: the parser must keep to 'size' */
	e = users_validate(body, size, &name, &email, err, sizeof(err));
	FUZZ_CHECK(e == MN_OK || e == MN_INVALID);
	if (e != MN_OK) {
		FUZZ_CHECK(name == NULL && email == NULL);
		FUZZ_CHECK(err[0] != '\0');
	} else {
		FUZZ_CHECK(name != NULL);
		FUZZ_CHECK(strlen(name) >= 1 && strlen(name) <= USER_NAME_MAX && !blank(name));
		if (email) {
			at = strchr(email, '@');
			FUZZ_CHECK(strlen(email) <= USER_EMAIL_MAX);
			FUZZ_CHECK(at && at != email && at[1] != '\0' && !strchr(at + 1, '@'));
		}
	}

	repo = users_repo_memory_create();
	svc = users_service_create(repo);
	FUZZ_CHECK(repo && svc);
	user_init(&u);
	FUZZ_CHECK(users_service_create_user(svc, body, size, &u, err, sizeof(err)) == e);
	if (e == MN_OK) {
		FUZZ_CHECK(u.id == 1);
		FUZZ_CHECK(strcmp(u.name, name) == 0);
		FUZZ_CHECK(email ? u.email && strcmp(u.email, email) == 0 : u.email == NULL);
		check_user_json(&u, name, email);
		/* the same body again: a second user, unless the email is taken */
		user_init(&again);
		FUZZ_CHECK(users_service_create_user(svc, body, size, &again, err, sizeof(err)) ==
			   (email ? MN_CONFLICT : MN_OK));
		user_release(&again);
		/* and as an update of the first: its own email is no conflict */
		user_init(&again);
		FUZZ_CHECK(users_service_update(svc, 1, body, size, &again, err, sizeof(err)) ==
			   MN_OK);
		FUZZ_CHECK(again.id == 1 && strcmp(again.name, name) == 0);
		user_release(&again);
	} else {
		user_init(&again);
		FUZZ_CHECK(users_service_update(svc, 1, body, size, &again, err, sizeof(err)) == e);
		user_release(&again);
	}
	user_release(&u);
	users_service_destroy(svc);
	users_repo_destroy(repo);
	free(name);
	free(email);
	return 0;
}
