/* HTTP handlers of the orders API: parse, call the service, reply. */
#ifndef MESHNODE_ORDERS_ORDERS_HANDLERS_H
#define MESHNODE_ORDERS_ORDERS_HANDLERS_H

#include "http/router.h"
#include "orders/orders_service.h"

/* Registers POST /orders, GET /orders and GET /orders/{id}. 'svc' is
 * borrowed and must outlive the router. MN_INVALID when a route is already
 * taken, MN_NOMEM when out of memory. */
enum mn_err orders_handlers_register(struct http_router *r, struct orders_service *svc);

#endif
