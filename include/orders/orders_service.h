/* The orders service: validation and the use cases of the orders API. An
 * order is stored only once the users service, asked through a users peer,
 * says its user exists. It sees request bodies as text and never sees HTTP,
 * civetweb, curl or SQLite. */
#ifndef MESHNODE_ORDERS_ORDERS_SERVICE_H
#define MESHNODE_ORDERS_ORDERS_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orders/order.h"
#include "orders/users_peer.h"
#include "orders/orders_repo.h"

#define ORDERS_LIMIT_DEFAULT 50
#define ORDERS_LIMIT_MAX     1000

struct orders_service;

/* A new service over 'repo' and 'users' (both borrowed; they must outlive
 * the service). NULL when out of memory. */
struct orders_service *orders_service_create(struct orders_repo *repo,
					     const struct users_peer *users);
/* Frees the service; NULL is a no-op. */
void orders_service_destroy(struct orders_service *svc);

/* The OrderCreated events (events/publisher.h): while enabled() says so,
 * an order is stored with its event (a new UUID as its id) in one
 * transaction, and stored() is called after the commit. */
struct orders_events {
	bool (*enabled)(void *ctx);
	void (*stored)(void *ctx);
	void *ctx;
};

/* Sets the events hooks (copied); call before the service is used. */
void orders_service_set_events(struct orders_service *svc, const struct orders_events *ev);

/* Validates a create body: a JSON object with "user_id" (an integer >= 1),
 * "product" (a string with no control character anywhere, C0, DEL or C1, of
 * 1 to ORDER_PRODUCT_MAX bytes once leading and trailing whitespace is
 * trimmed) and "quantity" (an integer from 1 to
 * ORDER_QUANTITY_MAX); other fields are ignored, strings and reals are not
 * integers. On MN_OK 'out' holds user_id, quantity and the trimmed product
 * (a new string; caller releases) with id 0; on failure 'out' is left
 * empty and err says why: MN_INVALID ("'quantity' must be an integer") or
 * MN_NOMEM. A body nested deeper than MN_JSON_MAX_DEPTH is MN_INVALID
 * without being parsed. */
enum mn_err orders_validate(const char *body, size_t len, struct order *out, char *err,
			    size_t errlen);

/* Creates an order from a request body. Validates first (an invalid body
 * never reaches the peer), then asks the users peer, passing 'trace' on
 * (borrowed; may be NULL), then stores. 'out' receives the stored order
 * (caller releases). Returns:
 *   MN_INVALID        the body is wrong; err says why, for the caller
 *   MN_UNPROCESSABLE  the user does not exist; err is "user 42 does not
 *                     exist", for the caller
 *   MN_UNAVAILABLE    *retry_after_s >= 1: no users instance could answer,
 *                     err holds the detail, not for the caller;
 *                     *retry_after_s == 0: the store cannot write now, err
 *                     says why, for the caller ("the store cannot write:
 *                     disk full", "the store is busy; try again")
 *   other             an internal failure of the peer (MN_INTERNAL) or the
 *                     store; err holds the detail, not for the caller.
 * *retry_after_s is 0 unless a users instance could not answer. */
enum mn_err orders_service_create_order(struct orders_service *svc, const char *body, size_t len,
					const struct users_peer_trace *trace, struct order *out,
					unsigned *retry_after_s, char *err, size_t errlen);

/* One order; MN_NOT_FOUND when missing, or a store error. */
enum mn_err orders_service_get(struct orders_service *svc, int64_t id, struct order *out);

/* Orders by id; as orders_repo_list(). */
enum mn_err orders_service_list(struct orders_service *svc, size_t limit, size_t offset,
				struct order **out, size_t *n);

#endif
