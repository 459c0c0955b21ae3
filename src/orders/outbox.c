#include "orders/outbox.h"

#include <stdlib.h>

void outbox_events_free(struct outbox_event *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(v[i].event_id);
		free(v[i].type);
		free(v[i].body);
	}
	free(v);
}

enum mn_err outbox_pending(struct outbox *o, size_t limit, struct outbox_event **out, size_t *n,
			   char *err, size_t errlen)
{
	return o->ops->pending(o, limit, out, n, err, errlen);
}

enum mn_err outbox_mark_sent(struct outbox *o, const int64_t *ids, size_t n, int64_t now_ms,
			     char *err, size_t errlen)
{
	return o->ops->mark_sent(o, ids, n, now_ms, err, errlen);
}

enum mn_err outbox_stats(struct outbox *o, struct outbox_stats *out, char *err, size_t errlen)
{
	return o->ops->stats(o, out, err, errlen);
}

enum mn_err outbox_prune(struct outbox *o, int64_t sent_before_ms, size_t max_rows, size_t *pruned,
			 char *err, size_t errlen)
{
	return o->ops->prune(o, sent_before_ms, max_rows, pruned, err, errlen);
}
