/* The events publisher's metrics: meshnode_events_published_total,
 * meshnode_events_outbox, meshnode_events_oldest_pending_seconds,
 * meshnode_events_pruned_total, meshnode_events_oldest_sent_seconds. */
#ifndef MESHNODE_EVENTS_EVENTS_METRICS_H
#define MESHNODE_EVENTS_EVENTS_METRICS_H

#include "core/error.h"
#include "events/publisher.h"
#include "metrics/metrics.h"

/* Registers the families in 'registry' into the metric fields of 'o' (the
 * publisher's options): MN_OK or MN_NOMEM. */
enum mn_err events_metrics_register(struct events_publisher_opts *o, struct metrics *registry);

#endif
