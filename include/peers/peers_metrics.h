/* The peers modules' metrics: the peer client's calls
 * (meshnode_peer_requests_total, meshnode_peer_request_duration_seconds)
 * and the resolver's view, read at each render (meshnode_peer_instances,
 * meshnode_peer_panic, meshnode_peer_view_stale_seconds,
 * meshnode_peer_circuit_state). */
#ifndef MESHNODE_PEERS_PEERS_METRICS_H
#define MESHNODE_PEERS_PEERS_METRICS_H

#include "core/error.h"
#include "metrics/metrics.h"
#include "peers/peer_client.h"
#include "peers/resolver.h"

struct peers_metrics {
	struct peer_metrics calls;	 /* for peer_client_create() */
	struct metric_family *instances; /* {service} gauges */
	struct metric_family *panic;
	struct metric_family *stale;
	struct metric_family *circuit; /* {service,node,instance}: not closed only */
	struct resolver *resolver;     /* borrowed; NULL (until set): no series */
};

/* Registers the families and their collect callback in 'registry' (which
 * must not outlive 'pm'): MN_OK or MN_NOMEM. */
enum mn_err peers_metrics_register(struct peers_metrics *pm, struct metrics *registry);

#endif
