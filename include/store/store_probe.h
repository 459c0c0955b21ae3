/* Readiness of the store without touching it from a request: a background
 * probe (its own thread) asks the repositories' ping every interval and
 * records what it saw, when; /ready and /metrics read only that record,
 * so they answer at once whatever the database does (issue 21).
 *
 * What the record says: "ok", or the ping's reason (the database
 * unreachable, refused, busy: every connection in use and none answering,
 * a write waiting for a lock another process holds, a disk full). A probe
 * that has not finished for longer than stale_ms (its ping itself stuck:
 * a query on an idle connection that gets no answer) is not "ok" either:
 * the record then says how long it has waited. */
#ifndef MESHNODE_STORE_STORE_PROBE_H
#define MESHNODE_STORE_STORE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/error.h"

#define STORE_PROBE_INTERVAL_MS 500
#define STORE_PROBE_STALE_MS	2000

/* One look at the store: MN_OK, or another code with why in 'why'. */
typedef enum mn_err (*store_probe_fn)(void *ctx, char *why, size_t len);

struct store_probe_opts {
	store_probe_fn ping;
	void *ctx;
	int interval_ms;	      /* between the end of a probe and the next */
	int stale_ms;		      /* a record older than this is not "ok" */
	const struct mn_clock *clock; /* NULL: the system's */
};

struct store_probe;

/* Probes once now (so the first /ready has a record); NULL when out of
 * memory. No thread yet. */
struct store_probe *store_probe_create(const struct store_probe_opts *o);

/* One probe, on the caller's thread (the thread's loop; tests). */
void store_probe_run(struct store_probe *p);

/* Starts the thread: MN_OK or MN_NOMEM. */
enum mn_err store_probe_start(struct store_probe *p);

/* Stops the thread (waiting for a probe in progress) and frees; NULL is a
 * no-op. */
void store_probe_destroy(struct store_probe *p);

/* The record: true when the last probe said ok and is not stale; else
 * false with the reason in 'why'. *age_ms (optional): how long ago the
 * last probe ended. Never waits for a probe. */
bool store_probe_ok(struct store_probe *p, char *why, size_t len, uint64_t *age_ms);

#endif
