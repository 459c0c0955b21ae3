#include "peers/peers_metrics.h"

#include <string.h>

/* 0 closed, 1 half open, 2 open. Only circuits that are not closed have a
 * series: a mesh of 10,000 instances would otherwise make 10,000 of them. */
static void collect_circuit(void *ctx, const char *service, const char *node, const char *instance,
			    const char *state)
{
	struct peers_metrics *pm = ctx;
	double v = strcmp(state, "open") == 0 ? 2 : strcmp(state, "half_open") == 0 ? 1 : 0;

	if (v > 0)
		metric_set(pm->circuit, (const char *[]){service, node, instance}, v);
}

static void collect_peer_view(void *ctx, const struct peer_snapshot *snap, uint64_t stale_ms)
{
	struct peers_metrics *pm = ctx;

	metric_set(pm->instances, (const char *[]){snap->service}, (double)snap->passing);
	metric_set(pm->panic, (const char *[]){snap->service}, snap->panic ? 1 : 0);
	metric_set(pm->stale, (const char *[]){snap->service}, (double)stale_ms / 1000.0);
	peer_client_foreach_instance(snap, collect_circuit, pm);
}

static void collect(struct metrics *m, void *ctx)
{
	struct peers_metrics *pm = ctx;

	(void)m;
	/* the series of services no longer followed and of circuits closed
	 * since go: only what is set now stays */
	metric_sweep_begin(pm->instances);
	metric_sweep_begin(pm->panic);
	metric_sweep_begin(pm->stale);
	metric_sweep_begin(pm->circuit);
	if (pm->resolver)
		resolver_foreach(pm->resolver, collect_peer_view, pm);
	metric_sweep_end(pm->instances);
	metric_sweep_end(pm->panic);
	metric_sweep_end(pm->stale);
	metric_sweep_end(pm->circuit);
}

enum mn_err peers_metrics_register(struct peers_metrics *pm, struct metrics *registry)
{
	static const char *const peer_labels[] = {"service", "outcome"};
	static const char *const circuit_labels[] = {"service", "node", "instance"};

	pm->calls.requests = metrics_counter(
		registry, "meshnode_peer_requests_total",
		"Attempts of calls to peer services, by service and outcome.", 2, peer_labels);
	pm->calls.duration =
		metrics_histogram(registry, "meshnode_peer_request_duration_seconds",
				  "Time of attempts of calls to peer services.", 1, peer_labels,
				  metrics_http_buckets, metrics_http_buckets_count);
	pm->instances = metrics_gauge(registry, "meshnode_peer_instances",
				      "Passing instances of a peer service in the node's view.", 1,
				      peer_labels);
	pm->panic = metrics_gauge(registry, "meshnode_peer_panic",
				  "1 while fewer instances of a peer service pass than its "
				  "panic threshold and every registered one is called.",
				  1, peer_labels);
	pm->stale = metrics_gauge(registry, "meshnode_peer_view_stale_seconds",
				  "How long the view of a peer service has been out of touch "
				  "with Consul (0 while the agent answers).",
				  1, peer_labels);
	pm->circuit = metrics_gauge(registry, "meshnode_peer_circuit_state",
				    "Circuit of a peer instance: 0 closed, 1 half open, 2 open.", 3,
				    circuit_labels);
	if (!pm->calls.requests || !pm->calls.duration || !pm->instances || !pm->panic ||
	    !pm->stale || !pm->circuit)
		return MN_NOMEM;
	return metrics_on_collect(registry, collect, pm);
}
