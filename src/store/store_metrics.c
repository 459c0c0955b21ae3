#include "store/store_metrics.h"

static void collect(struct metrics *m, void *ctx)
{
	struct store_metrics *sm = ctx;
	struct store_health sum;

	(void)m;
	if (!sm->store->users && !sm->store->orders)
		return;
	store_health_read(sm->store, &sum);
	for (int k = STORE_FAULT_NONE + 1; k < STORE_FAULT_COUNT; k++)
		metric_set_counter(sm->write_failures, (const char *[]){store_fault_label(k)},
				   (double)sum.write_failures[k]);
	for (int k = 0; k < STORE_SHED_COUNT; k++)
		metric_set_counter(sm->shed, (const char *[]){store_shed_label(k)},
				   (double)sum.shed[k]);
}

enum mn_err store_metrics_register(struct store_metrics *sm, struct metrics *registry,
				   struct store *store)
{
	static const char *const kind_labels[] = {"kind"};

	sm->store = store;
	sm->write_failures = metrics_counter(
		registry, "meshnode_store_write_failures_total",
		"Writes the store could not make, by kind: disk_full, read_only, io.", 1,
		kind_labels);
	sm->shed = metrics_counter(
		registry, "meshnode_store_shed_total",
		"Requests refused busy (503 with Retry-After) rather than waiting for the store, "
		"by "
		"reason: timeout (database.acquire_timeout_ms), waiters (database.max_waiters).",
		1, (const char *[]){"reason"});
	if (!sm->write_failures || !sm->shed)
		return MN_NOMEM;
	return metrics_on_collect(registry, collect, sm);
}
