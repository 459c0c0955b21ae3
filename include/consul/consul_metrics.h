/* The Consul modules' metrics: meshnode_consul_requests_total, counted by
 * the client's observer, and meshnode_consul_registered, read from the
 * registrar at each render. */
#ifndef MESHNODE_CONSUL_CONSUL_METRICS_H
#define MESHNODE_CONSUL_CONSUL_METRICS_H

#include <stdatomic.h>

#include "consul/registrar.h"
#include "core/error.h"
#include "metrics/metrics.h"

struct consul_metrics {
	struct metric_family *requests;	  /* {op,result} counter */
	struct metric_family *registered; /* gauge */
	struct registrar *_Atomic registrar; /* borrowed; NULL (until set): 0; set
					      * while the server runs */
};

/* Registers the families and their collect callback in 'registry' (which
 * must not outlive 'cm'): MN_OK or MN_NOMEM. */
enum mn_err consul_metrics_register(struct consul_metrics *cm, struct metrics *registry);

/* A consul observer (consul_set_observer()) with a struct consul_metrics as
 * its context. */
void consul_metrics_observe(void *ctx, const char *op, enum mn_err result);

#endif
