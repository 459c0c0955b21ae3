#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "events/broker.h"
#include "events/events_metrics.h"
#include "events/publisher.h"
#include "log_capture.h"
#include "metrics/metrics.h"
#include "orders/orders_repo.h"
#include "store/store_fixture.h" /* tests/unit/store/ */

struct fixture {
	struct orders_repo *repo;
	char dir[64];
	int64_t next_event;
};

static int setup_memory(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->repo = test_orders_memory();
	*state = f;
	return f->repo ? 0 : -1;
}

static int setup_sqlite(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[128], err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-prune.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/node.db", f->dir);
	f->repo = test_orders_sqlite(path, err, sizeof(err));
	*state = f;
	return f->repo ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	test_store_close(f->repo);
	if (f->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
		if (system(cmd) != 0)
			return -1;
	}
	free(f);
	return 0;
}

/* n orders with their events, all sent at once at sent_ms (what the
 * publisher does when the broker keeps up). */
static void orders_sent(struct fixture *f, size_t n, int64_t sent_ms)
{
	struct outbox_event *v;
	int64_t *ids = calloc(n, sizeof(*ids));
	struct order o;
	char event_id[32];
	size_t got;

	assert_non_null(ids);
	order_init(&o);
	for (size_t i = 0; i < n; i++) {
		snprintf(event_id, sizeof(event_id), "ev-%lld", (long long)f->next_event++);
		assert_int_equal(
			orders_repo_create_order_event(f->repo, 1, "tea", 1, event_id, &o, NULL, 0),
			MN_OK);
	}
	order_release(&o);
	assert_int_equal(outbox_pending(test_outbox(f->repo), n, &v, &got, NULL, 0), MN_OK);
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++)
		ids[i] = v[i].id;
	assert_int_equal(outbox_mark_sent(test_outbox(f->repo), ids, n, sent_ms, NULL, 0), MN_OK);
	outbox_events_free(v, got);
	free(ids);
}

static struct outbox_stats stats(struct orders_repo *r)
{
	struct outbox_stats s;

	assert_int_equal(outbox_stats(test_outbox(r), &s, NULL, 0), MN_OK);
	return s;
}

/* What a batch's confirms make sent: the acked ones from the start, up to
 * the first that failed or is missing. Those after go again, in order. */
static void test_confirmed_prefix(void **state)
{
	bool all[4] = {true, true, true, true}, none[4] = {false, false, false, false};
	bool gap[4] = {true, false, true, true}, nack2[4] = {false, false, true, false};

	(void)state;
	assert_int_equal(events_confirmed_prefix(all, none, 4), 4);
	assert_int_equal(events_confirmed_prefix(none, none, 4), 0);
	/* the second unconfirmed: the third and fourth, though confirmed, go
	 * again after it (order before uniqueness: duplicates are allowed) */
	assert_int_equal(events_confirmed_prefix(gap, none, 4), 1);
	/* a nack or a return of the third */
	assert_int_equal(events_confirmed_prefix(all, nack2, 4), 2);
	assert_int_equal(events_confirmed_prefix(all, none, 0), 0);
}

/* A backlog (a node that pruned nothing for a while, or a retention just
 * made shorter) goes batch after batch, each bounded, the next due at
 * once; the first batch that is not full puts the next a period later. */
static void test_prune_backlog_in_bounded_batches(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	size_t pruned, backlog = 2 * EVENTS_PRUNE_BATCH + 500;
	uint64_t now = 5000;

	orders_sent(f, backlog, 1000);
	orders_sent(f, 10, 9000); /* within the retention: kept */
	assert_int_equal(stats(f->repo).oldest_sent_ms, 1000);
	events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(
			events_prune_step(&pr, test_outbox(f->repo), now, 10000, 5000, &pruned, NULL, 0), MN_OK);
		assert_int_equal(pruned, EVENTS_PRUNE_BATCH);
		assert_int_equal(pr.next_ms, now); /* more may wait: due at once */
	}
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), now, 10000, 5000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 500);
	assert_int_equal(pr.next_ms, now + EVENTS_PRUNE_EVERY_MS);
	assert_int_equal(pr.total, backlog);
	/* not due: nothing is asked of the store */
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), now + EVENTS_PRUNE_EVERY_MS - 1, 99999,
					   5000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 0);
	assert_int_equal(stats(f->repo).sent, 10);
	assert_int_equal(stats(f->repo).oldest_sent_ms, 9000);
	events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
	/* due, and the last ten aged past the retention */
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), now + EVENTS_PRUNE_EVERY_MS, 14001, 5000,
					   &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 10);
	assert_int_equal(stats(f->repo).sent, 0);
	assert_int_equal(stats(f->repo).oldest_sent_ms, 0);
}

/* Orders at a steady rate, sent as they come, the clock stepped 10 ms at
 * a time as the publisher's rounds would, one prune step per round: once
 * the retention has passed, the sent rows kept never exceed retention x
 * rate + one batch, and the oldest kept is never much older than the
 * retention. (Issue 21: at most 10,000 rows a minute were pruned, so any
 * rate above 167/s grew the outbox without end; here the rate is 3,000/s
 * of the injected clock.) Then the orders stop: a retention later,
 * nothing sent is left. */
static void test_prune_keeps_up_with_the_rate(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	const uint64_t retention = 1000, step = 10, per_step = 30; /* 3,000/s */
	const uint64_t run = 4000, t0 = 1000000;
	const int64_t wall0 = 1700000000000;
	int64_t bound = (int64_t)(retention / step * per_step) + EVENTS_PRUNE_BATCH;
	int64_t most = 0;
	size_t pruned;

	/* the schedule's own constants stay out of the time bounds: 500 ms
	 * is two periods, and a minute-long one fails here */
	for (uint64_t t = 0; t <= run + retention + 500; t += step) {
		struct outbox_stats st;

		if (t < run)
			orders_sent(f, per_step, wall0 + (int64_t)t);
		events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
		assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), t0 + t, wall0 + (int64_t)t,
						   retention, &pruned, NULL, 0),
				 MN_OK);
		if (t < retention || t % 100)
			continue;
		st = stats(f->repo);
		if (st.sent > most)
			most = st.sent;
		assert_true(st.sent <= bound);
		if (st.sent)
			assert_true(wall0 + (int64_t)t - st.oldest_sent_ms <=
				    (int64_t)(retention + 500));
	}
	/* it did hold a retention's worth: the bound is not met by emptiness */
	assert_true(most >= (int64_t)(retention / step * per_step));
	assert_int_equal(stats(f->repo).sent, 0);
	assert_int_equal(pr.total, run / step * per_step);
}

/* While nothing sent is observed older than the retention, the store is
 * not asked: rows older than the cutoff that the last observation did not
 * see (it predates them, or said none) stay, round after round. (Before,
 * after a partial batch a DELETE ran every 250 ms, forever.) */
static void test_prune_none_while_nothing_due(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	size_t pruned;

	orders_sent(f, 5, 1000);
	/* observed nothing sent, then only a row within the retention */
	for (int phase = 0; phase < 2; phase++) {
		events_prune_observe(&pr, phase ? 9000 : 0);
		for (uint64_t t = 0; t < 10 * EVENTS_PRUNE_EVERY_MS; t += 10) {
			assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), 5000 + t, 10000, 5000,
							   &pruned, NULL, 0),
					 MN_OK);
			assert_int_equal(pruned, 0);
		}
		assert_int_equal(stats(f->repo).sent, 5);
	}
	/* after a partial batch, the same until the next observation */
	events_prune_observe(&pr, stats(f->repo).oldest_sent_ms);
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), 6000, 10000, 5000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 5);
	orders_sent(f, 3, 2000); /* sent late, stamped old: unseen */
	for (uint64_t t = 0; t < 10 * EVENTS_PRUNE_EVERY_MS; t += 10) {
		assert_int_equal(
			events_prune_step(&pr, test_outbox(f->repo), 6000 + t, 10000, 5000, &pruned, NULL, 0),
			MN_OK);
		assert_int_equal(pruned, 0);
	}
	assert_int_equal(stats(f->repo).sent, 3);
	assert_int_equal(pr.total, 5);
}

/* Pending events are not pruned, however old the cutoff. */
static void test_prune_never_pending(void **state)
{
	struct fixture *f = *state;
	struct events_prune pr = {0};
	struct order o;
	size_t pruned;

	order_init(&o);
	assert_int_equal(orders_repo_create_order_event(f->repo, 1, "tea", 1, "ev-p", &o, NULL, 0),
			 MN_OK);
	order_release(&o);
	events_prune_observe(&pr, 1); /* as if one were sent long ago: the store is asked */
	assert_int_equal(events_prune_step(&pr, test_outbox(f->repo), 1, INT64_MAX / 2, 1000, &pruned, NULL, 0),
			 MN_OK);
	assert_int_equal(pruned, 0);
	assert_int_equal(stats(f->repo).pending, 1);
}

/* ---- the publisher against a fake broker (events/broker.h) ------------ */

/* What the fake broker does with the k-th message published (counted over
 * the whole test, reconnections included); past the script: ACK. */
enum outcome {
	ACK,	      /* basic.ack of its tag */
	NACK,	      /* basic.nack of its tag */
	RETURN,	      /* unroutable: basic.return with its message id, then its ack */
	LOST,	      /* the connection is gone before its confirm: nothing more
			 is confirmed on it, and the wait ends "connection closed" */
	PUBLISH_FAILS /* basic.publish itself fails (the socket is gone) */
};

#define SCRIPT_MAX 64
#define QUEUE_MAX  256
#define POLL_MS	   5000

enum qkind { Q_ACK, Q_NACK, Q_RETURN, Q_CLOSED };

struct qframe {
	enum qkind kind;
	uint64_t tag;
	char message_id[40];
};

struct fake_broker {
	struct events_broker ops; /* pass &fb->ops */
	pthread_mutex_t lock;
	enum outcome script[SCRIPT_MAX];
	unsigned max_opens; /* opens past this many are refused */
	unsigned opens, refused_opens, closes, logins;
	unsigned published;	  /* messages, over all connections */
	char ids[SCRIPT_MAX][40]; /* their message ids, in order */
	char queue_name[64];	  /* of the last publish */
	/* the connection open now */
	bool open, dead;
	uint64_t next_tag;
	struct qframe q[QUEUE_MAX];
	size_t q_head, q_tail;
	/* the decoded methods handed out (valid until the next wait_frame) */
	amqp_basic_ack_t ack;
	amqp_basic_nack_t nack;
	amqp_basic_return_t ret;
	char returned_id[40];
};

static amqp_rpc_reply_t reply_normal(void)
{
	return (amqp_rpc_reply_t){.reply_type = AMQP_RESPONSE_NORMAL};
}

static int fb_open(void *ctx, const char *host, int port, const struct timeval *connect_tv,
		   const struct timeval *call_tv, amqp_connection_state_t *conn, int *fd)
{
	struct fake_broker *fb = ctx;
	int rc = AMQP_STATUS_OK;

	(void)connect_tv;
	(void)call_tv;
	*fd = -1;
	*conn = NULL;
	pthread_mutex_lock(&fb->lock);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 5672);
	assert_false(fb->open); /* one connection at a time */
	if (fb->opens >= fb->max_opens) {
		fb->refused_opens++;
		rc = AMQP_STATUS_SOCKET_ERROR;
	} else {
		fb->opens++;
		fb->open = true;
		fb->dead = false;
		fb->next_tag = 1;
		fb->q_head = fb->q_tail = 0;
		*conn = (amqp_connection_state_t)fb;
	}
	pthread_mutex_unlock(&fb->lock);
	return rc;
}

static amqp_rpc_reply_t fb_login(void *ctx, amqp_connection_state_t conn, const char *vhost,
				 const char *user, const char *password)
{
	struct fake_broker *fb = ctx;

	assert_ptr_equal(conn, fb);
	assert_string_equal(vhost, "/");
	assert_string_equal(user, "guest");
	assert_string_equal(password, "guest-secret");
	pthread_mutex_lock(&fb->lock);
	fb->logins++;
	pthread_mutex_unlock(&fb->lock);
	return reply_normal();
}

static amqp_rpc_reply_t fb_rpc(void *ctx, amqp_connection_state_t conn, amqp_channel_t channel)
{
	assert_ptr_equal(conn, ctx);
	assert_int_equal(channel, 1);
	return reply_normal();
}

static amqp_rpc_reply_t fb_declare(void *ctx, amqp_connection_state_t conn, amqp_channel_t channel,
				   const char *queue)
{
	assert_string_equal(queue, "events");
	return fb_rpc(ctx, conn, channel);
}

static void push(struct fake_broker *fb, enum qkind kind, uint64_t tag, const char *id)
{
	struct qframe *f;

	assert_true(fb->q_tail < QUEUE_MAX);
	f = &fb->q[fb->q_tail++];
	f->kind = kind;
	f->tag = tag;
	snprintf(f->message_id, sizeof(f->message_id), "%s", id ? id : "");
}

static int fb_publish(void *ctx, amqp_connection_state_t conn, amqp_channel_t channel,
		      const char *queue, const amqp_basic_properties_t *props, const char *body)
{
	struct fake_broker *fb = ctx;
	enum outcome o;
	char id[40];
	uint64_t tag;
	int rc = AMQP_STATUS_OK;

	assert_ptr_equal(conn, fb);
	assert_int_equal(channel, 1);
	assert_non_null(body);
	assert_true(props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
	assert_int_equal(props->delivery_mode, 2); /* persistent */
	snprintf(id, sizeof(id), "%.*s", (int)props->message_id.len,
		 (const char *)props->message_id.bytes);
	pthread_mutex_lock(&fb->lock);
	snprintf(fb->queue_name, sizeof(fb->queue_name), "%s", queue);
	assert_true(fb->published < SCRIPT_MAX);
	o = fb->script[fb->published];
	snprintf(fb->ids[fb->published++], sizeof(fb->ids[0]), "%s", id);
	tag = fb->next_tag++;
	if (o == PUBLISH_FAILS) {
		fb->dead = true;
		rc = AMQP_STATUS_SOCKET_ERROR;
	} else if (fb->dead) {
		/* written into a socket whose peer is gone: no answer ever */
	} else if (o == LOST) {
		fb->dead = true;
		push(fb, Q_CLOSED, 0, NULL);
	} else if (o == NACK) {
		push(fb, Q_NACK, tag, NULL);
	} else {
		if (o == RETURN)
			push(fb, Q_RETURN, tag, id);
		push(fb, Q_ACK, tag, NULL);
	}
	pthread_mutex_unlock(&fb->lock);
	return rc;
}

static int fb_wait_frame(void *ctx, amqp_connection_state_t conn, amqp_frame_t *frame,
			 struct timeval *tv)
{
	struct fake_broker *fb = ctx;
	struct qframe f;

	(void)tv;
	assert_ptr_equal(conn, fb);
	pthread_mutex_lock(&fb->lock);
	if (fb->q_head == fb->q_tail) {
		pthread_mutex_unlock(&fb->lock);
		usleep(1000); /* nothing yet: the publisher's deadline decides */
		return AMQP_STATUS_TIMEOUT;
	}
	f = fb->q[fb->q_head++];
	memset(frame, 0, sizeof(*frame));
	frame->frame_type = AMQP_FRAME_METHOD;
	frame->channel = 1;
	switch (f.kind) {
	case Q_ACK:
		fb->ack = (amqp_basic_ack_t){.delivery_tag = f.tag, .multiple = 0};
		frame->payload.method.id = AMQP_BASIC_ACK_METHOD;
		frame->payload.method.decoded = &fb->ack;
		break;
	case Q_NACK:
		fb->nack = (amqp_basic_nack_t){.delivery_tag = f.tag, .requeue = 0};
		frame->payload.method.id = AMQP_BASIC_NACK_METHOD;
		frame->payload.method.decoded = &fb->nack;
		break;
	case Q_RETURN:
		fb->ret = (amqp_basic_return_t){.reply_code = AMQP_NO_ROUTE,
						.reply_text = amqp_cstring_bytes("NO_ROUTE")};
		snprintf(fb->returned_id, sizeof(fb->returned_id), "%s", f.message_id);
		frame->payload.method.id = AMQP_BASIC_RETURN_METHOD;
		frame->payload.method.decoded = &fb->ret;
		break;
	case Q_CLOSED: pthread_mutex_unlock(&fb->lock); return AMQP_STATUS_CONNECTION_CLOSED;
	}
	pthread_mutex_unlock(&fb->lock);
	return AMQP_STATUS_OK;
}

static amqp_rpc_reply_t fb_read_message(void *ctx, amqp_connection_state_t conn,
					amqp_channel_t channel, amqp_message_t *msg)
{
	struct fake_broker *fb = ctx;

	assert_ptr_equal(conn, fb);
	assert_int_equal(channel, 1);
	memset(msg, 0, sizeof(*msg));
	msg->properties._flags = AMQP_BASIC_MESSAGE_ID_FLAG;
	msg->properties.message_id = amqp_cstring_bytes(fb->returned_id);
	return reply_normal();
}

static void fb_destroy_message(void *ctx, amqp_message_t *msg)
{
	(void)ctx;
	(void)msg;
}

static void fb_close(void *ctx, amqp_connection_state_t conn)
{
	struct fake_broker *fb = ctx;

	assert_ptr_equal(conn, fb);
	pthread_mutex_lock(&fb->lock);
	assert_true(fb->open);
	fb->open = false;
	fb->closes++;
	pthread_mutex_unlock(&fb->lock);
}

static struct fake_broker *fake_broker_create(void)
{
	struct fake_broker *fb = calloc(1, sizeof(*fb));

	assert_non_null(fb);
	fb->ops = (struct events_broker){
		.open = fb_open,
		.login = fb_login,
		.channel_open = fb_rpc,
		.confirm_select = fb_rpc,
		.queue_declare = fb_declare,
		.publish = fb_publish,
		.wait_frame = fb_wait_frame,
		.read_message = fb_read_message,
		.destroy_message = fb_destroy_message,
		.close = fb_close,
		.ctx = fb,
	};
	fb->max_opens = 1;
	pthread_mutex_init(&fb->lock, NULL);
	return fb;
}

static unsigned fb_read(struct fake_broker *fb, const unsigned *v)
{
	unsigned n;

	pthread_mutex_lock(&fb->lock);
	n = *v;
	pthread_mutex_unlock(&fb->lock);
	return n;
}

/* Waits (real time, bounded) until *v reaches n. */
static bool fb_wait(struct fake_broker *fb, const unsigned *v, unsigned n)
{
	uint64_t end = clock_monotonic_ms() + POLL_MS;

	while (fb_read(fb, v) < n && clock_monotonic_ms() < end)
		usleep(1000);
	return fb_read(fb, v) >= n;
}

static void fb_allow_opens(struct fake_broker *fb, unsigned n)
{
	pthread_mutex_lock(&fb->lock);
	fb->max_opens = n;
	pthread_mutex_unlock(&fb->lock);
}

/* The message ids published, joined by ','. */
static void fb_published(struct fake_broker *fb, char *out, size_t outlen)
{
	size_t pos = 0;

	out[0] = '\0';
	pthread_mutex_lock(&fb->lock);
	for (unsigned i = 0; i < fb->published && pos < outlen; i++)
		pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "", fb->ids[i]);
	pthread_mutex_unlock(&fb->lock);
}

static void broker_settings(void *ctx, struct events_settings *out)
{
	(void)ctx;
	out->enabled = true;
	snprintf(out->broker_address, sizeof(out->broker_address), "127.0.0.1:5672");
	snprintf(out->vhost, sizeof(out->vhost), "/");
	snprintf(out->user, sizeof(out->user), "guest");
	snprintf(out->password, sizeof(out->password), "guest-secret");
	snprintf(out->queue, sizeof(out->queue), "events");
	out->batch_size = 4;
	out->retention_ms = 3600000;
}

/* n order events in the outbox: ev-0 .. ev-(n-1). */
static void events_stored(struct fixture *f, size_t n)
{
	struct order o;
	char event_id[32];

	order_init(&o);
	for (size_t i = 0; i < n; i++) {
		snprintf(event_id, sizeof(event_id), "ev-%lld", (long long)f->next_event++);
		assert_int_equal(
			orders_repo_create_order_event(f->repo, 1, "tea", 1, event_id, &o, NULL, 0),
			MN_OK);
	}
	order_release(&o);
}

/* The event ids still pending in the outbox, joined by ','. */
static void pending_ids(struct fixture *f, char *out, size_t outlen)
{
	struct outbox_event *v;
	size_t n, pos = 0;

	assert_int_equal(outbox_pending(test_outbox(f->repo), 100, &v, &n, NULL, 0), MN_OK);
	out[0] = '\0';
	for (size_t i = 0; i < n && pos < outlen; i++)
		pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "",
					v[i].event_id);
	outbox_events_free(v, n);
}

/* A publisher on the fixture's outbox and the fake broker, its metrics in
 * 'm' (may be NULL). */
static struct events_publisher *publisher_on(struct fixture *f, struct fake_broker *fb,
					     struct metrics *m)
{
	struct events_publisher_opts o = {
		.source = test_outbox(f->repo),
		.settings = broker_settings,
		.broker = &fb->ops,
	};
	struct events_publisher *p;

	if (m)
		assert_int_equal(events_metrics_register(&o, m), MN_OK);
	p = events_publisher_start(&o);
	assert_non_null(p);
	return p;
}

/* The outcome of one batch, seen while the broker refuses a second
 * connection, then after it takes one: the script's first four messages
 * (batch_size 4 of 6 stored), what is still pending after that batch, its
 * counters, and every message published in the end. */
struct run {
	enum outcome script[8];
	const char *pending_after;   /* after the batch */
	uint64_t confirmed, failed;  /* after the batch */
	const char *error_has;	     /* in last_error after the batch */
	const char *published_after; /* once a second connection is allowed */
};

static void run_batch(struct fixture *f, const struct run *r)
{
	struct fake_broker *fb = fake_broker_create();
	struct events_publisher *p;
	struct events_status st;
	char got[512];
	int log = logcap_start(MN_LOG_INFO);

	memcpy(fb->script, r->script, sizeof(r->script));
	events_stored(f, 6);
	p = publisher_on(f, fb, NULL);
	/* a failed batch closes the connection: the next open is refused,
	 * so the outbox stays as the batch left it */
	assert_true(fb_wait(fb, &fb->refused_opens, 1));
	pending_ids(f, got, sizeof(got));
	assert_string_equal(got, r->pending_after);
	events_publisher_status(p, &st);
	assert_int_equal(st.confirmed, r->confirmed);
	assert_int_equal(st.failed, r->failed);
	assert_false(st.connected);
	/* the batch's failure is logged once; the refused connection since
	 * is the last error */
	assert_int_equal(logcap_count(log, r->error_has), 1);
	assert_string_equal(st.last_error, "broker 127.0.0.1:5672: cannot connect");
	assert_int_equal(fb_read(fb, &fb->closes), 1);

	/* the broker takes a new connection: the rest go, in order */
	fb_allow_opens(fb, 2);
	assert_true(fb_wait(fb, &fb->published, (unsigned)(strlen(r->published_after) + 1) / 5));
	{
		uint64_t end = clock_monotonic_ms() + POLL_MS;

		do {
			pending_ids(f, got, sizeof(got));
		} while (got[0] && clock_monotonic_ms() < end && usleep(1000) == 0);
	}
	assert_string_equal(got, "");
	fb_published(fb, got, sizeof(got));
	assert_string_equal(got, r->published_after);
	events_publisher_stop(p);
	assert_int_equal(fb_read(fb, &fb->opens), 2);
	assert_int_equal(fb_read(fb, &fb->closes), 2);
	assert_int_equal(logcap_count(log, "info  [events] publishing to 127.0.0.1:5672 again"), 1);
	logcap_stop(log);
	pthread_mutex_destroy(&fb->lock);
	free(fb);
}

/* Everything confirmed: batch after batch, in outbox order, each marked
 * sent, over one connection; counted confirmed (metric and status). */
static void test_broker_confirms_all(void **state)
{
	struct fixture *f = *state;
	struct fake_broker *fb = fake_broker_create();
	struct metrics *m = metrics_create();
	struct events_publisher *p;
	struct events_status st;
	struct buf text;
	char got[512];
	int log = logcap_start(MN_LOG_INFO);
	uint64_t end = clock_monotonic_ms() + POLL_MS;

	assert_non_null(m);
	events_stored(f, 6);
	p = publisher_on(f, fb, m);
	assert_true(fb_wait(fb, &fb->published, 6));
	do {
		events_publisher_status(p, &st);
	} while (st.confirmed < 6 && clock_monotonic_ms() < end && usleep(1000) == 0);
	assert_int_equal(st.confirmed, 6);
	assert_int_equal(st.failed, 0);
	assert_true(st.connected);
	assert_string_equal(st.broker, "127.0.0.1:5672");
	assert_string_equal(st.last_error, "");
	pending_ids(f, got, sizeof(got));
	assert_string_equal(got, "");
	fb_published(fb, got, sizeof(got));
	assert_string_equal(got, "ev-0,ev-1,ev-2,ev-3,ev-4,ev-5");
	assert_int_equal(stats(f->repo).sent, 6);
	buf_init(&text, 1 << 20);
	assert_int_equal(metrics_render(m, &text), MN_OK);
	assert_non_null(
		strstr(text.data, "\nmeshnode_events_published_total{result=\"confirmed\"} 6\n"));
	buf_release(&text);
	events_publisher_stop(p);
	assert_int_equal(fb_read(fb, &fb->opens), 1);
	assert_int_equal(fb_read(fb, &fb->closes), 1);
	assert_int_equal(fb_read(fb, &fb->logins), 1);
	assert_int_equal(logcap_count(log,
				      "info  [events] connected to the broker at 127.0.0.1:5672 "
				      "(vhost '/', queue 'events', durable, publisher confirms)"),
			 1);
	assert_int_equal(logcap_count(log, "warn  "), 0);
	logcap_stop(log);
	metrics_destroy(m);
	pthread_mutex_destroy(&fb->lock);
	free(fb);
}

/* Half a batch confirmed, then the connection lost: the two confirmed are
 * sent, the two after them stay pending (unconfirmed) and go again, in
 * order, after the reconnection. */
static void test_broker_half_confirmed_then_lost(void **state)
{
	run_batch(*state,
		  &(struct run){
			  .script = {ACK, ACK, LOST},
			  .pending_after = "ev-2,ev-3,ev-4,ev-5",
			  .confirmed = 2,
			  .failed = 2,
			  .error_has = "broker 127.0.0.1:5672: connection closed unexpectedly",
			  .published_after = "ev-0,ev-1,ev-2,ev-3,ev-2,ev-3,ev-4,ev-5",
		  });
}

/* A nack of the second: only the first is sent; the second (refused) and
 * those after it (confirmed, but after a refused one) go again. */
static void test_broker_nack(void **state)
{
	run_batch(*state,
		  &(struct run){
			  .script = {ACK, NACK, ACK, ACK},
			  .pending_after = "ev-1,ev-2,ev-3,ev-4,ev-5",
			  .confirmed = 1,
			  .failed = 3,
			  .error_has = "broker 127.0.0.1:5672 did not take 3 of 4 events (nack "
				       "or return); they go again",
			  .published_after = "ev-0,ev-1,ev-2,ev-3,ev-1,ev-2,ev-3,ev-4,ev-5",
		  });
}

/* The third returned (unroutable), then acked as RabbitMQ does: the first
 * two are sent, the third and fourth go again. */
static void test_broker_return(void **state)
{
	run_batch(*state,
		  &(struct run){
			  .script = {ACK, ACK, RETURN, ACK},
			  .pending_after = "ev-2,ev-3,ev-4,ev-5",
			  .confirmed = 2,
			  .failed = 2,
			  .error_has = "broker 127.0.0.1:5672 did not take 2 of 4 events (nack "
				       "or return); they go again",
			  .published_after = "ev-0,ev-1,ev-2,ev-3,ev-2,ev-3,ev-4,ev-5",
		  });
}

/* A publish that fails (the socket gone) mid-batch: none of the batch is
 * marked sent, all four go again. */
static void test_broker_publish_fails(void **state)
{
	run_batch(*state,
		  &(struct run){
			  .script = {ACK, ACK, PUBLISH_FAILS},
			  .pending_after = "ev-0,ev-1,ev-2,ev-3,ev-4,ev-5",
			  .confirmed = 0,
			  .failed = 4,
			  .error_has = "broker 127.0.0.1:5672: publish: a socket error occurred",
			  .published_after = "ev-0,ev-1,ev-2,ev-0,ev-1,ev-2,ev-3,ev-4,ev-5",
		  });
}

#define BOTH(fn)                                                                                   \
	cmocka_unit_test_setup_teardown(fn, setup_memory, teardown),                               \
		cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_confirmed_prefix),
		BOTH(test_prune_backlog_in_bounded_batches),
		BOTH(test_prune_keeps_up_with_the_rate),
		BOTH(test_prune_none_while_nothing_due),
		BOTH(test_prune_never_pending),
		cmocka_unit_test_setup_teardown(test_broker_confirms_all, setup_memory, teardown),
		cmocka_unit_test_setup_teardown(test_broker_half_confirmed_then_lost, setup_memory,
						teardown),
		cmocka_unit_test_setup_teardown(test_broker_nack, setup_memory, teardown),
		cmocka_unit_test_setup_teardown(test_broker_return, setup_memory, teardown),
		cmocka_unit_test_setup_teardown(test_broker_publish_fails, setup_memory, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
