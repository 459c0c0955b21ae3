/* The events publisher: one thread that sends the events of the outbox
 * (orders/outbox.h) to RabbitMQ with rabbitmq-c, oldest first, over
 * one persistent connection: a durable queue (events.queue), persistent
 * JSON messages whose message_id is the event's id, publisher confirms,
 * and an event marked sent only once the broker confirmed it. A batch is
 * marked sent up to its first message the broker did not take (a nack, a
 * return, no confirm in time); that one and those after it go again, in
 * order, on a new connection after a capped backoff: an event may arrive
 * twice (consumers deduplicate by message_id), never not at all, and in
 * the order of the outbox.
 *
 * The broker is events.broker_address ("host:port") when set, else a
 * passing instance of events.broker_service found through the resolver,
 * the next one after each failure. The broker down or unreachable: orders
 * go on being stored, the outbox grows, the publisher retries with backoff
 * (100 ms doubling to 5 s). Sent events are pruned after
 * events.retention_ms, in batches of EVENTS_PRUNE_BATCH, one after the
 * other while batches come full, else at most every EVENTS_PRUNE_EVERY_MS
 * and only when the oldest sent row (read with the outbox's statistics,
 * each second) is older than the retention: an idle outbox costs no
 * DELETE. The
 * sent rows kept stay under retention x rate + one batch at any rate up to
 * EVENTS_PRUNE_BATCH per EVENTS_PRUNE_EVERY_MS (8,000 events/s), and past
 * that rate pruning runs batch after batch. Every setting is read anew
 * each round: a change of broker, credentials or queue reconnects. */
#ifndef MESHNODE_EVENTS_PUBLISHER_H
#define MESHNODE_EVENTS_PUBLISHER_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics/metrics.h"
#include "peers/resolver.h"
#include "orders/outbox.h"

struct events_settings {
	bool enabled;
	char broker_service[129];
	char broker_address[256]; /* "" or "host:port" */
	char vhost[128];
	char user[128];
	char password[256];
	char queue[256];
	unsigned batch_size;      /* events per round, 1..1000 */
	uint64_t retention_ms;    /* sent events kept this long */
};

struct events_status {
	bool enabled;
	bool connected;
	char broker[300];         /* "127.0.0.1:5672", "" when none */
	int64_t pending, sent;
	uint64_t oldest_pending_age_ms;
	uint64_t oldest_sent_age_ms; /* the oldest sent row kept: about
					events.retention_ms while pruning keeps up */
	uint64_t pruned;          /* sent events deleted, since the start */
	uint64_t confirmed, failed; /* messages, since the start */
	char last_error[256];     /* "" when the last round went well */
};

struct events_broker;

struct events_publisher_opts {
	struct outbox *source;               /* borrowed: the events to send */
	struct resolver *resolver;           /* borrowed; NULL: broker_address only */
	/* The settings in force, copied into *out; called on the publisher's
	 * thread each round. */
	void (*settings)(void *ctx, struct events_settings *out);
	void *ctx;
	struct metric_family *published;     /* {result}: confirmed, refused (a nack
						or a return), unconfirmed (no confirm
						in time, or the connection went; they
						go again); may be NULL */
	struct metric_family *outbox;        /* {state}: pending, sent; may be NULL */
	struct metric_family *oldest;        /* seconds; may be NULL */
	struct metric_family *pruned;        /* counter; may be NULL */
	struct metric_family *oldest_sent;   /* seconds; may be NULL */
	/* The broker's calls (borrowed; NULL: events_broker_rabbitmq, in
	 * events/broker.h). Unit tests pass a fake broker. */
	const struct events_broker *broker;
};

/* NULL when out of memory or the thread cannot start. */
struct events_publisher *events_publisher_start(const struct events_publisher_opts *opts);

/* An event was stored: the publisher looks at the outbox now rather than
 * at its next round. Cheap; any thread. */
void events_publisher_notify(struct events_publisher *p);

void events_publisher_status(struct events_publisher *p, struct events_status *out);

/* Stops the thread and frees; NULL is a no-op. A login in progress is cut
 * at once (a broker that accepts and never answers costs nothing); a TCP
 * connect takes 2 s at most, a batch in flight its confirms (5 s at most).
 * What is not confirmed stays pending. */
void events_publisher_stop(struct events_publisher *p);

/* The confirms of a batch of n messages (delivery tags first_tag ..
 * first_tag + n - 1), as the broker sent them: what to mark sent. acked[i]
 * and failed[i] (a nack or a return) for each; returns how many from the
 * start were acked with none failed before them: those are sent, the rest
 * go again. Exposed for unit tests. */
size_t events_confirmed_prefix(const bool *acked, const bool *failed, size_t n);

#define EVENTS_PRUNE_BATCH    2000
#define EVENTS_PRUNE_EVERY_MS 250

/* The pruning schedule, on the publisher's thread: next_ms on the clock
 * the caller passes (monotonic), total the rows pruned so far,
 * oldest_sent_ms the wall time of the oldest sent row as last observed (0:
 * none, or not known since a batch took all that was due), more when the
 * last batch came full. */
struct events_prune {
	uint64_t next_ms;
	uint64_t total;
	int64_t oldest_sent_ms;
	bool more;
};

/* What the outbox's statistics say of the oldest sent row (0: none). */
void events_prune_observe(struct events_prune *pr, int64_t oldest_sent_ms);

/* When due at now_ms, and a full batch came last or the oldest sent row
 * observed is older than wall_ms - retention_ms, deletes one batch
 * (EVENTS_PRUNE_BATCH at most) of the events sent before that cutoff;
 * *pruned says how many. Otherwise the store is not asked. A full batch
 * leaves the next one due at once (the caller yields between two), a
 * partial one or an error EVENTS_PRUNE_EVERY_MS later at the soonest; a
 * partial one also forgets the oldest observed (all that was due went):
 * the next observation says when more is due. Returns the outbox's
 * error, with err (optional) saying why. Exposed for unit tests, which
 * drive it with their own clocks. */
enum mn_err events_prune_step(struct events_prune *pr, struct outbox *outbox, uint64_t now_ms,
			      int64_t wall_ms, uint64_t retention_ms, size_t *pruned, char *err,
			      size_t errlen);

#endif
