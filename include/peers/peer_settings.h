/* The settings of calls to one peer service, from peers.<name>.*: the type
 * the configuration keeps (config_peer_get()) and the peer client reads. */
#ifndef MESHNODE_PEERS_PEER_SETTINGS_H
#define MESHNODE_PEERS_PEER_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

/* Dynamic: read from the config in force at each call. In a config the
 * strings are owned by it; a caller filling one itself owns its own. */
struct peer_settings {
	const char *name;             /* the peer service; NULL: the defaults of
					 one that is not configured */
	uint64_t timeout_ms;          /* per attempt */
	uint64_t connect_timeout_ms;  /* connection setup of an attempt, and how
					 long the instance's host may leave bytes
					 sent to it unacknowledged (within
					 timeout_ms); 0: timeout_ms */
	unsigned retries;             /* further attempts, each on another instance */
	const char *lb;               /* "round_robin", "random", "least_inflight" */
	const char *tag;              /* "" or NULL: any instance */
	bool dns;                     /* found through Consul's DNS interface,
					 not blocking health queries */
	bool connect;                 /* with a Connect identity given to the
					 client (peer_client_set_connect):
					 found through /v1/health/connect and
					 called over mutual TLS; false: plain
					 HTTP */
	unsigned breaker_failures;
	uint64_t breaker_open_ms;
	unsigned panic_threshold;     /* percent: shown in the view; the resolver
					 applies it (resolver_opts.panic_threshold) */
};

#endif
