/* Connect authorization of the callers of this service: the decision of
 * the local agent (POST /v1/agent/connect/authorize) kept in a bounded
 * cache per source service, and the intentions that name this service
 * followed with a blocking query, so that a change (allow to deny) reaches
 * new connections and open ones within a second.
 *
 * What the caller (the TLS / request layer) does: verify the peer's chain
 * and trust domain first (the agent ignores both: it decides on the source
 * service alone), then connect_authz_check(). A connection keeps its
 * decision with the generation it came from while 'kept' is true, and
 * checks again whenever connect_authz_generation() differs from it; when
 * 'kept' is false (an error, or the intentions cannot be followed now) it
 * checks again on its next request.
 *
 *     struct connect_authz_decision d;
 *     if (!connect_authz_check(a, &peer_id, peer_uri, peer_serial, &d))
 *             refuse (d.reason);
 *     conn->authz_gen = d.kept ? d.generation : 0;        (0: never equal)
 *     ...
 *     on each request:
 *     if (conn->authz_gen != connect_authz_generation(a))  check again
 *
 * The cache key is the source's namespace and service name, not the
 * certificate serial: intentions are written per source service, every
 * instance of a service has a certificate of its own and certificates
 * rotate (72 h leaves), so a key per serial would multiply the entries and
 * the agent calls by instances and rotations for the same answer; the
 * serial is still sent to the agent (Consul 1.8.7 checks no revocation
 * list with it).
 *
 * The generation changes when the intentions that name this service change
 * (first answer of the watch included), a second time AUTHZ_SETTLE_MS after
 * each such change (the agent's own cache of intentions follows the
 * servers by a blocking query of its own, and may answer by the old ones
 * for a moment after the watch saw the new), and when the watch has failed
 * for longer than stale_grace_ms (the cached decisions are dropped then).
 * While the watch fails, decisions cached before stay in force for
 * stale_grace_ms after the first failure, and nothing new is kept; past
 * it, every check asks the agent, and an agent that does not answer leaves
 * the decision to fail_open. A decision the agent did not give (error) is
 * never cached.
 *
 * Logs (component "connect"): one line per source each time its result
 * changes (its source, result and reason). Metrics:
 * meshnode_connect_authz_total{source,result} (connect/connect_metrics.h),
 * one count per check; the first AUTHZ_METRIC_SOURCES_MAX sources seen get
 * their own label value, the rest share "other".
 *
 * Thread-safe: any thread may check while the watch thread follows the
 * intentions. */
#ifndef MESHNODE_CONNECT_AUTHZ_H
#define MESHNODE_CONNECT_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connect/ca.h"
#include "connect/spiffe.h"
#include "consul/client.h"
#include "core/clock.h"
#include "core/error.h"
#include "metrics/metrics.h"

#define AUTHZ_CAPACITY_DEFAULT	    1024  /* sources remembered */
#define AUTHZ_CAPACITY_MAX	    65536 /* the most a caller may ask for */
#define AUTHZ_TTL_DEFAULT_MS	    60000 /* a stored decision's life */
#define AUTHZ_GRACE_DEFAULT_MS	    10000 /* cached decisions kept while the watch fails */
#define AUTHZ_DEADLINE_DEFAULT_MS   500	  /* one authorize call, and the wait on another's */
#define AUTHZ_WATCH_WAIT_DEFAULT_MS 60000 /* the intentions' blocking query */
#define AUTHZ_SETTLE_MS		    250	  /* the second clear after a change */
#define AUTHZ_METRIC_SOURCES_MAX    64	  /* source label values before "other" */

struct connect_authorizer;

struct connect_authz_opts {
	struct consul *consul;		/* borrowed, must outlive the handle */
	const char *target;		/* this service's name (copied): [A-Za-z0-9._-], at
					   most SPIFFE_SERVICE_MAX bytes */
	size_t capacity;		/* sources remembered (decisions, log state);
					   0: AUTHZ_CAPACITY_DEFAULT; at most
					   AUTHZ_CAPACITY_MAX; the oldest goes first */
	uint64_t ttl_ms;		/* 0: AUTHZ_TTL_DEFAULT_MS */
	uint64_t stale_grace_ms;	/* 0: AUTHZ_GRACE_DEFAULT_MS */
	long deadline_ms;		/* 0: AUTHZ_DEADLINE_DEFAULT_MS */
	uint64_t watch_wait_ms;		/* 0: AUTHZ_WATCH_WAIT_DEFAULT_MS */
	uint64_t watch_min_interval_ms; /* 0: the watch's default (100) */
	/* connect.authz_fail_open in force, read at each decision the agent
	 * could not give; NULL: false (refuse) */
	bool (*fail_open)(void *ctx);
	void *fail_open_ctx;
	const struct mn_clock *clock; /* TTL and grace; NULL: the system clock */
	struct metric_family *metric; /* meshnode_connect_authz_total, borrowed,
					 from connect_metrics_register(); NULL: none */
};

enum connect_authz_result {
	CONNECT_AUTHZ_ALLOW,
	CONNECT_AUTHZ_DENY,	    /* the agent said no, or the caller is no service */
	CONNECT_AUTHZ_ERROR_OPEN,   /* no decision from the agent; fail_open let it in */
	CONNECT_AUTHZ_ERROR_CLOSED, /* no decision from the agent; refused */
};

struct connect_authz_decision {
	bool allowed;
	enum connect_authz_result result;
	bool cached;	     /* from the cache: no agent call was made or waited on */
	bool joined;	     /* waited on another caller's call for the same source */
	bool kept;	     /* valid until the generation changes (see above) */
	uint64_t generation; /* the generation the decision belongs to */
	char reason[CONNECT_REASON_MAX + 1]; /* the agent's, or why no decision */
};

/* A new handle following the intentions of opts->target (its watch thread
 * starts at once). NULL with the reason in 'err' for a bad target or
 * capacity, out of memory or no thread. */
struct connect_authorizer *connect_authz_create(const struct connect_authz_opts *opts, char *err,
						size_t errlen);

/* Stops the watch and frees everything. No check may be running or start.
 * NULL does nothing. */
void connect_authz_destroy(struct connect_authorizer *a);

/* Decides on 'caller' (a parsed service identity whose chain and trust
 * domain the caller verified), presenting 'caller_uri' (the certificate's
 * URI, which must parse to the same namespace and service) and 'serial'
 * (may be NULL) to the agent. Fills *out; returns out->allowed. A caller
 * that is no service identity, or a URI that names another, is denied
 * without asking. Blocks about deadline_ms at most: the agent call's
 * timeout, or the wait on another caller's call for the same source. */
bool connect_authz_check(struct connect_authorizer *a, const struct spiffe_id *caller,
			 const char *caller_uri, const char *serial,
			 struct connect_authz_decision *out);

/* The current generation (never 0). Cheap: an atomic load, and the lock
 * only when a settle or a grace period is due. */
uint64_t connect_authz_generation(struct connect_authorizer *a);

/* The sources remembered now (at most the capacity). */
size_t connect_authz_sources(struct connect_authorizer *a);

/* Drops every cached decision and moves the generation on. */
void connect_authz_clear(struct connect_authorizer *a);

/* The metric's name for a result: "allow", "deny", "error_open",
 * "error_closed". */
const char *connect_authz_result_name(enum connect_authz_result r);

#endif
