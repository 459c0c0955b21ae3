/* The orders repository: where orders live. Three implementations behind
 * one interface, opened by the store (store/store.h, whose drivers are in
 * store/drivers.h): SQLite (the default, WAL mode; the file may also hold
 * the users table), PostgreSQL (the users table beside it) and memory. The
 * store owns the database (its pool, readiness, write state); a
 * repository is its orders' part. All calls are safe from many threads at
 * once. */
#ifndef MESHNODE_ORDERS_ORDERS_REPO_H
#define MESHNODE_ORDERS_ORDERS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "orders/order.h"

struct orders_repo;

/* What an implementation provides; callers use the functions below. */
struct orders_repo_ops {
	/* event_id NULL: no event */
	enum mn_err (*create)(struct orders_repo *r, int64_t user_id, const char *product,
			      int64_t quantity, const char *event_id, struct order *out,
			      char *err, size_t errlen);
	enum mn_err (*get)(struct orders_repo *r, int64_t id, struct order *out);
	enum mn_err (*list)(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			    size_t *n);
	void (*destroy)(struct orders_repo *r);
};

/* Implementations embed this as their first member. */
struct orders_repo {
	const struct orders_repo_ops *ops;
};

/* Stores a new order; out receives it with its id (caller releases). The
 * repository checks nothing about the user: that is the service's job.
 * MN_UNAVAILABLE when the store cannot write now, with err (optional)
 * saying why in words for the client ("the store cannot write: disk
 * full"). */
enum mn_err orders_repo_create_order(struct orders_repo *r, int64_t user_id, const char *product,
				     int64_t quantity, struct order *out, char *err, size_t errlen);

/* As orders_repo_create_order(), and in the same transaction an
 * OrderCreated event with id 'event_id' and the stored order as its body
 * (order_created_json()), read through the outbox (orders/outbox.h):
 * both are stored or neither. The memory store
 * keeps its events in memory, like its orders. */
enum mn_err orders_repo_create_order_event(struct orders_repo *r, int64_t user_id,
					   const char *product, int64_t quantity,
					   const char *event_id, struct order *out, char *err,
					   size_t errlen);

/* MN_NOT_FOUND when no order has this id. */
enum mn_err orders_repo_get(struct orders_repo *r, int64_t id, struct order *out);

/* Orders ordered by id; *out is a new array of *n orders (free with
 * order_list_free(), NULL when *n is 0). */
enum mn_err orders_repo_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			     size_t *n);

/* Frees the repository (not the store's database); NULL is a no-op. */
void orders_repo_destroy(struct orders_repo *r);

#endif
