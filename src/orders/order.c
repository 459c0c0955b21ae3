#include "orders/order.h"

#include <stdlib.h>
#include <string.h>

void order_init(struct order *o)
{
	o->id = 0;
	o->user_id = 0;
	o->product = NULL;
	o->quantity = 0;
}

void order_release(struct order *o)
{
	free(o->product);
	order_init(o);
}

enum mn_err order_set(struct order *o, int64_t id, int64_t user_id, const char *product,
		      int64_t quantity)
{
	/* Copied before the release so that 'product' may be o->product. */
	char *copy = strdup(product);

	order_release(o);
	if (copy == NULL)
		return MN_NOMEM;
	o->product = copy;
	o->id = id;
	o->user_id = user_id;
	o->quantity = quantity;
	return MN_OK;
}

json_t *order_to_json(const struct order *o)
{
	return json_pack("{s:I, s:I, s:s, s:I}", "id", (json_int_t)o->id, "user_id",
			 (json_int_t)o->user_id, "product", o->product, "quantity",
			 (json_int_t)o->quantity);
}

void order_list_free(struct order *orders, size_t n)
{
	for (size_t i = 0; i < n; i++)
		order_release(&orders[i]);
	free(orders);
}

char *order_created_json(const struct order *o)
{
	json_t *j = json_pack("{s:I, s:s, s:I, s:I}", "order_id", (json_int_t)o->id, "product_id",
			      o->product ? o->product : "", "quantity", (json_int_t)o->quantity,
			      "user_id", (json_int_t)o->user_id);
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	return text;
}
