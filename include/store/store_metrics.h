/* The store's metrics, read from the repositories and the pool at each
 * render: meshnode_store_write_failures_total and meshnode_store_shed_total. */
#ifndef MESHNODE_STORE_STORE_METRICS_H
#define MESHNODE_STORE_STORE_METRICS_H

#include "core/error.h"
#include "metrics/metrics.h"
#include "store/store.h"

struct store_metrics {
	struct metric_family *write_failures; /* {kind} counter */
	struct metric_family *shed;	      /* {reason} counter */
	struct store *store;	      /* borrowed; no repository: no series */
};

/* Registers the families and their collect callback in 'registry' (which
 * must not outlive 'sm'), for 'store' (borrowed, may be opened later):
 * MN_OK or MN_NOMEM. */
enum mn_err store_metrics_register(struct store_metrics *sm, struct metrics *registry,
				   struct store *store);

#endif
