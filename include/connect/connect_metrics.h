/* The Connect modules' metrics:
 * - meshnode_connect_leaf_expiry_seconds, the seconds until this node's
 *   leaf certificate expires, read from the identity's current snapshot at
 *   each render (NaN before the first);
 * - meshnode_connect_authz_total{source,result}, the authorization
 *   decisions (connect/authz.h counts them, with at most
 *   AUTHZ_METRIC_SOURCES_MAX source values before "other");
 * - meshnode_connect_handshakes_total{result}, the service port's TLS
 *   connection attempts by result (connect/connect_tls.h counts them:
 *   ok, denied, bad_certificate, no_certificate, protocol, incomplete). */
#ifndef MESHNODE_CONNECT_CONNECT_METRICS_H
#define MESHNODE_CONNECT_CONNECT_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "connect/identity.h"
#include "core/error.h"
#include "metrics/metrics.h"

struct connect_metrics {
	struct metric_family *leaf_expiry;	   /* gauge */
	struct connect_identity *_Atomic identity; /* borrowed; NULL (until set):
						      NaN */
	int64_t (*wall_ms)(void *ctx);		   /* NULL: clock_wall_ms() */
	void *wall_ctx;
	struct metric_family *authz; /* {source,result} counter: for
					connect_authz_opts.metric */
	struct metric_family *handshakes; /* {result} counter: for
					     connect_tls_opts.handshakes */
};

/* Registers the families and the gauge's collect callback in 'registry'
 * (which keeps the families and must not outlive 'cm'; set cm->identity,
 * and wall_ms for tests, before or after). MN_OK or MN_NOMEM. */
enum mn_err connect_metrics_register(struct connect_metrics *cm, struct metrics *registry);

#endif
