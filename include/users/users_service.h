/* The users service: validation and the use cases of the users API. It sees
 * request bodies as text and never sees HTTP, civetweb or SQLite. */
#ifndef MESHNODE_USERS_USERS_SERVICE_H
#define MESHNODE_USERS_USERS_SERVICE_H

#include <stdbool.h>

#include "store/users_repo.h"

#define USERS_LIMIT_DEFAULT 50
#define USERS_LIMIT_MAX 1000

struct users_service;

/* A new service over 'repo' (borrowed; must outlive the service). */
struct users_service *users_service_create(struct users_repo *repo);
void users_service_destroy(struct users_service *svc);

/* Validates a create/update body: a JSON object with "name" (a string,
 * non-empty after trimming, at most USER_NAME_MAX bytes) and optionally
 * "email" (null, or a string with text on both sides of an '@', at most
 * USER_EMAIL_MAX bytes); other fields are ignored. On MN_OK *name and
 * *email are new strings (email NULL when absent); on MN_INVALID err says
 * why ("'name' must be a string"). A body nested deeper than
 * MN_JSON_MAX_DEPTH is MN_INVALID without being parsed. */
enum mn_err users_validate(const char *body, size_t len, char **name, char **email, char *err,
			   size_t errlen);

/* The use cases. 'out' receives the stored user (caller releases).
 * MN_INVALID (err says why), MN_NOT_FOUND, MN_CONFLICT (email taken), or a
 * store error. */
enum mn_err users_service_create_user(struct users_service *svc, const char *body, size_t len,
				      struct user *out, char *err, size_t errlen);
enum mn_err users_service_get(struct users_service *svc, int64_t id, struct user *out);
enum mn_err users_service_list(struct users_service *svc, size_t limit, size_t offset,
			       struct user **out, size_t *n);
enum mn_err users_service_update(struct users_service *svc, int64_t id, const char *body,
				 size_t len, struct user *out, char *err, size_t errlen);
enum mn_err users_service_delete(struct users_service *svc, int64_t id);

#endif
