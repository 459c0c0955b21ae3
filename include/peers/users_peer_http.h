/* The orders module's users peer over peer calls: GET /users/{id} on a
 * healthy `users` instance. Settings are read at each call from the
 * configuration in force (peers.users.* are dynamic). */
#ifndef MESHNODE_PEERS_USERS_PEER_HTTP_H
#define MESHNODE_PEERS_USERS_PEER_HTTP_H

#include "orders/users_peer.h"
#include "peers/peer_client.h"

/* Where the settings of a peer service come from. get() fills *s for
 * 'service' and returns a token keeping its strings alive until put(). */
struct peer_settings_source {
	const void *(*get)(void *ctx, const char *service, struct peer_settings *s);
	void (*put)(void *ctx, const void *token);
	void *ctx;
};

struct users_peer_http {
	struct peer_client *client;              /* borrowed */
	const struct peer_settings_source *settings;   /* borrowed */
	const char *service;                     /* "users" */
};

/* A users_peer whose ctx is 'u' (which must outlive it). */
struct users_peer users_peer_http(struct users_peer_http *u);

#endif
