#include "store/sqlite_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

#define POOL_SIZE 4
#define BUSY_TIMEOUT_MS 5000

struct sqlite_pool {
	struct sqlite_conn conns[POOL_SIZE];
	struct sqlite_conn *idle[POOL_SIZE]; /* stack of free connections */
	size_t n_idle;
	pthread_mutex_t lock;
	pthread_cond_t available;
};

struct sqlite_conn *sqlite_pool_acquire(struct sqlite_pool *p)
{
	struct sqlite_conn *c;

	pthread_mutex_lock(&p->lock);
	while (p->n_idle == 0)
		pthread_cond_wait(&p->available, &p->lock);
	c = p->idle[--p->n_idle];
	pthread_mutex_unlock(&p->lock);
	return c;
}

void sqlite_pool_release(struct sqlite_pool *p, struct sqlite_conn *c)
{
	pthread_mutex_lock(&p->lock);
	p->idle[p->n_idle++] = c;
	pthread_cond_signal(&p->available);
	pthread_mutex_unlock(&p->lock);
}

enum mn_err sqlite_pool_ping(struct sqlite_pool *p)
{
	struct sqlite_conn *c = sqlite_pool_acquire(p);
	enum mn_err err = sqlite3_step(c->ping) == SQLITE_ROW ? MN_OK : MN_UNAVAILABLE;

	sqlite3_reset(c->ping);
	sqlite_pool_release(p, c);
	return err;
}

enum mn_err sqlite_step_error(struct sqlite_conn *c, int rc, const char *what)
{
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return MN_CONFLICT;
	log_error("store", "sqlite %s failed: %s", what, sqlite3_errmsg(c->db));
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return MN_UNAVAILABLE;
	return MN_IO;
}

static void conn_close(struct sqlite_conn *c)
{
	for (size_t i = 0; i < SQLITE_POOL_MAX_STMTS; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_finalize(c->ping);
	sqlite3_close(c->db);
}

void sqlite_pool_close(struct sqlite_pool *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < POOL_SIZE; i++)
		conn_close(&p->conns[i]);
	pthread_cond_destroy(&p->available);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* mkdir -p of the directory part of 'path'. */
static int make_parents(const char *path)
{
	char dir[4096];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -1;
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(dir, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int conn_open(struct sqlite_conn *c, const char *path, const char *schema,
		     const char *const *stmts, size_t n_stmts, bool first, char *err, size_t errlen)
{
	int rc;

	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	rc = sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	if (first) {
		rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db, schema, NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto out_error;
	}
	rc = sqlite3_prepare_v3(c->db, "SELECT 1", -1, SQLITE_PREPARE_PERSISTENT, &c->ping, NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	for (size_t i = 0; i < n_stmts; i++) {
		rc = sqlite3_prepare_v3(c->db, stmts[i], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
					NULL);
		if (rc != SQLITE_OK)
			goto out_error;
	}
	return 0;

out_error:
	mn_error(err, errlen, MN_IO, "%s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
	return -1;
}

struct sqlite_pool *sqlite_pool_open(const char *path, const char *schema,
				     const char *const *stmts, size_t n_stmts, char *err,
				     size_t errlen)
{
	struct sqlite_pool *p;

	if (n_stmts > SQLITE_POOL_MAX_STMTS) {
		mn_error(err, errlen, MN_INVALID, "too many statements");
		return NULL;
	}
	if (make_parents(path) != 0) {
		mn_error(err, errlen, MN_IO, "cannot create the directory of '%s': %s", path,
			 strerror(errno));
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->available, NULL);
	for (size_t i = 0; i < POOL_SIZE; i++) {
		if (conn_open(&p->conns[i], path, schema, stmts, n_stmts, i == 0, err, errlen) != 0) {
			sqlite_pool_close(p);
			return NULL;
		}
		p->idle[p->n_idle++] = &p->conns[i];
	}
	return p;
}
