/* The Connect modules' metrics: meshnode_connect_authz_total{source,result},
 * the authorization decisions (connect/authz.h counts them, with at most
 * AUTHZ_METRIC_SOURCES_MAX source values before "other"). */
#ifndef MESHNODE_CONNECT_CONNECT_METRICS_H
#define MESHNODE_CONNECT_CONNECT_METRICS_H

#include "core/error.h"
#include "metrics/metrics.h"

struct connect_metrics {
	struct metric_family *authz; /* {source,result} counter: for
					connect_authz_opts.metric */
};

/* Registers the families in 'registry' (which keeps them; 'cm' only holds
 * borrowed pointers): MN_OK or MN_NOMEM. */
enum mn_err connect_metrics_register(struct connect_metrics *cm, struct metrics *registry);

#endif
