#include "store/orders_repo.h"

enum mn_err orders_repo_create_order(struct orders_repo *r, int64_t user_id, const char *product,
				     int64_t quantity, struct order *out, char *err, size_t errlen)
{
	return r->ops->create(r, user_id, product, quantity, out, err, errlen);
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
