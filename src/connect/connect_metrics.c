#include "connect/connect_metrics.h"

enum mn_err connect_metrics_register(struct connect_metrics *cm, struct metrics *registry)
{
	static const char *const labels[] = {"source", "result"};

	cm->authz = metrics_counter(registry, "meshnode_connect_authz_total",
				    "Connect authorization decisions, by source service and "
				    "result (allow, deny, error_open, error_closed).",
				    2, labels);
	return cm->authz ? MN_OK : MN_NOMEM;
}
