#include "events/publisher.h"

#include <amqp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "consul/health.h"
#include "events/broker.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"

#define CHANNEL 1
#define CONNECT_TIMEOUT_S 2
/* An RPC (login, declare) or a batch's confirms: past it the broker is
 * taken for gone and the connection closed. Also the socket's send
 * timeout: a broker that stops reading (a memory alarm) cannot hold the
 * thread longer. */
#define CALL_TIMEOUT_S 5
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
/* With nothing to send the outbox is looked at this often (a stored
 * event wakes the thread at once: events_publisher_notify). */
#define IDLE_MS 250
#define STATS_EVERY_MS 1000

struct events_publisher {
	struct outbox *outbox;
	struct resolver *resolver;
	void (*settings)(void *ctx, struct events_settings *out);
	void *ctx;
	struct metric_family *m_published, *m_outbox, *m_oldest, *m_pruned, *m_oldest_sent;

	pthread_mutex_t lock;
	struct worker worker;        /* the thread; a notify is its wake */
	struct events_status status; /* lock */
	int login_fd;                /* lock; the socket while connecting, else -1 */

	/* the publisher's thread only */
	const struct events_broker *broker_ops;
	amqp_connection_state_t conn;
	struct events_settings cur;  /* what conn was opened with */
	char broker[300];
	uint64_t next_tag;           /* the channel's next delivery tag */
	unsigned rr;                 /* round robin over broker instances */
	struct backoff backoff;
	uint64_t retry_at, stats_at;
	struct events_prune prune;
	bool failing;                /* the last round failed: log recovery once */
	bool prune_failing;
	char logged[256];            /* the error last logged in this streak */
};

size_t events_confirmed_prefix(const bool *acked, const bool *failed, size_t n)
{
	size_t i = 0;

	while (i < n && acked[i] && !failed[i])
		i++;
	return i;
}

/* ---- status --------------------------------------------------------------- */

static void set_error(struct events_publisher *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* What a failure says without the broker it names: retries that go round
 * the broker's instances failing the same way are one reason. */
static const char *error_reason(const char *msg)
{
	const char *colon = strstr(msg, ": ");

	return strncmp(msg, "broker ", 7) == 0 && colon ? colon + 2 : msg;
}

/* Records the round's failure; logged when it starts a streak (a broker
 * down for an hour is one warning and one recovery line, not thousands). */
static void set_error(struct events_publisher *p, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&p->lock);
	snprintf(p->status.last_error, sizeof(p->status.last_error), "%s", msg);
	pthread_mutex_unlock(&p->lock);
	/* once per change: a retry that fails the same way says nothing new */
	if (!p->failing || strcmp(error_reason(msg), error_reason(p->logged)) != 0)
		log_warn("events", "%s; events wait in the outbox and go when the broker takes them",
			 msg);
	snprintf(p->logged, sizeof(p->logged), "%s", msg);
	p->failing = true;
}

static void set_ok(struct events_publisher *p)
{
	pthread_mutex_lock(&p->lock);
	p->status.last_error[0] = '\0';
	pthread_mutex_unlock(&p->lock);
	if (p->failing)
		log_info("events", "publishing to %s again", p->broker);
	p->failing = false;
	p->logged[0] = '\0';
}

static void count(struct events_publisher *p, const char *result, size_t n)
{
	if (n == 0)
		return;
	metric_add(p->m_published, (const char *[]){result}, (double)n);
	pthread_mutex_lock(&p->lock);
	if (strcmp(result, "confirmed") == 0)
		p->status.confirmed += n;
	else
		p->status.failed += n;
	pthread_mutex_unlock(&p->lock);
}

static void update_stats(struct events_publisher *p)
{
	struct outbox_stats st;
	int64_t now_ms = (int64_t)(clock_wall_seconds() * 1000);
	uint64_t age = 0, sent_age = 0;
	char err[256];

	if (outbox_stats(p->outbox, &st, err, sizeof(err)) != MN_OK)
		return;
	events_prune_observe(&p->prune, st.sent ? st.oldest_sent_ms : 0);
	if (st.pending && st.oldest_pending_ms && now_ms > st.oldest_pending_ms)
		age = (uint64_t)(now_ms - st.oldest_pending_ms);
	if (st.sent && st.oldest_sent_ms && now_ms > st.oldest_sent_ms)
		sent_age = (uint64_t)(now_ms - st.oldest_sent_ms);
	metric_set(p->m_outbox, (const char *[]){"pending"}, (double)st.pending);
	metric_set(p->m_outbox, (const char *[]){"sent"}, (double)st.sent);
	metric_set(p->m_oldest, NULL, (double)age / 1000.0);
	metric_set(p->m_oldest_sent, NULL, (double)sent_age / 1000.0);
	pthread_mutex_lock(&p->lock);
	p->status.pending = st.pending;
	p->status.sent = st.sent;
	p->status.oldest_pending_age_ms = age;
	p->status.oldest_sent_age_ms = sent_age;
	pthread_mutex_unlock(&p->lock);
}

/* ---- the connection -------------------------------------------------------- */

static void disconnect(struct events_publisher *p)
{
	if (p->conn == NULL)
		return;
	/* a clean close is a courtesy: the broker may be gone */
	p->broker_ops->close(p->broker_ops->ctx, p->conn);
	p->conn = NULL;
	pthread_mutex_lock(&p->lock);
	p->status.connected = false;
	pthread_mutex_unlock(&p->lock);
}

static bool rpc_ok(struct events_publisher *p, const char *what, amqp_rpc_reply_t r)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return true;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		set_error(p, "broker %s: %s: %s", p->broker, what, amqp_error_string2(r.library_error));
		return false;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD ||
		    r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			/* both carry reply_code and reply_text first */
			amqp_connection_close_t *c = r.reply.decoded;

			set_error(p, "broker %s: %s: %u %.*s", p->broker, what, c->reply_code,
				  (int)c->reply_text.len, (char *)c->reply_text.bytes);
		} else {
			set_error(p, "broker %s: %s: refused (method 0x%08x)", p->broker, what,
				  r.reply.id);
		}
		return false;
	default:
		set_error(p, "broker %s: %s: no answer", p->broker, what);
		return false;
	}
}

/* amqp_login's own reply (it does not set amqp_get_rpc_reply's): a
 * refused login says so, whether RabbitMQ answers 403 ACCESS_REFUSED or,
 * as it does with clients that do not announce
 * authentication_failure_close, closes the connection. */
static bool login_ok(struct events_publisher *p, amqp_rpc_reply_t r)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return true;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *c = r.reply.decoded;

			if (c->reply_code == AMQP_ACCESS_REFUSED)
				set_error(p, "broker %s: login: authentication refused (%u %.*s)",
					  p->broker, c->reply_code, (int)c->reply_text.len,
					  (char *)c->reply_text.bytes);
			else
				set_error(p, "broker %s: login: %u %.*s", p->broker, c->reply_code,
					  (int)c->reply_text.len, (char *)c->reply_text.bytes);
		} else {
			set_error(p, "broker %s: login: refused (method 0x%08x)", p->broker,
				  r.reply.id);
		}
		return false;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		if (r.library_error == AMQP_STATUS_CONNECTION_CLOSED ||
		    r.library_error == AMQP_STATUS_SOCKET_CLOSED)
			set_error(p, "broker %s: login: authentication refused (the broker closed "
				  "the connection)", p->broker);
		else if (r.library_error == AMQP_STATUS_TIMEOUT)
			set_error(p, "broker %s: login: no answer in %d s", p->broker,
				  CALL_TIMEOUT_S);
		else
			set_error(p, "broker %s: login: %s", p->broker,
				  amqp_error_string2(r.library_error));
		return false;
	default:
		set_error(p, "broker %s: login: no answer", p->broker);
		return false;
	}
}

/* The socket of a connection being opened, for events_publisher_stop()
 * to cut: a broker that accepts and never answers holds the login up to
 * its timeout, a stop must not wait for it. false when stopping. */
static bool login_fd_set(struct events_publisher *p, int fd)
{
	bool go_on;

	pthread_mutex_lock(&p->lock);
	go_on = !worker_stopping(&p->worker);
	p->login_fd = go_on ? fd : -1;
	pthread_mutex_unlock(&p->lock);
	return go_on;
}

/* Where the broker is: events.broker_address, else the next passing
 * instance of events.broker_service. */
static bool broker_pick(struct events_publisher *p, const struct events_settings *s, char *host,
			size_t hcap, int *port)
{
	const struct peer_snapshot *snap;
	char err[256];

	if (s->broker_address[0]) {
		const char *colon = strrchr(s->broker_address, ':');
		char *end;
		long v;

		if (colon == NULL || (size_t)(colon - s->broker_address) >= hcap)
			goto bad_address;
		v = strtol(colon + 1, &end, 10);
		if (*end || end == colon + 1 || v < 1 || v > 65535)
			goto bad_address;
		memcpy(host, s->broker_address, (size_t)(colon - s->broker_address));
		host[colon - s->broker_address] = '\0';
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			memmove(host, host + 1, strlen(host) - 2);
			host[strlen(host) - 2] = '\0';
		}
		if (!consul_host_valid(host))
			goto bad_address;
		*port = (int)v;
		return true;
	}
	if (p->resolver == NULL) {
		set_error(p, "no events.broker_address and no Consul to find '%s' in",
			  s->broker_service);
		return false;
	}
	if (resolver_get(p->resolver, s->broker_service, "", &snap, err, sizeof(err)) != MN_OK) {
		set_error(p, "cannot find the broker '%s' in Consul: %s", s->broker_service, err);
		return false;
	}
	if (snap->n == 0) {
		set_error(p, "no passing instance of '%s' in Consul", s->broker_service);
		resolver_put(snap);
		return false;
	}
	{
		const struct consul_instance *in = &snap->inst[p->rr++ % snap->n];

		snprintf(host, hcap, "%s", in->address);
		*port = in->port;
	}
	resolver_put(snap);
	return true;

bad_address:
	set_error(p, "events.broker_address '%s' is not host:port", s->broker_address);
	return false;
}

static bool connect_broker(struct events_publisher *p, const struct events_settings *s)
{
	struct timeval connect_tv = {CONNECT_TIMEOUT_S, 0}, call_tv = {CALL_TIMEOUT_S, 0};
	const struct events_broker *b = p->broker_ops;
	char host[256];
	int port, fd, rc;

	if (!broker_pick(p, s, host, sizeof(host), &port))
		return false;
	snprintf(p->broker, sizeof(p->broker), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
		 port);
	rc = b->open(b->ctx, host, port, &connect_tv, &call_tv, &p->conn, &fd);
	if (rc == AMQP_STATUS_NO_MEMORY) {
		set_error(p, "out of memory");
		goto fail;
	}
	if (rc != AMQP_STATUS_OK) {
		set_error(p, "broker %s: cannot connect", p->broker);
		goto fail;
	}
	if (!login_fd_set(p, fd))
		goto fail;
	if (!login_ok(p, b->login(b->ctx, p->conn, s->vhost, s->user, s->password)))
		goto fail;
	if (!rpc_ok(p, "channel.open", b->channel_open(b->ctx, p->conn, CHANNEL)))
		goto fail;
	if (!rpc_ok(p, "confirm.select", b->confirm_select(b->ctx, p->conn, CHANNEL)))
		goto fail;
	if (!rpc_ok(p, "queue.declare", b->queue_declare(b->ctx, p->conn, CHANNEL, s->queue)))
		goto fail;
	login_fd_set(p, -1);
	p->cur = *s;
	p->next_tag = 1;
	pthread_mutex_lock(&p->lock);
	p->status.connected = true;
	snprintf(p->status.broker, sizeof(p->status.broker), "%s", p->broker);
	pthread_mutex_unlock(&p->lock);
	log_info("events", "connected to the broker at %s (vhost '%s', queue '%s', durable, "
		 "publisher confirms)", p->broker, s->vhost, s->queue);
	set_ok(p);
	return true;

fail:
	login_fd_set(p, -1);
	disconnect(p);
	return false;
}

/* The connection was opened with other settings than those in force. */
static bool settings_changed(const struct events_settings *a, const struct events_settings *b)
{
	return strcmp(a->broker_service, b->broker_service) != 0 ||
	       strcmp(a->broker_address, b->broker_address) != 0 ||
	       strcmp(a->vhost, b->vhost) != 0 || strcmp(a->user, b->user) != 0 ||
	       strcmp(a->password, b->password) != 0 || strcmp(a->queue, b->queue) != 0;
}

/* ---- one batch ----------------------------------------------------------------- */

static size_t index_of_message(const struct outbox_event *v, size_t n, amqp_bytes_t id)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(v[i].event_id) == id.len && memcmp(v[i].event_id, id.bytes, id.len) == 0)
			return i;
	return n;
}

/* Marks tags up to 'tag' (or just 'tag') in 'flags'. */
static void mark_tags(bool *flags, size_t n, uint64_t first, uint64_t tag, bool multiple)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t t = first + i;

		if (t == tag || (multiple && t < tag))
			flags[i] = true;
	}
}

/* Waits for the confirms of the n messages from tag 'first' on. false
 * when the connection cannot be trusted any more (closed, or confirms
 * missing at the deadline). */
static bool wait_confirms(struct events_publisher *p, const struct outbox_event *v, size_t n,
			  uint64_t first, bool *acked, bool *failed)
{
	uint64_t deadline = clock_monotonic_ms() + CALL_TIMEOUT_S * 1000;
	const struct events_broker *b = p->broker_ops;
	size_t resolved = 0;

	while (resolved < n) {
		uint64_t now = clock_monotonic_ms();
		struct timeval tv;
		amqp_frame_t frame;
		int rc;

		if (now >= deadline) {
			set_error(p, "broker %s: %zu of %zu messages unconfirmed after %d s", p->broker,
				  n - resolved, n, CALL_TIMEOUT_S);
			return false;
		}
		tv.tv_sec = (time_t)((deadline - now) / 1000);
		tv.tv_usec = (suseconds_t)((deadline - now) % 1000 * 1000);
		rc = b->wait_frame(b->ctx, p->conn, &frame, &tv);
		if (rc == AMQP_STATUS_TIMEOUT)
			continue;
		if (rc != AMQP_STATUS_OK) {
			set_error(p, "broker %s: %s", p->broker, amqp_error_string2(rc));
			return false;
		}
		if (frame.frame_type != AMQP_FRAME_METHOD)
			continue;
		switch (frame.payload.method.id) {
		case AMQP_BASIC_ACK_METHOD: {
			amqp_basic_ack_t *a = frame.payload.method.decoded;

			mark_tags(acked, n, first, a->delivery_tag, a->multiple);
			break;
		}
		case AMQP_BASIC_NACK_METHOD: {
			amqp_basic_nack_t *a = frame.payload.method.decoded;

			mark_tags(failed, n, first, a->delivery_tag, a->multiple);
			mark_tags(acked, n, first, a->delivery_tag, a->multiple);
			break;
		}
		case AMQP_BASIC_RETURN_METHOD: {
			/* unroutable (the queue went away): its content follows,
			 * then its ack */
			amqp_message_t msg;
			size_t i;

			if (b->read_message(b->ctx, p->conn, frame.channel, &msg).reply_type !=
			    AMQP_RESPONSE_NORMAL) {
				set_error(p, "broker %s: a returned message could not be read",
					  p->broker);
				return false;
			}
			i = (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
				    ? index_of_message(v, n, msg.properties.message_id)
				    : n;
			if (i < n)
				failed[i] = true;
			b->destroy_message(b->ctx, &msg);
			break;
		}
		case AMQP_CHANNEL_CLOSE_METHOD:
		case AMQP_CONNECTION_CLOSE_METHOD: {
			amqp_channel_close_t *c = frame.payload.method.decoded;

			set_error(p, "broker %s closed the %s: %u %.*s", p->broker,
				  frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ? "channel"
										 : "connection",
				  c->reply_code, (int)c->reply_text.len, (char *)c->reply_text.bytes);
			return false;
		}
		default:
			break;
		}
		resolved = 0;
		for (size_t i = 0; i < n; i++)
			resolved += acked[i];
	}
	return true;
}

/* Publishes up to batch_size events; returns how many were sent (0 with
 * nothing to send or after a failure, which closed the connection). */
static size_t publish_batch(struct events_publisher *p, const struct events_settings *s)
{
	struct outbox_event *v = NULL;
	bool *acked = NULL, *failed = NULL, ok;
	size_t n = 0, sent = 0, unresolved;
	int64_t *ids = NULL;
	uint64_t first = p->next_tag;
	char err[256];

	if (outbox_pending(p->outbox, s->batch_size, &v, &n, err, sizeof(err)) != MN_OK) {
		set_error(p, "cannot read the outbox: %s", err);
		return 0;
	}
	if (n == 0)
		return 0;
	acked = calloc(n, sizeof(*acked));
	failed = calloc(n, sizeof(*failed));
	ids = calloc(n, sizeof(*ids));
	if (acked == NULL || failed == NULL || ids == NULL) {
		set_error(p, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		amqp_basic_properties_t props = {
			._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
				  AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
				  AMQP_BASIC_TIMESTAMP_FLAG,
			.content_type = amqp_cstring_bytes("application/json"),
			.delivery_mode = 2, /* persistent */
			.message_id = amqp_cstring_bytes(v[i].event_id),
			.type = amqp_cstring_bytes(v[i].type),
			.timestamp = (uint64_t)(v[i].created_ms / 1000),
		};
		int rc = p->broker_ops->publish(p->broker_ops->ctx, p->conn, CHANNEL, s->queue,
						&props, v[i].body);

		if (rc != AMQP_STATUS_OK) {
			set_error(p, "broker %s: publish: %s", p->broker, amqp_error_string2(rc));
			/* the tags of those that went out are still to be
			 * confirmed, but the connection is gone: all go again */
			disconnect(p);
			count(p, "unconfirmed", n);
			goto out;
		}
		p->next_tag++;
		ids[i] = v[i].id;
	}
	ok = wait_confirms(p, v, n, first, acked, failed);
	sent = events_confirmed_prefix(acked, failed, n);
	if (sent && outbox_mark_sent(p->outbox, ids, sent,
						 (int64_t)(clock_wall_seconds() * 1000), err,
						 sizeof(err)) != MN_OK) {
		/* confirmed but not marked: they go again, twice at worst */
		set_error(p, "cannot mark %zu events sent: %s", sent, err);
		sent = 0;
	}
	count(p, "confirmed", sent);
	unresolved = 0;
	for (size_t i = sent; i < n; i++) {
		if (failed[i])
			count(p, "refused", 1);
		else
			unresolved++;
	}
	count(p, "unconfirmed", unresolved);
	if (!ok || sent < n) {
		if (ok)
			set_error(p, "broker %s did not take %zu of %zu events (nack or return); "
				  "they go again", p->broker, n - sent, n);
		disconnect(p);
		sent = 0;
	}
out:
	free(acked);
	free(failed);
	free(ids);
	outbox_events_free(v, n);
	return sent;
}

/* ---- pruning ------------------------------------------------------------------ */

void events_prune_observe(struct events_prune *pr, int64_t oldest_sent_ms)
{
	pr->oldest_sent_ms = oldest_sent_ms;
}

enum mn_err events_prune_step(struct events_prune *pr, struct outbox *outbox, uint64_t now_ms,
			      int64_t wall_ms, uint64_t retention_ms, size_t *pruned, char *err,
			      size_t errlen)
{
	int64_t cutoff = wall_ms - (int64_t)retention_ms;
	enum mn_err e;

	*pruned = 0;
	if (now_ms < pr->next_ms)
		return MN_OK;
	/* nothing sent is known to be older than the retention: no DELETE */
	if (!pr->more && (pr->oldest_sent_ms == 0 || pr->oldest_sent_ms > cutoff))
		return MN_OK;
	e = outbox_prune(outbox, cutoff, EVENTS_PRUNE_BATCH, pruned, err, errlen);
	pr->total += *pruned;
	/* a full batch: more may be due, the next one as soon as the caller
	 * had its turn; otherwise none is older than the cutoff now, and the
	 * next statistics say when one is */
	pr->more = e == MN_OK && *pruned == EVENTS_PRUNE_BATCH;
	if (e == MN_OK && !pr->more)
		pr->oldest_sent_ms = 0;
	pr->next_ms = pr->more ? now_ms : now_ms + EVENTS_PRUNE_EVERY_MS;
	return e;
}

/* One batch when due; true when another is due at once. */
static bool prune(struct events_publisher *p, const struct events_settings *s)
{
	size_t pruned;
	char err[256];

	if (events_prune_step(&p->prune, p->outbox, clock_monotonic_ms(),
			      (int64_t)(clock_wall_seconds() * 1000), s->retention_ms, &pruned, err,
			      sizeof(err)) != MN_OK) {
		if (!p->prune_failing)
			log_warn("events", "cannot prune the outbox: %s", err);
		p->prune_failing = true;
		return false;
	}
	p->prune_failing = false;
	if (pruned) {
		metric_add(p->m_pruned, NULL, (double)pruned);
		pthread_mutex_lock(&p->lock);
		p->status.pruned = p->prune.total;
		pthread_mutex_unlock(&p->lock);
	}
	return p->prune.more;
}

/* ---- the thread -------------------------------------------------------------- */

/* Waits until 'ms' passed, a notify or stop. Returns false on stop. */
static bool wait_ms(struct events_publisher *p, uint64_t ms)
{
	bool go_on;

	pthread_mutex_lock(&p->lock);
	go_on = worker_wait_locked(&p->worker, ms, NULL, NULL) != WORKER_STOPPING;
	pthread_mutex_unlock(&p->lock);
	return go_on;
}

static void *publisher_main(void *arg)
{
	struct events_publisher *p = arg;
	struct events_settings s;

	for (;;) {
		uint64_t now = clock_monotonic_ms(), pause = IDLE_MS;

		memset(&s, 0, sizeof(s));
		p->settings(p->ctx, &s);
		pthread_mutex_lock(&p->lock);
		p->status.enabled = s.enabled;
		pthread_mutex_unlock(&p->lock);
		if (now >= p->stats_at) {
			update_stats(p);
			p->stats_at = now + STATS_EVERY_MS;
		}
		if (!s.enabled) {
			disconnect(p);
		} else {
			if (p->conn && settings_changed(&p->cur, &s)) {
				log_info("events", "the broker settings changed: reconnecting");
				disconnect(p);
			}
			if (p->conn == NULL && now >= p->retry_at && !connect_broker(p, &s))
				p->retry_at = now + backoff_next(&p->backoff);
			if (p->conn) {
				size_t sent = publish_batch(p, &s);

				if (p->conn == NULL) {
					p->retry_at = clock_monotonic_ms() + backoff_next(&p->backoff);
				} else {
					backoff_reset(&p->backoff);
					if (sent) {
						set_ok(p);
						pause = 0; /* more may wait */
					}
				}
			}
			if (p->conn == NULL && p->retry_at > clock_monotonic_ms())
				pause = p->retry_at - clock_monotonic_ms();
			/* pruning goes on with the broker away: it deletes only
			 * what was sent; batch after batch, a publish round and the
			 * store's other writers between two */
			if (prune(p, &s))
				pause = 0;
		}
		if (pause && !wait_ms(p, pause))
			break;
		if (worker_stopping(&p->worker))
			break;
	}
	disconnect(p);
	return NULL;
}

struct events_publisher *events_publisher_start(const struct events_publisher_opts *o)
{
	struct events_publisher *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->outbox = o->source;
	p->resolver = o->resolver;
	p->settings = o->settings;
	p->ctx = o->ctx;
	p->m_published = o->published;
	p->m_outbox = o->outbox;
	p->m_oldest = o->oldest;
	p->m_pruned = o->pruned;
	p->m_oldest_sent = o->oldest_sent;
	p->login_fd = -1;
	p->broker_ops = o->broker ? o->broker : &events_broker_rabbitmq;
	backoff_init(&p->backoff, BACKOFF_BASE_MS, BACKOFF_CAP_MS,
		     clock_monotonic_ns() ^ (uintptr_t)p);
	pthread_mutex_init(&p->lock, NULL);
	if (worker_init(&p->worker, &p->lock, NULL) != MN_OK)
		goto out_mutex;
	if (worker_start(&p->worker, publisher_main, p) != MN_OK)
		goto out_worker;
	return p;

out_worker:
	worker_release(&p->worker);
out_mutex:
	pthread_mutex_destroy(&p->lock);
	free(p);
	return NULL;
}

void events_publisher_notify(struct events_publisher *p)
{
	if (p == NULL)
		return;
	worker_wake(&p->worker);
}

void events_publisher_status(struct events_publisher *p, struct events_status *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->status;
	pthread_mutex_unlock(&p->lock);
}

void events_publisher_stop(struct events_publisher *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	worker_stop_locked(&p->worker);
	/* a login in progress ends now, not at its timeout; a batch in
	 * flight still gets its confirms (else it would go twice) */
	if (p->login_fd >= 0)
		shutdown(p->login_fd, SHUT_RDWR);
	pthread_mutex_unlock(&p->lock);
	worker_join(&p->worker, -1);
	worker_release(&p->worker);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
