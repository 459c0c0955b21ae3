/* The store's schema as one list of versioned migrations, the same for
 * every driver: each has its SQL in SQLite's dialect and in PostgreSQL's.
 * A database records what it has had applied in the table
 * MIGRATE_TABLE (version, applied_at); at open the store applies, in one
 * transaction, every migration past the highest version recorded. The
 * drivers run the SQL (store/sqlite_pool.c, store/pg_migrate.c); which
 * migrations a database needs is decided here, without a database. */
#ifndef MESHNODE_STORE_MIGRATE_H
#define MESHNODE_STORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define MIGRATE_TABLE "schema_migrations"

struct migration {
	int version;	    /* 1, 2, ...: one more than the one before */
	const char *what;   /* for the log: "users and orders" */
	const char *sqlite; /* one or more statements */
	const char *postgres;
};

/* Every migration, in order; the last one's version is the schema this
 * node needs. */
extern const struct migration store_migrations[];
extern const size_t store_migrations_count;

/* What a database needs. */
struct migrate_plan {
	size_t first; /* index of the first migration to apply; 'n' when none */
	bool adopt;   /* a database made before versioning: version 1 is
			 recorded as adopted (its SQL, which only creates what
			 is missing, runs all the same) */
};

/* Decides, from what a database holds, which of the 'n' migrations 'm' to
 * apply. 'current' is the highest version recorded (0 when none or no
 * table); 'has_tables' is true when the store's tables (users, orders)
 * exist. With no version recorded and the tables there, the database is
 * adopted when 'may_adopt' (SQLite files made before versioning), else
 * refused (a PostgreSQL database whose tables meshnode did not make).
 * MN_CONFIG with the reason in err when the database's version is newer
 * than this node knows or its tables cannot be adopted. */
enum mn_err migrate_plan(const struct migration *m, size_t n, int current, bool has_tables,
			 bool may_adopt, struct migrate_plan *out, char *err, size_t errlen);

/* The version the last of 'n' migrations brings (0 when n is 0). */
int migrate_latest(const struct migration *m, size_t n);

#endif
