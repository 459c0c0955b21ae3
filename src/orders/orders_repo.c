#include "orders/orders_repo.h"

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

enum mn_err orders_repo_create_order(struct orders_repo *r, int64_t user_id, const char *product,
				     int64_t quantity, struct order *out, char *err, size_t errlen)
{
	return r->ops->create(r, user_id, product, quantity, NULL, out, err, errlen);
}

enum mn_err orders_repo_create_order_event(struct orders_repo *r, int64_t user_id,
					   const char *product, int64_t quantity,
					   const char *event_id, struct order *out, char *err,
					   size_t errlen)
{
	if (event_id == NULL)
		return mn_error(err, errlen, MN_INTERNAL, "internal error");
	return r->ops->create(r, user_id, product, quantity, event_id, out, err, errlen);
}

enum mn_err orders_repo_outbox_pending(struct orders_repo *r, size_t limit,
				       struct outbox_event **out, size_t *n, char *err,
				       size_t errlen)
{
	return r->ops->outbox_pending(r, limit, out, n, err, errlen);
}

enum mn_err orders_repo_outbox_mark_sent(struct orders_repo *r, const int64_t *ids, size_t n,
					 int64_t now_ms, char *err, size_t errlen)
{
	return r->ops->outbox_mark_sent(r, ids, n, now_ms, err, errlen);
}

enum mn_err orders_repo_outbox_stats(struct orders_repo *r, struct outbox_stats *out, char *err,
				     size_t errlen)
{
	return r->ops->outbox_stats(r, out, err, errlen);
}

enum mn_err orders_repo_outbox_prune(struct orders_repo *r, int64_t sent_before_ms, size_t max_rows,
				     size_t *pruned, char *err, size_t errlen)
{
	return r->ops->outbox_prune(r, sent_before_ms, max_rows, pruned, err, errlen);
}

enum mn_err orders_repo_get(struct orders_repo *r, int64_t id, struct order *out)
{
	return r->ops->get(r, id, out);
}

enum mn_err orders_repo_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			     size_t *n)
{
	return r->ops->list(r, limit, offset, out, n);
}

enum mn_err orders_repo_ping(struct orders_repo *r, char *err, size_t errlen)
{
	return r->ops->ping(r, err, errlen);
}

void orders_repo_health(struct orders_repo *r, struct store_health *out)
{
	r->ops->health(r, out);
}

void orders_repo_destroy(struct orders_repo *r)
{
	if (r)
		r->ops->destroy(r);
}
