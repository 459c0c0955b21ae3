#include "users/user.h"

#include <stdlib.h>
#include <string.h>

void user_init(struct user *u)
{
	u->id = 0;
	u->name = NULL;
	u->email = NULL;
}

void user_release(struct user *u)
{
	free(u->name);
	free(u->email);
	user_init(u);
}

enum mn_err user_set(struct user *u, int64_t id, const char *name, const char *email)
{
	user_release(u);
	u->id = id;
	u->name = strdup(name);
	u->email = email ? strdup(email) : NULL;
	if (u->name == NULL || (email && u->email == NULL)) {
		user_release(u);
		return MN_NOMEM;
	}
	return MN_OK;
}

json_t *user_to_json(const struct user *u)
{
	return json_pack("{s:I, s:s, s:o}", "id", (json_int_t)u->id, "name", u->name, "email",
			 u->email ? json_string(u->email) : json_null());
}

void user_list_free(struct user *users, size_t n)
{
	for (size_t i = 0; i < n; i++)
		user_release(&users[i]);
	free(users);
}
