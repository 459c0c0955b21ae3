#include "consul/consul_metrics.h"

static const char *result_label(enum mn_err e)
{
	switch (e) {
	case MN_OK: return "success";
	case MN_NOT_FOUND: return "not_found";
	case MN_FORBIDDEN: return "forbidden";
	case MN_UNAVAILABLE:
	case MN_TIMEOUT: return "unreachable";
	default: return "error";
	}
}

void consul_metrics_observe(void *ctx, const char *op, enum mn_err result)
{
	struct consul_metrics *cm = ctx;

	metric_inc(cm->requests, (const char *[]){op, result_label(result)});
}

static void collect(struct metrics *m, void *ctx)
{
	struct consul_metrics *cm = ctx;
	struct registrar *r = atomic_load(&cm->registrar);

	(void)m;
	metric_set(cm->registered, NULL, r && registrar_registered(r) ? 1 : 0);
}

enum mn_err consul_metrics_register(struct consul_metrics *cm, struct metrics *registry)
{
	static const char *const op_labels[] = {"op", "result"};

	cm->requests = metrics_counter(registry, "meshnode_consul_requests_total",
				       "Calls to the Consul agent, by operation and result.", 2,
				       op_labels);
	cm->registered =
		metrics_gauge(registry, "meshnode_consul_registered",
			      "1 while the agent holds this node's registration.", 0, NULL);
	if (!cm->requests || !cm->registered)
		return MN_NOMEM;
	return metrics_on_collect(registry, collect, cm);
}
