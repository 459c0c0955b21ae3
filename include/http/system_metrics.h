/* The node's own gauges, beside the endpoints that say the same:
 * meshnode_config_kv_index (the KV index of the config in force, as
 * /config shows it), meshnode_ready (what /ready answers) and
 * meshnode_build_info. */
#ifndef MESHNODE_HTTP_SYSTEM_METRICS_H
#define MESHNODE_HTTP_SYSTEM_METRICS_H

#include "core/error.h"
#include "http/system_handlers.h"
#include "metrics/metrics.h"

struct system_metrics {
	struct metric_family *kv_index;
	struct metric_family *ready;
	struct metric_family *build_info; /* {version}, always 1 */
	const struct system_handlers *system;
};

/* Registers the three gauges in 'registry', and a collect callback that
 * sets the first two at each scrape from 's' (borrowed: it and 'sm' must
 * outlive the registry; 's' may be filled in after this call, before the
 * first scrape). MN_OK or MN_NOMEM. */
enum mn_err system_metrics_register(struct system_metrics *sm, struct metrics *registry,
				    const struct system_handlers *s);

#endif
