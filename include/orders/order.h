/* The order model and its JSON mapping. */
#ifndef MESHNODE_ORDERS_ORDER_H
#define MESHNODE_ORDERS_ORDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ORDER_PRODUCT_MAX  200 /* bytes, after trimming */
#define ORDER_QUANTITY_MAX 1000000

struct order {
	int64_t id;
	int64_t user_id;
	char *product; /* owned */
	int64_t quantity;
};

/* An empty order (ids and quantity 0, no product). */
void order_init(struct order *o);
/* Frees the product; the order may be reused after order_init(). */
void order_release(struct order *o);

/* Sets every field (product copied). MN_NOMEM on failure, leaving the
 * order released. */
enum mn_err order_set(struct order *o, int64_t id, int64_t user_id, const char *product,
		      int64_t quantity);

/* {"id":1,"user_id":42,"product":"tea","quantity":3} (new reference); NULL
 * when out of memory. */
json_t *order_to_json(const struct order *o);

/* The body of the OrderCreated event of a stored order, the reference
 * design's fields: {"order_id":1,"product_id":"tea","quantity":3,
 * "user_id":42} (the product's name is its id here). A new string (free
 * with free()); NULL when out of memory. */
char *order_created_json(const struct order *o);

/* Frees an array of n orders as returned by a listing. */
void order_list_free(struct order *orders, size_t n);

#endif
