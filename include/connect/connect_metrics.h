/* Connect's metric: meshnode_connect_leaf_expiry_seconds, the seconds
 * until this node's leaf certificate expires, read from the identity's
 * current snapshot at each render (NaN before the first). */
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
};

/* Registers the gauge and its collect callback in 'registry' (which must
 * not outlive 'cm'; set cm->identity, and wall_ms for tests, before or
 * after). MN_OK or MN_NOMEM. */
enum mn_err connect_metrics_register(struct connect_metrics *cm, struct metrics *registry);

#endif
