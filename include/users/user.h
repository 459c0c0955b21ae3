/* The user model and its JSON mapping. */
#ifndef MESHNODE_USERS_USER_H
#define MESHNODE_USERS_USER_H

#include <jansson.h>
#include <stdint.h>

#include "core/error.h"

#define USER_NAME_MAX 200
#define USER_EMAIL_MAX 254

struct user {
	int64_t id;
	char *name;   /* owned */
	char *email;  /* owned; NULL when absent */
};

/* An empty user (id 0, no strings). */
void user_init(struct user *u);
/* Frees the strings; the user may be reused after user_init(). */
void user_release(struct user *u);

/* Sets id, name and email (copied; email may be NULL). MN_NOMEM on failure,
 * leaving the user released. */
enum mn_err user_set(struct user *u, int64_t id, const char *name, const char *email);

/* {"id":1,"name":"Ada","email":"ada@example.com"} with email null when
 * absent (new reference); NULL when out of memory. */
json_t *user_to_json(const struct user *u);

/* Frees an array of n users as returned by a listing. */
void user_list_free(struct user *users, size_t n);

#endif
