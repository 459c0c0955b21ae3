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
#include "core/hash.h"
#include "core/hashmap.h"
#include "core/text.h"
#include "store/drivers.h"
#include "store/memory_rows.h"

struct memory_repo {
	struct users_repo base;
	pthread_rwlock_t lock;
	struct user *users;
	size_t n;
	size_t alloc;
	int64_t next_id;
	/* The emails, so that a create or an update checks one in O(1)
	 * (a scan of every user made POST /users quadratic: 4,100 req/s
	 * after a few seconds of load, issue 14): the ids (int64_t) of the
	 * users with an email, by the hash of their email. */
	struct hashmap emails;
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
	return hash_mix(hash_str_nocase(HASH_START ^ m->emails.seed, email));
}

/* What an email index lookup looks for: the user 'id' (not 0), or any user
 * but 'self' whose email is 'email'. */
struct email_key {
	const struct memory_repo *m;
	const char *email;
	int64_t id;
	int64_t self;
};

static bool email_is(const void *entry, const void *key)
{
	const struct email_key *k = key;
	int64_t id = *(const int64_t *)entry;
	ssize_t i;

	if (k->id != 0)
		return id == k->id;
	if (id == k->self)
		return false;
	i = find(k->m, id);
	return i >= 0 && k->m->users[i].email && text_equal_nocase(k->m->users[i].email, k->email);
}

/* The index entry of the user 'id' with 'email', or, with id 0, of any
 * user with that email other than 'self'; NULL when none. Lock held. */
static int64_t *email_place(const struct memory_repo *m, const char *email, int64_t id,
			    int64_t self)
{
	struct email_key k = {m, email, id, self};

	return hashmap_find(&m->emails, email_hash(m, email), email_is, &k);
}

/* true when another user than 'self' has this email. Lock held. */
static bool email_taken(const struct memory_repo *m, const char *email, int64_t self)
{
	return email && email_place(m, email, 0, self) != NULL;
}

/* Indexes user 'id''s email (none for NULL); false when out of memory (the
 * index is then unchanged). Lock held. */
static bool email_add(struct memory_repo *m, const char *email, int64_t id)
{
	int64_t *e;

	if (email == NULL)
		return true;
	e = hashmap_insert(&m->emails, email_hash(m, email));
	if (e == NULL)
		return false;
	*e = id;
	return true;
}

static void email_remove(struct memory_repo *m, const char *email, int64_t id)
{
	int64_t *e;

	if (email == NULL)
		return;
	e = email_place(m, email, id, 0);
	if (e)
		hashmap_remove(&m->emails, e);
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
	if (err == MN_OK && !email_add(m, u.email, u.id)) {
		user_release(out); /* nothing was created: out stays empty */
		err = MN_NOMEM;
	}
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
	/* the old email out, the new one in; room for the new one is made
	 * first, so that out of memory leaves the index unchanged */
	if (!same_email(m->users[i].email, u.email)) {
		if (u.email && hashmap_reserve(&m->emails, m->emails.n + 1) != MN_OK) {
			user_release(&u);
			user_release(out);
			err = MN_NOMEM;
			goto out_unlock;
		}
		email_remove(m, m->users[i].email, id);
		email_add(m, u.email, id); /* cannot fail: room was made */
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
	hashmap_release(&m->emails);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static const struct users_repo_ops memory_ops = {
	mem_create, mem_get, mem_list, mem_update, mem_remove, mem_destroy,
};

struct users_repo *users_repo_memory_create(void)
{
	struct memory_repo *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	hashmap_init(&m->emails, sizeof(int64_t));
	m->base.ops = &memory_ops;
	m->next_id = 1;
	pthread_rwlock_init(&m->lock, NULL);
	return &m->base;
}
