/* The events outbox: the OrderCreated events the orders repository stores
 * with their orders (orders/orders_repo.h), read, marked sent and pruned
 * by the events publisher (events/publisher.h), its only user. Each driver
 * of the orders repository implements it over the same tables; the store
 * (store/store.h) hands it out beside the repository. All calls are safe
 * from many threads at once. */
#ifndef MESHNODE_ORDERS_OUTBOX_H
#define MESHNODE_ORDERS_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* An event of the outbox: stored with the order it tells of, in the same
 * transaction, and handed to the publisher in the order of its id until it
 * is marked sent. */
struct outbox_event {
	int64_t id;	    /* the row's; ascending in commit order */
	char *event_id;	    /* the message id, unique (owned) */
	char *type;	    /* "OrderCreated" (owned) */
	char *body;	    /* JSON (owned) */
	int64_t created_ms; /* wall clock, ms, when stored */
};

/* Frees an array of n events and the array; NULL is a no-op. */
void outbox_events_free(struct outbox_event *v, size_t n);

struct outbox_stats {
	int64_t pending;	   /* not sent yet */
	int64_t sent;		   /* sent and not pruned yet */
	int64_t oldest_pending_ms; /* created_ms of the oldest pending; 0: none */
	int64_t oldest_sent_ms;	   /* sent_ms of the oldest sent row kept; 0: none */
};

struct outbox;

/* What an implementation provides; callers use the functions below. */
struct outbox_ops {
	enum mn_err (*pending)(struct outbox *o, size_t limit, struct outbox_event **out, size_t *n,
			       char *err, size_t errlen);
	enum mn_err (*mark_sent)(struct outbox *o, const int64_t *ids, size_t n, int64_t now_ms,
				 char *err, size_t errlen);
	enum mn_err (*stats)(struct outbox *o, struct outbox_stats *out, char *err, size_t errlen);
	enum mn_err (*prune)(struct outbox *o, int64_t sent_before_ms, size_t max_rows,
			     size_t *pruned, char *err, size_t errlen);
};

/* Implementations embed this in their orders repository; it lives and
 * goes with it. */
struct outbox {
	const struct outbox_ops *ops;
};

/* The oldest events not sent yet, by id, at most 'limit': *out is a new
 * array of *n (free with outbox_events_free(); NULL when *n is 0). */
enum mn_err outbox_pending(struct outbox *o, size_t limit, struct outbox_event **out, size_t *n,
			   char *err, size_t errlen);

/* Marks the events with these row ids sent at now_ms (wall clock); ids
 * already sent or unknown are left as they are. */
enum mn_err outbox_mark_sent(struct outbox *o, const int64_t *ids, size_t n, int64_t now_ms,
			     char *err, size_t errlen);

enum mn_err outbox_stats(struct outbox *o, struct outbox_stats *out, char *err, size_t errlen);

/* Deletes at most max_rows events sent before sent_before_ms (the oldest
 * first); *pruned says how many. Pending events are never deleted.
 * One bounded batch: SQL stores find it through an index of the sent rows
 * and delete it in one short transaction, so a caller keeps up with any
 * rate by calling again while a full batch went (events/publisher.h). */
enum mn_err outbox_prune(struct outbox *o, int64_t sent_before_ms, size_t max_rows, size_t *pruned,
			 char *err, size_t errlen);

#endif
