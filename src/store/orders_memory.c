/* In-memory orders repository: an array ordered by id (ids only grow and
 * orders are never deleted, so appends keep it sorted) under a read-write
 * lock. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/types.h>

#include "store/orders_repo.h"
#include "core/array.h"

struct memory_repo {
	struct orders_repo base;
	pthread_rwlock_t lock;
	struct order *orders;
	size_t n;
	size_t alloc;
	int64_t next_id;
};

/* Index of 'id', or -1. Called with the lock held. */
static ssize_t find(const struct memory_repo *m, int64_t id)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->orders[mid].id == id)
			return (ssize_t)mid;
		if (m->orders[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static enum mn_err mem_create(struct orders_repo *r, int64_t user_id, const char *product,
			      int64_t quantity, struct order *out, char *errbuf, size_t errlen)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err;
	struct order o;

	(void)errbuf; /* this store fails only when out of memory */
	(void)errlen;
	order_init(&o);
	pthread_rwlock_wrlock(&m->lock);
	if (!array_reserve(&m->orders, &m->alloc, m->n, sizeof(*m->orders), 64)) {
		err = MN_NOMEM;
		goto out_unlock;
	}
	err = order_set(&o, m->next_id, user_id, product, quantity);
	if (err != MN_OK)
		goto out_unlock;
	err = order_set(out, o.id, o.user_id, o.product, o.quantity);
	if (err != MN_OK) {
		order_release(&o);
		goto out_unlock;
	}
	m->orders[m->n++] = o;
	m->next_id++;
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return err;
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

static enum mn_err mem_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			    size_t *n)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err = MN_OK;
	size_t count = 0;

	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&m->lock);
	if (offset < m->n)
		count = m->n - offset < limit ? m->n - offset : limit;
	if (count == 0)
		goto out_unlock;
	*out = calloc(count, sizeof(**out));
	if (*out == NULL) {
		err = MN_NOMEM;
		goto out_unlock;
	}
	for (size_t i = 0; i < count; i++) {
		const struct order *o = &m->orders[offset + i];

		err = order_set(&(*out)[i], o->id, o->user_id, o->product, o->quantity);
		if (err != MN_OK) {
			order_list_free(*out, i);
			*out = NULL;
			goto out_unlock;
		}
	}
	*n = count;
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static enum mn_err mem_ping(struct orders_repo *r, char *err, size_t errlen)
{
	(void)r;
	(void)err;
	(void)errlen;
	return MN_OK;
}

static void mem_health(struct orders_repo *r, struct store_health *out)
{
	(void)r;
	*out = (struct store_health){.fault = STORE_FAULT_NONE};
}

static void mem_destroy(struct orders_repo *r)
{
	struct memory_repo *m = (struct memory_repo *)r;

	order_list_free(m->orders, m->n);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static const struct orders_repo_ops memory_ops = {
	mem_create, mem_get, mem_list, mem_ping, mem_health, mem_destroy,
};

struct orders_repo *orders_repo_memory_create(void)
{
	struct memory_repo *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->base.ops = &memory_ops;
	m->next_id = 1;
	pthread_rwlock_init(&m->lock, NULL);
	return &m->base;
}
