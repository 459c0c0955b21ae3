/* Why the store cannot write, as every repository reports it: the kinds of
 * write failure (one list gives each its metric label and its words), and
 * the snapshot a repository gives of its write state. */
#ifndef MESHNODE_STORE_STORE_FAULT_H
#define MESHNODE_STORE_STORE_FAULT_H

#include <stdint.h>

/*      name        label        text */
#define STORE_FAULT_MAP(X)                                  \
	X(NONE,      "none",      "ok")                     \
	X(DISK_FULL, "disk_full", "disk full")              \
	X(READ_ONLY, "read_only", "read-only")              \
	X(IO,        "io",        "input/output error")

enum store_fault {
#define STORE_FAULT_ENUM(name, label, text) STORE_FAULT_##name,
	STORE_FAULT_MAP(STORE_FAULT_ENUM)
#undef STORE_FAULT_ENUM
	STORE_FAULT_COUNT
};

/* Why a request was refused busy ("the ... is busy; try again", 503 with
 * Retry-After) rather than waiting: it waited database.acquire_timeout_ms,
 * or database.max_waiters were waiting already. */
#define STORE_SHED_MAP(X) X(TIMEOUT, "timeout") X(WAITERS, "waiters")

enum store_shed {
#define STORE_SHED_ENUM(name, label) STORE_SHED_##name,
	STORE_SHED_MAP(STORE_SHED_ENUM)
#undef STORE_SHED_ENUM
	STORE_SHED_COUNT
};

/* The metric label of a reason ("timeout"). */
const char *store_shed_label(enum store_shed s);

/* How long a request may wait in the store (issue 21): for a pooled
 * connection (or, in SQLite, for its turn to write) at most
 * acquire_timeout_ms, with at most max_waiters waiting at once; waiting
 * and the statement together within request_timeout_ms
 * (server.read_timeout_ms). */
struct store_limits {
	int acquire_timeout_ms;
	int max_waiters;
	int request_timeout_ms;
};
#define STORE_LIMITS_DEFAULT {1000, 128, 5000}

/* A repository's write state. */
struct store_health {
	/* Why the last write failed; STORE_FAULT_NONE when it succeeded, or
	 * when a write has succeeded since. */
	enum store_fault fault;
	/* Writes that failed, by kind, since the repository was opened
	 * (write_failures[STORE_FAULT_NONE] stays 0). */
	uint64_t write_failures[STORE_FAULT_COUNT];
	/* Requests refused busy, by reason (SQLite's pools; PostgreSQL's
	 * shared pool reports its own in pg_pool_stats()). */
	uint64_t shed[STORE_SHED_COUNT];
};

/* The kind as a metric label ("disk_full"); "unknown" for a bad value. */
const char *store_fault_label(enum store_fault f);

/* The kind in words for messages ("disk full"); "unknown" for a bad value. */
const char *store_fault_text(enum store_fault f);

/* Adds the counts of 'h' to 'sum' and keeps the first fault of the two
 * (for a node whose repositories share one file). */
void store_health_add(struct store_health *sum, const struct store_health *h);

#endif
