/* The orders repository: where orders live. Three implementations behind
 * one interface: SQLite (the default, WAL mode; the file may also hold the
 * users table), PostgreSQL (the users table beside it) and memory. All
 * calls are safe from many threads at once. */
#ifndef MESHNODE_ORDERS_ORDERS_REPO_H
#define MESHNODE_ORDERS_ORDERS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "orders/order.h"
#include "store/store_fault.h"

struct orders_repo;

/* An event of the outbox: stored with the order it tells of, in the same
 * transaction, and handed to the publisher (events/publisher.h) in the
 * order of its id until it is marked sent. */
struct outbox_event {
	int64_t id;         /* the row's; ascending in commit order */
	char *event_id;     /* the message id, unique (owned) */
	char *type;         /* "OrderCreated" (owned) */
	char *body;         /* JSON (owned) */
	int64_t created_ms; /* wall clock, ms, when stored */
};

/* Frees an array of n events and the array; NULL is a no-op. */
void outbox_events_free(struct outbox_event *v, size_t n);

struct outbox_stats {
	int64_t pending;           /* not sent yet */
	int64_t sent;              /* sent and not pruned yet */
	int64_t oldest_pending_ms; /* created_ms of the oldest pending; 0: none */
	int64_t oldest_sent_ms;    /* sent_ms of the oldest sent row kept; 0: none */
};

/* What an implementation provides; callers use the functions below. */
struct orders_repo_ops {
	/* event_id NULL: no event */
	enum mn_err (*create)(struct orders_repo *r, int64_t user_id, const char *product,
			      int64_t quantity, const char *event_id, struct order *out,
			      char *err, size_t errlen);
	enum mn_err (*get)(struct orders_repo *r, int64_t id, struct order *out);
	enum mn_err (*list)(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			    size_t *n);
	enum mn_err (*ping)(struct orders_repo *r, char *err, size_t errlen);
	void (*health)(struct orders_repo *r, struct store_health *out);
	enum mn_err (*outbox_pending)(struct orders_repo *r, size_t limit,
				      struct outbox_event **out, size_t *n, char *err,
				      size_t errlen);
	enum mn_err (*outbox_mark_sent)(struct orders_repo *r, const int64_t *ids, size_t n,
					int64_t now_ms, char *err, size_t errlen);
	enum mn_err (*outbox_stats)(struct orders_repo *r, struct outbox_stats *out, char *err,
				    size_t errlen);
	enum mn_err (*outbox_prune)(struct orders_repo *r, int64_t sent_before_ms,
				    size_t max_rows, size_t *pruned, char *err, size_t errlen);
	void (*destroy)(struct orders_repo *r);
};

/* Implementations embed this as their first member. */
struct orders_repo {
	const struct orders_repo_ops *ops;
};

/* Opens (creating when missing, with parent directories) a SQLite database
 * and its `orders` table: WAL journal, synchronous=NORMAL, busy_timeout 5 s,
 * so several processes, and the users repository, may share the file; file
 * modes and write failures as store/sqlite_pool.h says. NULL on failure
 * with the reason in err. */
struct orders_repo *orders_repo_sqlite_open(const char *path, char *err, size_t errlen);
/* The same with how long a request may wait in the store (NULL:
 * STORE_LIMITS_DEFAULT; sqlite_pool.h). */
struct orders_repo *orders_repo_sqlite_open_with(const char *path, const struct store_limits *limits,
					   char *err, size_t errlen);

/* A new in-memory repository (database.driver = "memory"); NULL when out
 * of memory. */
struct orders_repo *orders_repo_memory_create(void);

struct pg_pool;

/* A repository over a PostgreSQL pool (database.driver = "postgres"; see
 * store/pg_pool.h), which it keeps a reference to. NULL when out of
 * memory. */
struct orders_repo *orders_repo_pg_open(struct pg_pool *pool);

/* Stores a new order; out receives it with its id (caller releases). The
 * repository checks nothing about the user: that is the service's job.
 * MN_UNAVAILABLE when the store cannot write now, with err (optional)
 * saying why in words for the client ("the store cannot write: disk
 * full"). */
enum mn_err orders_repo_create_order(struct orders_repo *r, int64_t user_id, const char *product,
				     int64_t quantity, struct order *out, char *err, size_t errlen);

/* As orders_repo_create_order(), and in the same transaction an
 * OrderCreated event with id 'event_id' and the stored order as its body
 * (order_created_json()): both are stored or neither. The memory store
 * keeps its events in memory, like its orders. */
enum mn_err orders_repo_create_order_event(struct orders_repo *r, int64_t user_id,
					   const char *product, int64_t quantity,
					   const char *event_id, struct order *out, char *err,
					   size_t errlen);

/* The oldest events not sent yet, by id, at most 'limit': *out is a new
 * array of *n (free with outbox_events_free(); NULL when *n is 0). */
enum mn_err orders_repo_outbox_pending(struct orders_repo *r, size_t limit,
				       struct outbox_event **out, size_t *n, char *err,
				       size_t errlen);

/* Marks the events with these row ids sent at now_ms (wall clock); ids
 * already sent or unknown are left as they are. */
enum mn_err orders_repo_outbox_mark_sent(struct orders_repo *r, const int64_t *ids, size_t n,
					 int64_t now_ms, char *err, size_t errlen);

enum mn_err orders_repo_outbox_stats(struct orders_repo *r, struct outbox_stats *out, char *err,
				     size_t errlen);

/* Deletes at most max_rows events sent before sent_before_ms (the oldest
 * first); *pruned says how many. Pending events are never deleted.
 * One bounded batch: SQL stores find it through an index of the sent rows
 * and delete it in one short transaction, so a caller keeps up with any
 * rate by calling again while a full batch went (events/publisher.h). */
enum mn_err orders_repo_outbox_prune(struct orders_repo *r, int64_t sent_before_ms,
				     size_t max_rows, size_t *pruned, char *err, size_t errlen);

/* MN_NOT_FOUND when no order has this id. */
enum mn_err orders_repo_get(struct orders_repo *r, int64_t id, struct order *out);

/* Orders ordered by id; *out is a new array of *n orders (free with
 * order_list_free(), NULL when *n is 0). */
enum mn_err orders_repo_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			     size_t *n);

/* Readiness: MN_OK when the store answers and can write; MN_UNAVAILABLE
 * with err (optional) saying why ("cannot write: disk full"). */
enum mn_err orders_repo_ping(struct orders_repo *r, char *err, size_t errlen);

/* The write state (what the memory store reports: no fault, no failure). */
void orders_repo_health(struct orders_repo *r, struct store_health *out);

/* Closes and frees; NULL is a no-op. */
void orders_repo_destroy(struct orders_repo *r);

#endif
