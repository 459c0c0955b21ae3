#include "peer_api.h"

#include <stdlib.h>

#include "metrics/metrics.h"
#include "peers/peer_client.h"
#include "peers/resolver.h"

#define SERVICE "users"

struct bench_peers {
	struct consul *consul;
	struct metrics *metrics;
	struct resolver *resolver;
	struct peer_client *pc;
};

/* The connect timeout, which also bounds how long a request may go
 * unacknowledged: the node's default; -DBENCH_CONNECT_MS=0 compares the
 * call without those checks. */
#ifndef BENCH_CONNECT_MS
#define BENCH_CONNECT_MS 250
#endif

/* As peers.users.* with the node's defaults but a 2 s attempt timeout. */
static const struct peer_settings settings = {
	.timeout_ms = 2000,
	.connect_timeout_ms = BENCH_CONNECT_MS,
	.retries = 2,
	.lb = "round_robin",
	.tag = "",
	.breaker_failures = 5,
	.breaker_open_ms = 10000,
};

struct bench_peers *bench_peers_open(const char *consul_addr, char *err, size_t errlen)
{
	static const char *const labels[] = {"service", "outcome"};
	struct bench_peers *bp = calloc(1, sizeof(*bp));
	struct peer_metrics pm;

	if (bp == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	bp->consul = consul_create(&(struct consul_opts){.address = consul_addr}, err, errlen);
	if (bp->consul == NULL)
		goto out_free;
	/* the node's own peer metric families: their cost is part of a call */
	bp->metrics = metrics_create();
	if (bp->metrics == NULL)
		goto out_nomem;
	pm.requests = metrics_counter(bp->metrics, "meshnode_peer_requests_total", NULL, 2, labels);
	pm.duration =
		metrics_histogram(bp->metrics, "meshnode_peer_request_duration_seconds", NULL, 1,
				  labels, metrics_http_buckets, metrics_http_buckets_count);
	if (pm.requests == NULL || pm.duration == NULL)
		goto out_nomem;
	/* as src/app.c wires them: the client prepares each snapshot's table */
	bp->pc = peer_client_create(NULL, &pm, NULL);
	if (bp->pc == NULL)
		goto out_nomem;
	bp->resolver = resolver_create(&(struct resolver_opts){
		.consul = bp->consul,
		.prepare = peer_client_prepare,
		.release = peer_client_release,
		.ctx = bp->pc,
	});
	if (bp->resolver == NULL)
		goto out_nomem;
	peer_client_attach(bp->pc, bp->resolver);
	return bp;

out_nomem:
	mn_error(err, errlen, MN_NOMEM, "out of memory");
out_free:
	bench_peers_close(bp);
	return NULL;
}

void bench_peers_close(struct bench_peers *bp)
{
	if (bp == NULL)
		return;
	resolver_destroy(bp->resolver); /* its watches use the client */
	peer_client_destroy(bp->pc);
	metrics_destroy(bp->metrics);
	consul_destroy(bp->consul);
	free(bp);
}

struct consul *bench_peers_consul(struct bench_peers *bp)
{
	return bp->consul;
}

bool bench_peers_call(struct bench_peers *bp, const char *path, struct httpc_response *res)
{
	char err[256];

	return peer_call(bp->pc, &settings,
			 &(struct peer_request){.service = SERVICE, .method = "GET", .path = path},
			 res, err, sizeof(err)) == MN_OK &&
	       res->status == 200;
}

long bench_peers_count(struct bench_peers *bp)
{
	const struct peer_snapshot *s;
	char err[256];
	long n;

	if (resolver_get(bp->resolver, SERVICE, NULL, &s, err, sizeof(err)) != MN_OK)
		return -1;
	n = s->known ? (long)s->n : -1;
	resolver_put(s);
	return n;
}
