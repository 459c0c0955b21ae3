/* This node's Connect identity, followed live: two blocking-query watches
 * (consul/watch.h), one on the agent's CA roots and one on the leaf
 * certificate of opts->service, parsed by connect/ca.h, turned into
 * OpenSSL objects and published as an immutable, reference-counted
 * snapshot, swapped atomically: a reader holds a whole snapshot or the
 * one before, never half of one.
 *
 * A change is a change of the roots (trust domain, root IDs and
 * certificates, active root) or of the leaf (serial, certificate), never
 * of an index alone. An answer is refused, with a logged reason, and the
 * last good snapshot stays, when it does not parse, when its key does not
 * match its certificate, when the leaf is another service's, or when the
 * leaf does not chain to the roots. The roots and the leaf may come in
 * either order during a rotation: a leaf that does not chain yet is held
 * and tried again with the next roots.
 *
 * OpenSSL's types appear here by their struct tags only (X509 is struct
 * x509_st, EVP_PKEY struct evp_pkey_st, X509_STORE struct x509_store_st,
 * STACK_OF(X509) struct stack_st_X509): only connect/ includes OpenSSL. */
#ifndef MESHNODE_CONNECT_IDENTITY_H
#define MESHNODE_CONNECT_IDENTITY_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connect/spiffe.h"
#include "consul/client.h"
#include "core/error.h"

struct x509_st;
struct x509_store_st;
struct stack_st_X509;
struct evp_pkey_st;

/* Consul renews a leaf at a random point between 60% and 90% of its
 * validity (agent/cache-types/connect_ca_leaf.go, calculateSoftExpiry):
 * past 90% without a new one, renewal is overdue. */
#define CONNECT_RENEW_OVERDUE_PERMILLE 900

/* One published identity: read-only for everyone once published. */
struct connect_snapshot {
	uint64_t generation; /* 1 for the first, +1 for each change */
	char trust_domain[SPIFFE_TRUST_DOMAIN_MAX + 1];
	char **root_ids; /* the roots' IDs, in the answer's order */
	size_t n_roots;
	char *active_root_id;
	uint64_t roots_index; /* X-Consul-Index of the roots answer */
	char *leaf_serial;    /* SerialNumber as the agent wrote it */
	struct spiffe_id leaf_id;
	int64_t leaf_valid_after_ms;  /* the certificate's notBefore, epoch ms */
	int64_t leaf_valid_before_ms; /* its notAfter, epoch ms */
	uint64_t leaf_index;
	struct x509_store_st *store; /* every root, for connect_verify() */
	struct stack_st_X509 *roots; /* the same roots, in order */
	struct x509_st *leaf;	     /* this node's certificate */
	struct stack_st_X509 *chain; /* certificates after it in CertPEM (a
					rotation's cross-signed root); may be
					empty, never NULL */
	struct evp_pkey_st *key;     /* its private key (EC P-256) */
	atomic_uint refs;	     /* private */
};

/* A new reference on 's' (NULL gives NULL). */
struct connect_snapshot *connect_snapshot_ref(struct connect_snapshot *s);

/* Drops a reference; the last one frees the snapshot and its OpenSSL
 * objects. NULL does nothing. */
void connect_snapshot_release(struct connect_snapshot *s);

/* true when, at 'now_ms' (epoch ms), the leaf is past
 * CONNECT_RENEW_OVERDUE_PERMILLE of its validity. */
bool connect_snapshot_renewal_overdue(const struct connect_snapshot *s, int64_t now_ms);

/* Seconds from 'now_ms' until the leaf expires (negative once expired). */
double connect_snapshot_expires_in(const struct connect_snapshot *s, int64_t now_ms);

/* The operators' view for /health, a new reference (NULL when out of
 * memory): {"trust_domain", "service", "leaf_serial", "leaf_valid_after",
 * "leaf_expires" (RFC 3339, UTC), "leaf_expires_in_seconds",
 * "renewal_overdue", "root_ids", "active_root_id", "generation"}; for a
 * NULL snapshot {"ready": false}, else "ready": true as well. */
json_t *connect_snapshot_view(const struct connect_snapshot *s, int64_t now_ms);

struct connect_identity;

/* Called after a new snapshot is published (on the thread that made it;
 * calls are never concurrent and come in generation order). 's' is
 * borrowed: take a reference to keep it. */
typedef void (*connect_identity_change_fn)(void *ctx, struct connect_snapshot *s);

struct connect_identity_opts {
	struct consul *consul;		      /* borrowed; NULL: no watch (answers come through
						 connect_identity_feed_*, tests) */
	const char *service;		      /* the leaf's service (copied): 1 to
						 SPIFFE_SERVICE_MAX of [A-Za-z0-9_.-] */
	uint64_t wait_ms;		      /* the watches' blocking wait; 0: the watch's */
	uint64_t backoff_cap_ms;	      /* 0: the watch's */
	connect_identity_change_fn on_change; /* may be NULL */
	void *ctx;
	int64_t (*wall_ms)(void *ctx); /* epoch ms; NULL: clock_wall_ms() */
	void *wall_ctx;
};

/* Starts following: with a consul, the two watches and the thread that
 * warns (once per leaf) when renewal is overdue. NULL, with the reason in
 * 'err', for a bad service name (MN_INVALID), no memory or no thread. */
struct connect_identity *connect_identity_start(const struct connect_identity_opts *opts, char *err,
						size_t errlen);

/* Stops the watches and the thread; no callback runs after it returns.
 * Safe to call twice; NULL does nothing. connect_identity_get() still
 * works afterwards. */
void connect_identity_stop(struct connect_identity *id);

/* Stops, then frees; snapshots handed out stay valid until released.
 * NULL does nothing. */
void connect_identity_destroy(struct connect_identity *id);

/* The current snapshot, a new reference (release it), or NULL before the
 * first one (both a roots and a leaf answer accepted). Any thread. */
struct connect_snapshot *connect_identity_get(struct connect_identity *id);

/* Waits up to 'ms' for the first snapshot: MN_OK or MN_TIMEOUT. */
enum mn_err connect_identity_wait_ready(struct connect_identity *id, uint64_t ms);

/* What the watches deliver: an answer of GET /v1/agent/connect/ca/roots,
 * or of GET /v1/agent/connect/ca/leaf/<service>, with its X-Consul-Index.
 * MN_OK when it was taken: a new snapshot published, or nothing changed
 * (*changed says which; may be NULL). MN_INVALID, the reason in 'err' (and
 * logged), when refused or held (a leaf that does not chain to the
 * current roots is kept for the next roots); the published snapshot stays.
 * MN_NOMEM. */
enum mn_err connect_identity_feed_roots(struct connect_identity *id, const char *body, size_t len,
					uint64_t index, bool *changed, char *err, size_t errlen);
enum mn_err connect_identity_feed_leaf(struct connect_identity *id, const char *body, size_t len,
				       uint64_t index, bool *changed, char *err, size_t errlen);

/* Logs a warning when the current leaf is overdue for renewal at 'now_ms',
 * once per leaf: true when it logged now. The thread calls it; tests
 * too. */
bool connect_identity_check_renewal(struct connect_identity *id, int64_t now_ms);

#endif
