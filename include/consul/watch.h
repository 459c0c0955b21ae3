/* Blocking-query watches on the Consul HTTP API, by HashiCorp's rules: the
 * index from X-Consul-Index goes back as ?index= with a ?wait=; an index that
 * goes backwards resets; an unchanged index or body is not a change; calls
 * are spaced by a minimum interval plus jitter so a hot key cannot make the
 * loop spin; errors back off (capped, jittered). One thread per watch.
 *
 * The pure rules are exposed for unit tests with an injected clock. */
#ifndef MESHNODE_CONSUL_WATCH_H
#define MESHNODE_CONSUL_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "consul/client.h"
#include "core/backoff.h"
#include "core/clock.h"

struct watch;

/* Called on the watch thread when the watched data changed (and once for
 * the first answer). 'body' is the response body (borrowed, NUL-terminated;
 * len bytes), 'index' the X-Consul-Index it came with. For a 404 (a KV prefix
 * with no keys) body is "" and not_found is true. */
typedef void (*watch_change_fn)(void *ctx, const char *body, size_t len, uint64_t index,
				bool not_found);

/* Called on the watch thread after a failed call ('err' as consul_call
 * returned it, 'msg' its detail).
 *
 * MN_TOO_LARGE is an answer whose body is over max_response: it is not
 * delivered (it was not read whole), yet it is an answer at its
 * X-Consul-Index. The watch goes on blocking from that index, so the
 * listing is read again only when the data changes, never in a backoff
 * loop; the agent counts as answering (no failure is logged), but what
 * it has was not read, so watch_stale_ms() keeps growing; and the next
 * answer that fits is delivered, even one equal to the last
 * delivered (the data went past the cap and came back). Only an answer
 * with no index backs off like a failure. */
typedef void (*watch_error_fn)(void *ctx, enum mn_err err, const char *msg);

struct watch_opts {
	struct consul *consul;       /* borrowed */
	const char *op;              /* "kv_watch", for metrics and logs (copied) */
	const char *path;            /* "/v1/kv/config/users/?recurse=true" (copied); the
					watch adds index= and wait= */
	uint64_t wait_ms;            /* blocking wait; 0 means 300000 (5 min) */
	uint64_t start_index;        /* the index of a read the caller already made
					and acted on: the first call blocks from it
					instead of reading again; 0: read first */
	uint64_t min_interval_ms;    /* 0 means 100 */
	uint64_t backoff_base_ms;    /* 0 means 250 */
	uint64_t backoff_cap_ms;     /* 0 means 30000 */
	size_t max_response;         /* 0 means 16 MiB; past it: on_error with
					MN_TOO_LARGE (see watch_error_fn) */
	watch_change_fn on_change;
	watch_error_fn on_error;     /* may be NULL */
	void *ctx;
	const struct mn_clock *clock; /* NULL: the system clock */
};

/* Starts the watch thread; the first call goes out at once (a plain read,
 * or a blocking one from start_index). NULL when out of memory or the
 * thread cannot start. */
struct watch *watch_start(const struct watch_opts *opts);

/* Stops the thread, cancelling a blocked call: returns within ~100 ms.
 * Callbacks are not called after this returns. NULL is a no-op. */
void watch_stop(struct watch *w);

/* How far behind the agent the watch may be: the milliseconds since its
 * last complete, successful answer (since it started, before the first),
 * whatever the call in flight does: a body trickling in or an agent that
 * never answers shows here before the call's deadline abandons it. A
 * healthy agent answers a blocking call at least every wait_ms (plus its
 * jitter). Failures are logged by the watch itself (once per kind, and
 * when the agent answers again). */
uint64_t watch_stale_ms(struct watch *w);

/* ---- the rules, pure ------------------------------------------------- */

/* The index to send next, given the one sent last ('sent', 0 for the first
 * call) and the X-Consul-Index just received ('got', 0 when missing or
 * malformed). Never 0 after the first call; 1 after a reset. */
uint64_t watch_next_index(uint64_t sent, uint64_t got);

/* true when the answer is a change worth delivering: the first answer, or
 * an index different from the last delivered one AND a body hash different
 * from the last delivered one. */
bool watch_is_change(bool first, uint64_t last_index, uint64_t last_hash, uint64_t index,
		     uint64_t hash);

/* The libcurl timeout for a blocking call with this wait: above
 * wait + wait/16 (Consul's jitter) plus a margin for the answer. */
uint64_t watch_call_timeout_ms(uint64_t wait_ms);

/* 64-bit FNV-1a of a body, for change detection. */
uint64_t watch_hash(const char *body, size_t len);

/* The hash an answer is compared by: its body's, marked when the answer
 * was a 404 (a KV prefix with no keys), so that "no keys" and an empty
 * body differ. */
uint64_t watch_answer_hash(const char *body, size_t len, bool not_found);

/* What one watch remembers between calls. The thread drives it with the
 * clock's time; unit tests drive it with canned answers and a hand clock. */
struct watch_state {
	uint64_t sent;            /* index sent on the last call; 0: none yet or reset */
	uint64_t last_index;      /* index of the last delivered answer */
	uint64_t last_hash;       /* body hash of the last delivered answer */
	bool delivered;           /* something was delivered */
	uint64_t next_start;      /* no call starts before this time */
	uint64_t min_interval_ms;
	struct backoff backoff;
	uint64_t rng;             /* for the interval jitter */
};

/* 'seed' 0 picks one from the clock (tests pass a fixed one). */
void watch_state_init(struct watch_state *s, uint64_t min_interval_ms, uint64_t backoff_base_ms,
		      uint64_t backoff_cap_ms, uint64_t seed);

/* Goes on from a read the caller made at 'index': the next call blocks
 * from it, and only an answer with a new index and body is a change. */
void watch_state_resume(struct watch_state *s, uint64_t index);

/* Milliseconds to wait at 'now' before the next call may start. */
uint64_t watch_state_delay(const struct watch_state *s, uint64_t now);

/* A call starts at 'now': the following one waits the minimum interval
 * plus up to half of it again as jitter. Returns the index to send (0: a
 * plain read, no blocking). */
uint64_t watch_state_start(struct watch_state *s, uint64_t now);

/* An answer arrived with this X-Consul-Index (0 when missing) and body hash:
 * true when it is to be delivered. Resets the backoff. */
bool watch_state_answer(struct watch_state *s, uint64_t index, uint64_t hash);

/* An answer at 'index' (not 0) whose body was too large to read: an
 * answer all the same (the next call blocks from 'index', the backoff
 * resets), not delivered, and the next answer that fits is delivered
 * whatever its body. */
void watch_state_too_large(struct watch_state *s, uint64_t index);

/* A call failed at 'now': the index is reset (the next call is a plain
 * read, so the first write after an agent restart is seen at once) and the
 * next call waits a backoff delay, which is returned. */
uint64_t watch_state_failed(struct watch_state *s, uint64_t now);

#endif
