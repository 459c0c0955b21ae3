#include "http/system_metrics.h"

static void collect(struct metrics *m, void *ctx)
{
	struct system_metrics *sm = ctx;
	const struct config *cfg = config_store_get(sm->system->config);

	(void)m;
	metric_set(sm->kv_index, NULL, (double)cfg->kv_index);
	config_store_put(sm->system->config, cfg);
	metric_set(sm->ready, NULL, system_handlers_is_ready(sm->system) ? 1 : 0);
}

enum mn_err system_metrics_register(struct system_metrics *sm, struct metrics *registry,
				    const struct system_handlers *s)
{
	static const char *const version_labels[] = {"version"};

	sm->system = s;
	sm->kv_index = metrics_gauge(registry, "meshnode_config_kv_index",
				     "The Consul KV index of the configuration in force.", 0, NULL);
	sm->ready = metrics_gauge(registry, "meshnode_ready", "1 while the node reports ready.", 0,
				  NULL);
	sm->build_info =
		metrics_gauge(registry, "meshnode_build_info",
			      "Build information; the value is always 1.", 1, version_labels);
	if (!sm->kv_index || !sm->ready || !sm->build_info)
		return MN_NOMEM;
	metric_set(sm->build_info, (const char *[]){MESHNODE_VERSION}, 1);
	return metrics_on_collect(registry, collect, sm);
}
