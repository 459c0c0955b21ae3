/* GET /peers/{service}: the node's current view of a peer service. */
#ifndef MESHNODE_PEERS_PEERS_HANDLERS_H
#define MESHNODE_PEERS_PEERS_HANDLERS_H

#include "http/router.h"
#include "peers/users_peer_http.h"

struct peers_handlers {
	struct peer_client *client;                    /* borrowed */
	const struct peer_settings_source *settings;   /* borrowed */
};

/* Registers GET /peers/{service}; 'h' must outlive the router. */
enum mn_err peers_handlers_register(struct http_router *r, const struct peers_handlers *h);

#endif
