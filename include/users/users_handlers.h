/* HTTP handlers of the users API: parse, call the service, reply. */
#ifndef MESHNODE_USERS_USERS_HANDLERS_H
#define MESHNODE_USERS_USERS_HANDLERS_H

#include "http/router.h"
#include "users/users_service.h"

/* Registers GET/POST /users and GET/PUT/DELETE /users/{id}. 'svc' is
 * borrowed and must outlive the router. */
enum mn_err users_handlers_register(struct http_router *r, struct users_service *svc);

#endif
