#include "orders/orders_repo.h"

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

enum mn_err orders_repo_get(struct orders_repo *r, int64_t id, struct order *out)
{
	return r->ops->get(r, id, out);
}

enum mn_err orders_repo_list(struct orders_repo *r, size_t limit, size_t offset, struct order **out,
			     size_t *n)
{
	return r->ops->list(r, limit, offset, out, n);
}

void orders_repo_destroy(struct orders_repo *r)
{
	if (r)
		r->ops->destroy(r);
}
