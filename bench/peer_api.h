/* The one place where bench programs (bench/peer_modes.c, bench/mesh_scale.c)
 * use meshnode's resolver and peer client: a Consul client, a resolver and a
 * peer client made the way the node makes them (same metric families), and
 * calls to the service 'users'. When those signatures change, only
 * bench/peer_api.c follows. */
#ifndef MESHNODE_BENCH_PEER_API_H
#define MESHNODE_BENCH_PEER_API_H

#include <stdbool.h>

#include "consul/client.h"
#include "http/client.h"

struct bench_peers;

/* A Consul client for the agent at 'consul_addr', a resolver and a peer
 * client; NULL with the reason in err. */
struct bench_peers *bench_peers_open(const char *consul_addr, char *err, size_t errlen);
/* Frees everything; no call may be running. NULL does nothing. */
void bench_peers_close(struct bench_peers *bp);

/* The Consul client (borrowed), for the modes that ask the agent directly. */
struct consul *bench_peers_consul(struct bench_peers *bp);

/* GET 'path' on an instance of 'users' through the resolver's snapshot and
 * the peer client (round robin, 2 s per attempt, 2 retries): true for a 200. */
bool bench_peers_call(struct bench_peers *bp, const char *path, struct httpc_response *res);

/* The instances of 'users' in the resolver's current snapshot (the first
 * use starts the watch and waits up to 2 s for Consul); -1 while Consul has
 * not answered. */
long bench_peers_count(struct bench_peers *bp);

#endif
