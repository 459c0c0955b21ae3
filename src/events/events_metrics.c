#include "events/events_metrics.h"

enum mn_err events_metrics_register(struct events_publisher_opts *o, struct metrics *registry)
{
	o->published = metrics_counter(
		registry, "meshnode_events_published_total",
		"Events sent to the broker, by result: confirmed, refused (a nack or a return), "
		"unconfirmed (no confirm in time or the connection went); the last two go again.",
		1, (const char *[]){"result"});
	o->outbox = metrics_gauge(registry, "meshnode_events_outbox",
				  "Events in the outbox, by state: pending, sent (kept "
				  "until events.retention_ms).",
				  1, (const char *[]){"state"});
	o->oldest = metrics_gauge(registry, "meshnode_events_oldest_pending_seconds",
				  "Age of the oldest event not sent yet (0: none).", 0, NULL);
	o->pruned = metrics_counter(registry, "meshnode_events_pruned_total",
				    "Sent events deleted from the outbox after "
				    "events.retention_ms.",
				    0, NULL);
	o->oldest_sent = metrics_gauge(
		registry, "meshnode_events_oldest_sent_seconds",
		"Age of the oldest sent event kept (0: none): about events.retention_ms while "
		"pruning keeps up.",
		0, NULL);
	if (!o->published || !o->outbox || !o->oldest || !o->pruned || !o->oldest_sent)
		return MN_NOMEM;
	return MN_OK;
}
