/* In-memory users repository: an array ordered by id (ids only grow, so
 * appends keep it sorted) and an index of the emails, under a read-write
 * lock. */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/array.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/text.h"
#include "store/drivers.h"
#include "store/memory_rows.h"

/* A place of the email index: the hash of an email folded to lower case,
 * and the id of its user (EMAIL_FREE, EMAIL_GONE). */
struct email_slot {
	uint64_t hash;
	int64_t id;
};

#define EMAIL_FREE	0
#define EMAIL_GONE	(-1)
#define EMAIL_FIRST_CAP 64

struct memory_repo {
	struct users_repo base;
	pthread_rwlock_t lock;
	struct user *users;
	size_t n;
	size_t alloc;
	int64_t next_id;
	/* The emails, so that a create or an update checks one in O(1)
	 * (a scan of every user made POST /users quadratic: 4,100 req/s
	 * after a few seconds of load, issue 14). Open addressing, at most
	 * half full counting the places of removed emails. */
	struct email_slot *emails;
	size_t emails_cap;  /* a power of two, or 0 */
	size_t emails_used; /* places not EMAIL_FREE */
	size_t emails_live; /* places holding an email */
	uint64_t seed;
};

/* Index of 'id', or -1. Called with the lock held. */
static ssize_t find(const struct memory_repo *m, int64_t id)
{
	return memory_rows_find(m->users, m->n, sizeof(*m->users), offsetof(struct user, id), id);
}

/* FNV-1a of the email with ASCII letters folded to lower case (as the
 * SQLite store compares them), seeded per store, its low bits mixed. */
static uint64_t email_hash(const struct memory_repo *m, const char *email)
{
	return hash_mix(hash_str_nocase(HASH_START ^ m->seed, email));
}

/* The place of the user 'id' with 'email' (hash h), or, with id 0, of any
 * user with that email other than 'self'; NULL when none. Lock held. */
static struct email_slot *email_place(const struct memory_repo *m, const char *email, uint64_t h,
				      int64_t id, int64_t self)
{
	size_t mask = m->emails_cap - 1;

	if (m->emails_cap == 0)
		return NULL;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct email_slot *e = &m->emails[i];
		ssize_t k;

		if (e->id == EMAIL_FREE)
			return NULL;
		if (e->id == EMAIL_GONE || e->hash != h)
			continue;
		if (id != 0) {
			if (e->id == id)
				return e;
			continue;
		}
		if (e->id == self)
			continue;
		k = find(m, e->id);
		if (k >= 0 && m->users[k].email && text_equal_nocase(m->users[k].email, email))
			return e;
	}
}

/* true when another user than 'self' has this email. Lock held. */
static bool email_taken(const struct memory_repo *m, const char *email, int64_t self)
{
	return email && email_place(m, email, email_hash(m, email), 0, self) != NULL;
}

/* Moves the live places to a table of 'cap' places; false when out of
 * memory (the index is then unchanged). */
static bool email_resize(struct memory_repo *m, size_t cap)
{
	struct email_slot *t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return false;
	for (size_t i = 0; i < m->emails_cap; i++) {
		const struct email_slot *e = &m->emails[i];
		size_t j;

		if (e->id == EMAIL_FREE || e->id == EMAIL_GONE)
			continue;
		for (j = (size_t)e->hash & (cap - 1); t[j].id != EMAIL_FREE;
		     j = (j + 1) & (cap - 1))
			;
		t[j] = *e;
	}
	free(m->emails);
	m->emails = t;
	m->emails_cap = cap;
	m->emails_used = m->emails_live;
	return true;
}

/* Indexes user 'id''s email (none for NULL); false when out of memory.
 * Lock held. */
static bool email_add(struct memory_repo *m, const char *email, int64_t id)
{
	uint64_t h;
	size_t i;

	if (email == NULL)
		return true;
	if ((m->emails_used + 1) * 2 > m->emails_cap) {
		size_t cap = m->emails_cap ? m->emails_cap : EMAIL_FIRST_CAP;

		while ((m->emails_live + 1) * 4 > cap) /* at most a quarter full after */
			cap *= 2;
		if (!email_resize(m, cap))
			return false;
	}
	h = email_hash(m, email);
	for (i = (size_t)h & (m->emails_cap - 1); m->emails[i].id > 0;
	     i = (i + 1) & (m->emails_cap - 1))
		;
	if (m->emails[i].id == EMAIL_FREE)
		m->emails_used++;
	m->emails[i] = (struct email_slot){h, id};
	m->emails_live++;
	return true;
}

static void email_remove(struct memory_repo *m, const char *email, int64_t id)
{
	struct email_slot *e;

	if (email == NULL)
		return;
	e = email_place(m, email, email_hash(m, email), id, 0);
	if (e) {
		e->id = EMAIL_GONE;
		m->emails_live--;
	}
}

static enum mn_err mem_create(struct users_repo *r, const char *name, const char *email,
			      struct user *out, char *errbuf, size_t errlen)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err = MN_OK;
	struct user u;

	(void)errbuf; /* this store fails only when out of memory */
	(void)errlen;
	user_init(&u);
	pthread_rwlock_wrlock(&m->lock);
	if (email_taken(m, email, 0)) {
		err = MN_CONFLICT;
		goto out_unlock;
	}
	if (!array_reserve(&m->users, &m->alloc, m->n, sizeof(*m->users), 64)) {
		err = MN_NOMEM;
		goto out_unlock;
	}
	err = user_set(&u, m->next_id, name, email);
	if (err != MN_OK)
		goto out_unlock;
	err = user_set(out, u.id, u.name, u.email);
	if (err == MN_OK && !email_add(m, u.email, u.id))
		err = MN_NOMEM;
	if (err != MN_OK) {
		user_release(&u);
		goto out_unlock;
	}
	m->users[m->n++] = u;
	m->next_id++;
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static enum mn_err mem_get(struct users_repo *r, int64_t id, struct user *out)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err = MN_NOT_FOUND;
	ssize_t i;

	pthread_rwlock_rdlock(&m->lock);
	i = find(m, id);
	if (i >= 0)
		err = user_set(out, m->users[i].id, m->users[i].name, m->users[i].email);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static enum mn_err user_copy(void *dst, const void *src)
{
	const struct user *u = src;

	return user_set(dst, u->id, u->name, u->email);
}

static void users_release(void *users, size_t n)
{
	user_list_free(users, n);
}

static enum mn_err mem_list(struct users_repo *r, size_t limit, size_t offset, struct user **out,
			    size_t *n)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err;

	pthread_rwlock_rdlock(&m->lock);
	err = memory_rows_page(m->users, m->n, sizeof(**out), limit, offset, user_copy, users_release,
			       (void **)out, n);
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static bool same_email(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return text_equal_nocase(a, b);
}

static enum mn_err mem_update(struct users_repo *r, int64_t id, const char *name, const char *email,
			      struct user *out, char *errbuf, size_t errlen)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err;
	struct user u;
	ssize_t i;

	(void)errbuf;
	(void)errlen;
	user_init(&u);
	pthread_rwlock_wrlock(&m->lock);
	i = find(m, id);
	if (i < 0) {
		err = MN_NOT_FOUND;
		goto out_unlock;
	}
	if (email_taken(m, email, id)) {
		err = MN_CONFLICT;
		goto out_unlock;
	}
	err = user_set(&u, id, name, email);
	if (err != MN_OK)
		goto out_unlock;
	err = user_set(out, id, name, email);
	if (err != MN_OK) {
		user_release(&u);
		goto out_unlock;
	}
	/* the old email out, the new one in; when the new one does not fit
	 * (the index is then unchanged) the old one is put back */
	if (!same_email(m->users[i].email, u.email)) {
		const char *old = m->users[i].email;
		struct email_slot *was =
			old ? email_place(m, old, email_hash(m, old), id, 0) : NULL;

		if (was) {
			was->id = EMAIL_GONE;
			m->emails_live--;
		}
		if (!email_add(m, u.email, id)) {
			if (was) {
				was->id = id;
				m->emails_live++;
			}
			user_release(&u);
			user_release(out);
			err = MN_NOMEM;
			goto out_unlock;
		}
	}
	user_release(&m->users[i]);
	m->users[i] = u;
out_unlock:
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static enum mn_err mem_remove(struct users_repo *r, int64_t id, char *errbuf, size_t errlen)
{
	struct memory_repo *m = (struct memory_repo *)r;
	enum mn_err err = MN_NOT_FOUND;
	ssize_t i;

	(void)errbuf;
	(void)errlen;
	pthread_rwlock_wrlock(&m->lock);
	i = find(m, id);
	if (i >= 0) {
		email_remove(m, m->users[i].email, id);
		user_release(&m->users[i]);
		memmove(&m->users[i], &m->users[i + 1], (m->n - (size_t)i - 1) * sizeof(*m->users));
		m->n--;
		err = MN_OK;
	}
	pthread_rwlock_unlock(&m->lock);
	return err;
}

static void mem_destroy(struct users_repo *r)
{
	struct memory_repo *m = (struct memory_repo *)r;

	user_list_free(m->users, m->n);
	free(m->emails);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static const struct users_repo_ops memory_ops = {
	mem_create, mem_get, mem_list, mem_update, mem_remove, mem_destroy,
};

struct users_repo *users_repo_memory_create(void)
{
	struct memory_repo *m = calloc(1, sizeof(*m));
	uint64_t rng;

	if (m == NULL)
		return NULL;
	rng = clock_monotonic_ns() ^ (uint64_t)(uintptr_t)m;
	m->seed = mn_rand_next(&rng);
	m->base.ops = &memory_ops;
	m->next_id = 1;
	pthread_rwlock_init(&m->lock, NULL);
	return &m->base;
}
