#include "connect/connect_metrics.h"

#include <math.h>

#include "core/clock.h"

static void collect(struct metrics *m, void *ctx)
{
	struct connect_metrics *cm = ctx;
	struct connect_identity *id = atomic_load(&cm->identity);
	struct connect_snapshot *s = id != NULL ? connect_identity_get(id) : NULL;
	int64_t now;

	(void)m;
	if (s == NULL) {
		metric_set(cm->leaf_expiry, NULL, NAN);
		return;
	}
	now = cm->wall_ms != NULL ? cm->wall_ms(cm->wall_ctx) : clock_wall_ms();
	metric_set(cm->leaf_expiry, NULL, connect_snapshot_expires_in(s, now));
	connect_snapshot_release(s);
}

enum mn_err connect_metrics_register(struct connect_metrics *cm, struct metrics *registry)
{
	static const char *const authz_labels[] = {"source", "result"};
	static const char *const handshake_labels[] = {"result"};

	cm->leaf_expiry = metrics_gauge(registry, "meshnode_connect_leaf_expiry_seconds",
					"Seconds until this node's Connect leaf certificate "
					"expires (NaN before the agent gave one).",
					0, NULL);
	if (cm->leaf_expiry == NULL)
		return MN_NOMEM;
	cm->authz = metrics_counter(registry, "meshnode_connect_authz_total",
				    "Connect authorization decisions, by source service and "
				    "result (allow, deny, error_open, error_closed).",
				    2, authz_labels);
	if (cm->authz == NULL)
		return MN_NOMEM;
	cm->handshakes = metrics_counter(registry, "meshnode_connect_handshakes_total",
					 "TLS connection attempts on the Connect service port, by "
					 "result (ok, denied, bad_certificate, no_certificate, "
					 "protocol, incomplete).",
					 1, handshake_labels);
	if (cm->handshakes == NULL)
		return MN_NOMEM;
	return metrics_on_collect(registry, collect, cm);
}
