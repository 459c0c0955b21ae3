/* In-memory orders repository: an array ordered by id (ids only grow and
 * orders are never deleted, so appends keep it sorted) under a read-write
 * lock, and the outbox beside it, also ordered by id (appends; pruning
 * keeps the order). */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/array.h"
#include "core/clock.h"
#include "store/drivers.h"
#include "store/memory_rows.h"

struct memory_event {
	struct outbox_event e;
	bool sent;
	int64_t sent_ms; /* when sent */
};

struct memory_repo {
	struct orders_repo base;
	struct outbox outbox; /* over the same tables */
	pthread_rwlock_t lock;
	struct order *orders;
	size_t n;
	size_t alloc;
	int64_t next_id;
	struct memory_event *events;
	size_t n_events;
	size_t alloc_events;
	int64_t next_event_id;
};

static struct memory_repo *outbox_repo(struct outbox *o)
{
	return (struct memory_repo *)((char *)o - offsetof(struct memory_repo, outbox));
}

/* Index of 'id', or -1. Called with the lock held. */
static ssize_t find(const struct memory_repo *m, int64_t id)
{
	return memory_rows_find(m->orders, m->n, sizeof(*m->orders), offsetof(struct order, id), id);
}

static bool event_id_taken(const struct memory_repo *m, const char *event_id)
{
	for (size_t i = 0; i < m->n_events; i++)
		if (strcmp(m->events[i].e.event_id, event_id) == 0)
			return true;
	return false;
}

static void event_release(struct outbox_event *e)
{
	free(e->event_id);
	free(e->type);
	free(e->body);
}

/* The event of the stored order 'o' into *out, every allocation made
 * before anything is stored so that the order and its event are kept both
 * or neither. */
static enum mn_err event_make(const char *event_id, const struct order *o, struct memory_event *out)
{
	*out = (struct memory_event){0};
	out->e.event_id = strdup(event_id);
	out->e.type = strdup("OrderCreated");
	out->e.body = order_created_json(o);
	out->e.created_ms = clock_wall_ms();
	if (out->e.event_id && out->e.type && out->e.body)
		return MN_OK;
	event_release(&out->e);
	return MN_NOMEM;
}

static enum mn_err mem_create(struct orders_repo *r, int64_t user_id, const char *product,
			      int64_t quantity, const char *event_id, struct order *out,
			      char *errbuf, size_t errlen)
{
	struct memory_repo *m = (struct memory_repo *)r;
	struct memory_event ev;
	enum mn_err err;
	struct order o, copy;

	order_init(&o);
	order_init(&copy);
	pthread_rwlock_wrlock(&m->lock);
	if (event_id && event_id_taken(m, event_id)) {
		err = mn_error(errbuf, errlen, MN_CONFLICT, "conflict");
		goto out_unlock;
	}
	if (!array_reserve(&m->orders, &m->alloc, m->n, sizeof(*m->orders), 64) ||
	    (event_id &&
	     !array_reserve(&m->events, &m->alloc_events, m->n_events, sizeof(*m->events), 64))) {
		err = mn_error(errbuf, errlen, MN_NOMEM, "internal error");
		goto out_unlock;
	}
	err = order_set(&o, m->next_id, user_id, product, quantity);
	if (err == MN_OK)
		err = order_set(&copy, o.id, o.user_id, o.product, o.quantity);
	if (err == MN_OK && event_id)
		err = event_make(event_id, &o, &ev);
	if (err != MN_OK) {
		order_release(&o);
		order_release(&copy);
		err = mn_error(errbuf, errlen, err, "internal error");
		goto out_unlock;
	}
	m->orders[m->n++] = o;
	m->next_id++;
	if (event_id) {
		ev.e.id = m->next_event_id++;
		m->events[m->n_events++] = ev;
	}
	order_release(out);
	*out = copy;
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static enum mn_err mem_outbox_pending(struct outbox *o, size_t limit,
				      struct outbox_event **out, size_t *n, char *errbuf,
				      size_t errlen)
{
	struct memory_repo *m = outbox_repo(o);
	struct outbox_event *v = NULL;
	enum mn_err err = MN_OK;
	size_t count = 0, pending = 0;

	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = 0; i < m->n_events && pending < limit; i++)
		pending += !m->events[i].sent;
	if (pending == 0)
		goto out_unlock;
	v = calloc(pending, sizeof(*v));
	if (v == NULL) {
		err = MN_NOMEM;
		goto out_unlock;
	}
	for (size_t i = 0; i < m->n_events && count < pending; i++) {
		const struct outbox_event *e = &m->events[i].e;
		struct outbox_event *d;

		if (m->events[i].sent)
			continue;
		/* counted first: a half-filled event is freed with the rest */
		d = &v[count++];
		d->id = e->id;
		d->created_ms = e->created_ms;
		d->event_id = strdup(e->event_id);
		d->type = strdup(e->type);
		d->body = strdup(e->body);
		if (d->event_id == NULL || d->type == NULL || d->body == NULL) {
			err = MN_NOMEM;
			break;
		}
	}
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	if (err != MN_OK) {
		outbox_events_free(v, count);
		return mn_error(errbuf, errlen, err, "internal error");
	}
	*out = v;
	*n = count;
	return MN_OK;
}

/* Index of the event 'id', or -1. Called with the lock held. */
static ssize_t event_find(const struct memory_repo *m, int64_t id)
{
	size_t lo = 0, hi = m->n_events;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->events[mid].e.id == id)
			return (ssize_t)mid;
		if (m->events[mid].e.id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static enum mn_err mem_outbox_mark_sent(struct outbox *o, const int64_t *ids, size_t n,
					int64_t now_ms, char *errbuf, size_t errlen)
{
	struct memory_repo *m = outbox_repo(o);

	(void)errbuf; /* nothing here can fail */
	(void)errlen;
	pthread_rwlock_wrlock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		ssize_t k = event_find(m, ids[i]);

		if (k >= 0 && !m->events[k].sent) {
			m->events[k].sent = true;
			m->events[k].sent_ms = now_ms;
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return MN_OK;
}

static enum mn_err mem_outbox_stats(struct outbox *o, struct outbox_stats *out, char *errbuf,
				    size_t errlen)
{
	struct memory_repo *m = outbox_repo(o);

	(void)errbuf;
	(void)errlen;
	*out = (struct outbox_stats){0};
	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = 0; i < m->n_events; i++) {
		if (m->events[i].sent) {
			if (out->sent++ == 0 || m->events[i].sent_ms < out->oldest_sent_ms)
				out->oldest_sent_ms = m->events[i].sent_ms;
			continue;
		}
		/* the first pending by id, as the SQL stores report it */
		if (out->pending++ == 0)
			out->oldest_pending_ms = m->events[i].e.created_ms;
	}
	pthread_rwlock_unlock(&m->lock);
	return MN_OK;
}

static enum mn_err mem_outbox_prune(struct outbox *o, int64_t sent_before_ms, size_t max_rows,
				    size_t *pruned, char *errbuf, size_t errlen)
{
	struct memory_repo *m = outbox_repo(o);
	size_t kept = 0, gone = 0;

	(void)errbuf;
	(void)errlen;
	pthread_rwlock_wrlock(&m->lock);
	/* one pass that keeps the id order: what stays slides down */
	for (size_t i = 0; i < m->n_events; i++) {
		struct memory_event *ev = &m->events[i];

		if (gone < max_rows && ev->sent && ev->sent_ms < sent_before_ms) {
			event_release(&ev->e);
			gone++;
			continue;
		}
		m->events[kept++] = *ev;
	}
	m->n_events = kept;
	pthread_rwlock_unlock(&m->lock);
	*pruned = gone;
	return MN_OK;
}

static enum mn_err mem_get(struct orders_repo *r, int64_t id, struct order *out)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err = MN_NOT_FOUND;
	ssize_t i;

	pthread_rwlock_rdlock(&m->lock);
	i = find(m, id);
	if (i >= 0) {
		const struct order *o = &m->orders[i];

		err = order_set(out, o->id, o->user_id, o->product, o->quantity);
	}
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static enum mn_err order_copy(void *dst, const void *src)
{
	const struct order *o = src;

	return order_set(dst, o->id, o->user_id, o->product, o->quantity);
}

static void orders_release(void *orders, size_t n)
{
	order_list_free(orders, n);
}

static enum mn_err mem_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			    size_t *n)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err;

	pthread_rwlock_rdlock(&m->lock);
	err = memory_rows_page(m->orders, m->n, sizeof(**out), limit, offset, order_copy, orders_release,
			       (void **)out, n);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static void mem_destroy(struct orders_repo *r)
{
	struct memory_repo *m = (struct memory_repo *)r;

	order_list_free(m->orders, m->n);
	for (size_t i = 0; i < m->n_events; i++)
		event_release(&m->events[i].e);
	free(m->events);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static const struct orders_repo_ops memory_ops = {
	.create = mem_create,
	.get = mem_get,
	.list = mem_list,
	.destroy = mem_destroy,
};

static const struct outbox_ops mem_outbox_ops = {
	.pending = mem_outbox_pending,
	.mark_sent = mem_outbox_mark_sent,
	.stats = mem_outbox_stats,
	.prune = mem_outbox_prune,
};

struct orders_repo *orders_repo_memory_create(struct outbox **outbox)
{
	struct memory_repo *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->base.ops = &memory_ops;
	m->outbox.ops = &mem_outbox_ops;
	if (outbox)
		*outbox = &m->outbox;
	m->next_id = 1;
	m->next_event_id = 1;
	pthread_rwlock_init(&m->lock, NULL);
	return &m->base;
}
