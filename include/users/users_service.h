/* The users service: validation and the use cases of the users API. It sees
 * request bodies as text and never sees HTTP, civetweb or SQLite. */
#ifndef MESHNODE_USERS_USERS_SERVICE_H
#define MESHNODE_USERS_USERS_SERVICE_H

#include <stdbool.h>

#include "users/users_repo.h"

#define USERS_LIMIT_DEFAULT 50
#define USERS_LIMIT_MAX 1000

struct users_service;

/* A new service over 'repo' (borrowed; must outlive the service). */
struct users_service *users_service_create(struct users_repo *repo);
void users_service_destroy(struct users_service *svc);

/* Validates a create/update body: a JSON object with "name" (a string) and
 * optionally "email" (null or a string); other fields are ignored. Neither
 * string may hold a control character anywhere (C0, DEL, C1: see
 * text_find_control()); jansson has already refused invalid UTF-8 and
 * \u0000. Both are trimmed of surrounding spaces, then the name must be 1
 * to USER_NAME_MAX bytes and the email at most USER_EMAIL_MAX bytes with
 * text on both sides of one '@' and no whitespace. On MN_OK *name and
 * *email are new, trimmed strings (email NULL when absent); on MN_INVALID
 * err says why ("'name' must not contain control characters (U+000A at
 * byte 3)"). A body nested deeper than MN_JSON_MAX_DEPTH is MN_INVALID
 * without being parsed. */
enum mn_err users_validate(const char *body, size_t len, char **name, char **email, char *err,
			   size_t errlen);

/* The use cases. 'out' receives the stored user (caller releases).
 * MN_INVALID (err says why), MN_NOT_FOUND, MN_CONFLICT (err says the email
 * is taken, compared without regard to ASCII case), MN_UNAVAILABLE (err
 * says why, for the client: "the store cannot write: disk full", "the
 * store is busy; try again"), or another store error (err not for the
 * client). */
enum mn_err users_service_create_user(struct users_service *svc, const char *body, size_t len,
				      struct user *out, char *err, size_t errlen);
enum mn_err users_service_get(struct users_service *svc, int64_t id, struct user *out);
enum mn_err users_service_list(struct users_service *svc, size_t limit, size_t offset,
			       struct user **out, size_t *n);
enum mn_err users_service_update(struct users_service *svc, int64_t id, const char *body,
				 size_t len, struct user *out, char *err, size_t errlen);
enum mn_err users_service_delete(struct users_service *svc, int64_t id, char *err, size_t errlen);

#endif
