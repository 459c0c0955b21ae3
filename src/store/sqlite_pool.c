#include "store/sqlite_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/migrate.h"

/* Reads take a connection each; 16 keep the workers of a busy node from
 * queueing for one (4 made GET /users/{id} 0.8x as fast at 50
 * connections: bench/RESULTS.md, issue 14). One of them at a time writes
 * (sqlite_pool_write()). */
#define POOL_SIZE SQLITE_POOL_SIZE
/* The most writes one transaction commits together. */
#define GROUP_MAX 128
/* A timed wait looks at the pool's clock at least this often (a test's
 * clock moves by hand). */
#define WAIT_SLICE_MS 50
#define DB_FILE_MODE	0600
#define DIR_MODE	0700

/* The probe writes one row of a table of its own, made when first needed
 * (a healthy store never gets it): a commit that must reach the disk, as a
 * client's would. */
static const char probe_sql[] = "CREATE TABLE IF NOT EXISTS meshnode_write_probe"
				" (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);"
				"INSERT OR REPLACE INTO meshnode_write_probe (id, at)"
				" VALUES (1, CAST(strftime('%s', 'now') AS INTEGER))";

/* A caller's write waiting in the queue, on its own stack. */
struct queued_write {
	struct sqlite_write *w;
	char *err;
	size_t errlen;
	enum mn_err result;
	bool done;
	bool taken; /* in a group being committed: it cannot leave the queue */
	pthread_cond_t wake; /* done, or first in the queue with no one writing */
	struct queued_write *next;
};

struct sqlite_pool {
	struct sqlite_conn conns[POOL_SIZE];
	struct sqlite_conn *idle[POOL_SIZE]; /* stack of free connections */
	size_t n_idle;
	pthread_mutex_t lock;
	pthread_cond_t available;
	size_t conn_waiters; /* callers waiting for a connection */
	char *path;
	const struct mn_clock *clock;
	struct store_limits limits;
	int busy_timeout_ms; /* SQLite's busy handler: request time less the wait */
	uint64_t shed[STORE_SHED_COUNT]; /* under state_lock */

	pthread_mutex_t state_lock; /* the write state below */
	enum store_fault fault;	    /* of the last write; NONE once one succeeded */
	unsigned warned;	    /* bit per kind logged since the last success */
	uint64_t failed_since_ok;   /* failed writes since the last success */
	uint64_t failures[STORE_FAULT_COUNT];
	uint64_t next_probe_ms;

	pthread_mutex_t write_lock; /* the queue below */
	struct queued_write *queue_head, *queue_tail;
	size_t queued;
	bool writing;		    /* a caller is committing a group */
	uint64_t writing_since_ms;  /* by the pool's clock */
	uint64_t writes, groups;
};

static uint64_t pool_now(struct sqlite_pool *p)
{
	return clock_now(p->clock);
}

static void count_shed(struct sqlite_pool *p, enum store_shed why)
{
	pthread_mutex_lock(&p->state_lock);
	p->shed[why]++;
	pthread_mutex_unlock(&p->state_lock);
}

/* Waits on 'cond' (made by clock_cond_init) until signalled or the pool's
 * clock reaches 'deadline'; false once it has. */
static bool wait_until(struct sqlite_pool *p, pthread_cond_t *cond, pthread_mutex_t *lock,
		       uint64_t deadline)
{
	uint64_t now = pool_now(p);
	struct timespec ts;

	if (now >= deadline)
		return false;
	ts = clock_deadline_ms(deadline - now < WAIT_SLICE_MS ? deadline - now : WAIT_SLICE_MS);
	pthread_cond_timedwait(cond, lock, &ts);
	return true;
}

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

enum mn_err sqlite_pool_take(struct sqlite_pool *p, struct sqlite_conn **out, char *err,
			     size_t errlen)
{
	enum store_shed why = STORE_SHED_TIMEOUT;
	uint64_t deadline;

	*out = NULL;
	pthread_mutex_lock(&p->lock);
	deadline = pool_now(p) + (uint64_t)p->limits.acquire_timeout_ms;
	while (p->n_idle == 0) {
		if (p->conn_waiters >= (size_t)p->limits.max_waiters) {
			why = STORE_SHED_WAITERS;
			break;
		}
		p->conn_waiters++;
		bool waiting = wait_until(p, &p->available, &p->lock, deadline);
		p->conn_waiters--;
		if (!waiting)
			break;
	}
	if (p->n_idle > 0) {
		*out = p->idle[--p->n_idle];
		pthread_mutex_unlock(&p->lock);
		return MN_OK;
	}
	pthread_mutex_unlock(&p->lock);
	count_shed(p, why);
	return mn_error(err, errlen, MN_UNAVAILABLE, "the store is busy; try again");
}

void sqlite_pool_release(struct sqlite_pool *p, struct sqlite_conn *c)
{
	pthread_mutex_lock(&p->lock);
	p->idle[p->n_idle++] = c;
	pthread_cond_signal(&p->available);
	pthread_mutex_unlock(&p->lock);
}

void sqlite_pool_set_clock(struct sqlite_pool *p, const struct mn_clock *clock)
{
	pthread_mutex_lock(&p->state_lock);
	p->clock = clock;
	pthread_mutex_unlock(&p->state_lock);
}

/* ---- write state ------------------------------------------------------ */

enum store_fault sqlite_fault_classify(int rc, int sys_errno)
{
	enum store_fault f;

	switch (rc & 0xff) {
	case SQLITE_FULL: return STORE_FAULT_DISK_FULL;
	case SQLITE_READONLY: return STORE_FAULT_READ_ONLY;
	case SQLITE_IOERR:
		if (rc == SQLITE_IOERR_NOMEM)
			return STORE_FAULT_NONE;
		f = STORE_FAULT_IO;
		break;
	case SQLITE_CANTOPEN:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_PROTOCOL:
	case SQLITE_NOLFS: f = STORE_FAULT_IO; break;
	default: return STORE_FAULT_NONE;
	}
	/* SQLite turns ENOSPC on write() into SQLITE_FULL, but not on the
	 * -shm's growth, nor EDQUOT or EROFS: the errno says what it was. */
	switch (sys_errno) {
	case ENOSPC:
	case EDQUOT: return STORE_FAULT_DISK_FULL;
	case EROFS:
	case EACCES:
	case EPERM: return STORE_FAULT_READ_ONLY;
	default: return f;
	}
}

/* The errno of the system call that failed. errno itself, which is what
 * sqlite3_system_errno() gives, has often moved on by then (SQLite unlocks
 * and rolls back first); SQLite's unix files keep their own: the WAL's,
 * where commits go, then the database file's. 0 when none is known. */
static int last_errno(sqlite3 *db)
{
	sqlite3_file *f = NULL;
	int e = 0;

	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) == SQLITE_OK && f &&
	    f->pMethods && f->pMethods->xFileControl(f, SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK &&
	    e != 0)
		return e;
	if (sqlite3_file_control(db, "main", SQLITE_FCNTL_LAST_ERRNO, &e) == SQLITE_OK && e != 0)
		return e;
	return sqlite3_system_errno(db);
}

/* Records a write that reached the disk (STORE_FAULT_NONE) or failed with
 * 'f'; 'counted' is false for the pool's own probes, which are not
 * writes a client asked for. Logs outside the lock: the first failure of
 * each kind since the last success, and the success that ends them. */
static void note_write(struct sqlite_pool *p, enum store_fault f, bool counted,
		       struct sqlite_conn *c, const char *what)
{
	bool warn = false, recovered = false;
	uint64_t failed = 0;

	pthread_mutex_lock(&p->state_lock);
	if (f == STORE_FAULT_NONE) {
		if (p->fault == STORE_FAULT_NONE) {
			pthread_mutex_unlock(&p->state_lock);
			return;
		}
		recovered = true;
		failed = p->failed_since_ok;
		p->fault = STORE_FAULT_NONE;
		p->warned = 0;
		p->failed_since_ok = 0;
	} else {
		if (counted) {
			p->failures[f]++;
			p->failed_since_ok++;
		}
		if (p->fault == STORE_FAULT_NONE)
			p->next_probe_ms = clock_now(p->clock) + SQLITE_POOL_PROBE_INTERVAL_MS;
		warn = (p->warned & (1u << f)) == 0;
		p->warned |= 1u << f;
		p->fault = f;
	}
	pthread_mutex_unlock(&p->state_lock);

	if (recovered)
		log_info("store", "'%s' can write again (%s succeeded after %llu failed writes)",
			 p->path, what, (unsigned long long)failed);
	if (warn) {
		int e = last_errno(c->db);

		log_warn("store",
			 "cannot write to '%s': %s (%s failed: %s, sqlite code %d%s%s); "
			 "writes answer 503 and /ready says so until one succeeds; "
			 "further failures of this kind are counted, not logged",
			 p->path, store_fault_text(f), what, sqlite3_errmsg(c->db),
			 sqlite3_extended_errcode(c->db), e ? ", " : "", e ? strerror(e) : "");
	}
}

void sqlite_pool_health(struct sqlite_pool *p, struct store_health *out)
{
	pthread_mutex_lock(&p->state_lock);
	out->fault = p->fault;
	memcpy(out->write_failures, p->failures, sizeof(out->write_failures));
	memcpy(out->shed, p->shed, sizeof(out->shed));
	pthread_mutex_unlock(&p->state_lock);
}

enum mn_err sqlite_pool_read_error(struct sqlite_conn *c, int rc, const char *what)
{
	log_error("store", "sqlite %s failed: %s", what, sqlite3_errmsg(c->db));
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return MN_UNAVAILABLE;
	if ((rc & 0xff) == SQLITE_NOMEM)
		return MN_NOMEM;
	return MN_IO;
}

/* As sqlite_pool_write_result(); 'counted' as for note_write(). */
static enum mn_err write_result(struct sqlite_pool *p, struct sqlite_conn *c, int rc, bool counted,
				const char *what, char *err, size_t errlen)
{
	enum store_fault f;

	if (rc == SQLITE_DONE || rc == SQLITE_OK) {
		/* A write that changed nothing (no such row) proves nothing
		 * about the disk. */
		if (sqlite3_changes(c->db) > 0)
			note_write(p, STORE_FAULT_NONE, counted, c, what);
		return MN_OK;
	}
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT: return mn_error(err, errlen, MN_CONFLICT, "conflict");
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		log_warn("store", "sqlite %s: '%s' stayed busy for %d ms", what, p->path,
			 p->busy_timeout_ms);
		return mn_error(err, errlen, MN_UNAVAILABLE, "the store is busy; try again");
	}
	/* rc may be the primary code only; the connection keeps the
	 * extended one (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED). */
	f = sqlite_fault_classify(sqlite3_extended_errcode(c->db), last_errno(c->db));
	if (f != STORE_FAULT_NONE) {
		note_write(p, f, counted, c, what);
		return mn_error(err, errlen, MN_UNAVAILABLE, "the store cannot write: %s",
				store_fault_text(f));
	}
	log_error("store", "sqlite %s failed: %s", what, sqlite3_errmsg(c->db));
	return mn_error(err, errlen, (rc & 0xff) == SQLITE_NOMEM ? MN_NOMEM : MN_IO,
			"internal error");
}

enum mn_err sqlite_pool_write_result(struct sqlite_pool *p, struct sqlite_conn *c, int rc,
				     const char *what, char *err, size_t errlen)
{
	return write_result(p, c, rc, true, what, err, errlen);
}

enum mn_err sqlite_pool_stuck(struct sqlite_pool *p, char *err, size_t errlen)
{
	uint64_t held = 0;

	pthread_mutex_lock(&p->write_lock);
	if (p->writing)
		held = pool_now(p) - p->writing_since_ms;
	pthread_mutex_unlock(&p->write_lock);
	if (held > (uint64_t)p->limits.acquire_timeout_ms)
		return mn_error(err, errlen, MN_UNAVAILABLE,
				"busy: a write has waited %llu ms for the file's write lock",
				(unsigned long long)held);
	return MN_OK;
}

enum mn_err sqlite_pool_ping(struct sqlite_pool *p, char *err, size_t errlen)
{
	struct sqlite_conn *c;
	enum store_fault f;
	bool probe = false;
	int rc;

	pthread_mutex_lock(&p->state_lock);
	if (p->fault != STORE_FAULT_NONE) {
		uint64_t now = clock_now(p->clock);

		if (now >= p->next_probe_ms) {
			probe = true;
			p->next_probe_ms = now + SQLITE_POOL_PROBE_INTERVAL_MS;
		}
	}
	pthread_mutex_unlock(&p->state_lock);

	c = sqlite_pool_acquire(p);
	rc = sqlite3_step(c->ping);
	sqlite3_reset(c->ping);
	if (rc == SQLITE_ROW && probe) {
		rc = sqlite3_exec(c->db, probe_sql, NULL, NULL, NULL);
		write_result(p, c, rc, false, "write probe", NULL, 0);
		rc = SQLITE_ROW;
	}
	sqlite_pool_release(p, c);
	if (rc != SQLITE_ROW)
		return mn_error(err, errlen, MN_UNAVAILABLE, "unavailable");

	pthread_mutex_lock(&p->state_lock);
	f = p->fault;
	pthread_mutex_unlock(&p->state_lock);
	if (f != STORE_FAULT_NONE)
		return mn_error(err, errlen, MN_UNAVAILABLE, "cannot write: %s",
				store_fault_text(f));
	return sqlite_pool_stuck(p, err, errlen);
}

/* ---- group commit --------------------------------------------------------- */

/* Rolls back what a failed step or COMMIT left open: SQLite rolls back by
 * itself after some errors (disk full, I/O), not after others. */
static void rollback_if_open(struct sqlite_conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Runs the n writes of 'group' in one transaction on 'c'. true when every
 * write ran (their results are then the COMMIT's); false, with nothing
 * committed and no result set, when one write's own statement failed in a
 * group of several, so that each can be run alone and get its own answer.
 * A failure is mapped before the rollback, which clears SQLite's error. */
static bool commit_group(struct sqlite_pool *p, struct sqlite_conn *c, struct queued_write **group,
			 size_t n)
{
	bool changed = false;
	int rc;

	rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
		struct sqlite_write *w = group[i]->w;

		w->changes = 0;
		rc = w->run(c, w);
		if (rc != SQLITE_DONE && rc != SQLITE_OK && n > 1) {
			rollback_if_open(c);
			return false;
		}
		if (rc == SQLITE_DONE || rc == SQLITE_OK) {
			w->changes = sqlite3_changes(c->db);
			changed |= w->changes > 0;
			rc = SQLITE_OK;
		}
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	for (size_t i = 0; i < n; i++) {
		struct queued_write *q = group[i];

		/* a failure that kept the group from the disk is every
		 * write's, each counted as a failed write */
		q->result = rc == SQLITE_OK ? MN_OK
					    : write_result(p, c, rc, true, q->w->what, q->err, q->errlen);
	}
	if (rc != SQLITE_OK)
		rollback_if_open(c);
	else if (changed)
		note_write(p, STORE_FAULT_NONE, true, c, group[0]->w->what);
	return true;
}

static void run_group(struct sqlite_pool *p, struct queued_write **group, size_t n)
{
	struct sqlite_conn *c = sqlite_pool_acquire(p);

	if (!commit_group(p, c, group, n))
		for (size_t i = 0; i < n; i++)
			commit_group(p, c, &group[i], 1);
	sqlite_pool_release(p, c);
}

/* Takes 'me' out of the queue (it waited too long); write_lock held. */
static void queue_remove(struct sqlite_pool *p, struct queued_write *me)
{
	struct queued_write **q = &p->queue_head, *prev = NULL;

	while (*q && *q != me) {
		prev = *q;
		q = &(*q)->next;
	}
	if (*q == NULL)
		return;
	*q = me->next;
	if (p->queue_tail == me)
		p->queue_tail = prev;
	p->queued--;
}

enum mn_err sqlite_pool_write(struct sqlite_pool *p, struct sqlite_write *w, char *err,
			      size_t errlen)
{
	struct queued_write me = {.w = w, .err = err, .errlen = errlen};
	struct queued_write *group[GROUP_MAX];
	size_t room = (size_t)p->limits.max_waiters > GROUP_MAX ? (size_t)p->limits.max_waiters
								 : GROUP_MAX;
	uint64_t deadline;

	pthread_mutex_lock(&p->write_lock);
	/* a bounded waiting room: one group always fits, so that group
	 * commit keeps its batches under load */
	if (p->queued >= room) {
		pthread_mutex_unlock(&p->write_lock);
		count_shed(p, STORE_SHED_WAITERS);
		return mn_error(err, errlen, MN_UNAVAILABLE, "the store is busy; try again");
	}
	clock_cond_init(&me.wake);
	deadline = pool_now(p) + (uint64_t)p->limits.acquire_timeout_ms;
	if (p->queue_tail)
		p->queue_tail->next = &me;
	else
		p->queue_head = &me;
	p->queue_tail = &me;
	p->queued++;
	while (!me.done) {
		size_t n = 0;

		if (p->writing && me.taken) {
			/* in the group being committed: its answer comes */
			pthread_cond_wait(&me.wake, &p->write_lock);
			continue;
		}
		if (p->writing) {
			/* waiting for the writer: at most acquire_timeout_ms */
			if (!wait_until(p, &me.wake, &p->write_lock, deadline)) {
				queue_remove(p, &me);
				pthread_mutex_unlock(&p->write_lock);
				pthread_cond_destroy(&me.wake);
				count_shed(p, STORE_SHED_TIMEOUT);
				return mn_error(err, errlen, MN_UNAVAILABLE,
						"the store is busy; try again");
			}
			continue;
		}
		/* This caller commits what is queued, its own write among
		 * the first GROUP_MAX, while the others wait. */
		p->writing = true;
		p->writing_since_ms = pool_now(p);
		while (p->queue_head && n < GROUP_MAX) {
			p->queue_head->taken = true;
			group[n++] = p->queue_head;
			p->queue_head = p->queue_head->next;
		}
		if (p->queue_head == NULL)
			p->queue_tail = NULL;
		p->queued -= n;
		pthread_mutex_unlock(&p->write_lock);

		run_group(p, group, n);

		pthread_mutex_lock(&p->write_lock);
		/* Wakes the group's callers, and the first of those who
		 * came since, to commit theirs: no one else. */
		for (size_t i = 0; i < n; i++) {
			group[i]->done = true;
			if (group[i] != &me)
				pthread_cond_signal(&group[i]->wake);
		}
		p->writes += n;
		p->groups++;
		p->writing = false;
		if (p->queue_head)
			pthread_cond_signal(&p->queue_head->wake);
	}
	pthread_mutex_unlock(&p->write_lock);
	pthread_cond_destroy(&me.wake);
	return me.result;
}

void sqlite_pool_write_stats(struct sqlite_pool *p, struct sqlite_write_stats *out)
{
	pthread_mutex_lock(&p->write_lock);
	out->writes = p->writes;
	out->groups = p->groups;
	out->queued = p->queued;
	pthread_mutex_unlock(&p->write_lock);
	pthread_mutex_lock(&p->state_lock);
	for (int i = 0; i < STORE_SHED_COUNT; i++)
		out->shed[i] = p->shed[i];
	pthread_mutex_unlock(&p->state_lock);
}

/* ---- opening and closing ------------------------------------------------ */

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
	pthread_mutex_destroy(&p->state_lock);
	pthread_mutex_destroy(&p->write_lock);
	free(p->path);
	free(p);
}

/* mkdir 'dir' DIR_MODE when missing: the mode is set again after mkdir so
 * that no umask takes the owner's bits away. Existing directories are left
 * as they are. */
static int make_dir(const char *dir)
{
	if (mkdir(dir, DIR_MODE) != 0)
		return errno == EEXIST ? 0 : -1;
	return chmod(dir, DIR_MODE);
}

/* mkdir -p of the directory part of 'path'. */
static int make_parents(const char *path)
{
	char dir[4096];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (make_dir(dir) != 0)
			return -1;
		*p = '/';
	}
	return make_dir(dir);
}

/* Creates the database file DB_FILE_MODE before SQLite does (SQLite would
 * make it 0644 less the umask, and its -wal and -shm take the database
 * file's mode). An existing file keeps its mode, but one that others may
 * read or write is reported. */
static int make_db_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, DB_FILE_MODE);

	if (fd >= 0) {
		int rc = fchmod(fd, DB_FILE_MODE);

		close(fd);
		if (rc == 0)
			return 0;
		mn_error(err, errlen, MN_IO, "cannot set the mode of '%s': %s", path,
			 strerror(errno));
		return -1;
	}
	if (errno != EEXIST) {
		mn_error(err, errlen, MN_IO, "cannot create '%s': %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
		log_warn("store",
			 "'%s' is mode %04o, and its -wal and -shm take that mode: other users may "
			 "read them; left as they are (a database the node creates is 0600)",
			 path, (unsigned)(st.st_mode & 07777));
	return 0;
}

/* One integer from a query of one row; -1 when it fails. */
static long long query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Brings the file to the store's schema (store/migrate.h) in one write
 * transaction: BEGIN IMMEDIATE takes the write lock first, so of several
 * nodes opening one file at once one migrates and the others, within the
 * busy timeout, find it done. */
static int sqlite_migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	static const char create_sql[] = "CREATE TABLE IF NOT EXISTS " MIGRATE_TABLE
					 " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)";
	static const char record_sql[] = "INSERT INTO " MIGRATE_TABLE " (version, applied_at)"
					 " VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))";
	const struct migration *m = store_migrations;
	size_t n = store_migrations_count;
	struct migrate_plan plan;
	sqlite3_stmt *st = NULL;
	long long current, tables;
	int rc;

	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out_sqlite;
	tables = query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
			       " AND name IN ('users', 'orders')");
	if (tables < 0 || sqlite3_exec(db, create_sql, NULL, NULL, NULL) != SQLITE_OK)
		goto out_sqlite;
	current = query_int(db, "SELECT coalesce(max(version), 0) FROM " MIGRATE_TABLE);
	if (current < 0)
		goto out_sqlite;
	if (migrate_plan(m, n, (int)current, tables > 0, true, &plan, err, errlen) != MN_OK) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (sqlite3_prepare_v2(db, record_sql, -1, &st, NULL) != SQLITE_OK)
		goto out_sqlite;
	for (size_t i = plan.first; i < n; i++) {
		if (sqlite3_exec(db, m[i].sqlite, NULL, NULL, NULL) != SQLITE_OK)
			goto out_sqlite;
		sqlite3_bind_int(st, 1, m[i].version);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			goto out_sqlite;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto out_sqlite;
	if (plan.adopt)
		log_info("store", "'%s' was made before schema versions were recorded: adopted as "
			 "version 1 (%s)", path, m[0].what);
	for (size_t i = plan.first + (plan.adopt ? 1 : 0); i < n; i++)
		log_info("store", "'%s': schema migration %d applied (%s)", path, m[i].version,
			 m[i].what);
	return 0;

out_sqlite:
	mn_error(err, errlen, MN_IO, "schema migration of '%s' failed: %s", path,
		 sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int conn_open(struct sqlite_conn *c, const char *path, const char *schema,
		     const char *const *stmts, size_t n_stmts, bool first, int busy_timeout_ms,
		     char *err, size_t errlen)
{
	int rc;

	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	/* SQLite falls back to read-only when it may not write the file; a
	 * store that starts unable to write is refused, not half served. */
	if (sqlite3_db_readonly(c->db, "main") == 1) {
		mn_error(err, errlen, MN_IO, "'%s' is read-only (its mode, owner or file system)",
			 path);
		return -1;
	}
	sqlite3_busy_timeout(c->db, busy_timeout_ms);
	rc = sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto out_error;
	if (first) {
		rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto out_error;
		if (sqlite_migrate(c->db, path, err, errlen) != 0)
			return -1;
		if (schema && (rc = sqlite3_exec(c->db, schema, NULL, NULL, NULL)) != SQLITE_OK)
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

/* SQLite keeps memory statistics by default, under one global mutex that
 * every sqlite3_malloc() and sqlite3_free() of every connection takes; no
 * one reads them here. Only possible before SQLite initializes, which the
 * first open does: a process that used SQLite before keeps them. */
static void sqlite_configure(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct sqlite_pool *sqlite_pool_open(const char *path, const char *schema,
				     const char *const *stmts, size_t n_stmts, char *err,
				     size_t errlen)
{
	return sqlite_pool_open_with(path, schema, stmts, n_stmts, NULL, err, errlen);
}

struct sqlite_pool *sqlite_pool_open_with(const char *path, const char *schema,
					  const char *const *stmts, size_t n_stmts,
					  const struct store_limits *limits, char *err,
					  size_t errlen)
{
	static pthread_once_t configured = PTHREAD_ONCE_INIT;
	static const struct store_limits defaults = STORE_LIMITS_DEFAULT;
	struct sqlite_pool *p;

	pthread_once(&configured, sqlite_configure);

	if (n_stmts > SQLITE_POOL_MAX_STMTS) {
		mn_error(err, errlen, MN_INVALID, "too many statements");
		return NULL;
	}
	if (make_parents(path) != 0) {
		mn_error(err, errlen, MN_IO, "cannot create the directory of '%s': %s", path,
			 strerror(errno));
		return NULL;
	}
	if (make_db_file(path, err, errlen) != 0)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL || (p->path = strdup(path)) == NULL) {
		free(p);
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	p->clock = &clock_system;
	p->limits = limits ? *limits : defaults;
	if (p->limits.acquire_timeout_ms <= 0)
		p->limits.acquire_timeout_ms = 1;
	if (p->limits.max_waiters < 0)
		p->limits.max_waiters = 0;
	p->busy_timeout_ms = p->limits.request_timeout_ms - p->limits.acquire_timeout_ms;
	if (p->busy_timeout_ms < SQLITE_POOL_MIN_BUSY_MS)
		p->busy_timeout_ms = SQLITE_POOL_MIN_BUSY_MS;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->state_lock, NULL);
	clock_cond_init(&p->available);
	pthread_mutex_init(&p->write_lock, NULL);

	for (size_t i = 0; i < POOL_SIZE; i++) {
		if (conn_open(&p->conns[i], path, schema, stmts, n_stmts, i == 0, p->busy_timeout_ms,
			      err, errlen) != 0) {
			sqlite_pool_close(p);
			return NULL;
		}
		p->idle[p->n_idle++] = &p->conns[i];
	}
	return p;
}
