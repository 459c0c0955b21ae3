/* Three ways for a node to check a user on a peer, measured side by side
 * against the same users nodes and agent (make bench):
 *   discovery  meshnode's resolver + peer client: a watched snapshot, no
 *              Consul request per call
 *   fixed      GET /users/1 on one fixed address (no discovery at all)
 *   per_call   the reference design: GET /v1/health/service/users?passing
 *              on every call, then GET /users/1 on an instance it returned
 * Each worker thread keeps its own keep-alive connections. Prints one line
 * per mode: calls/s, p50 and p99 in ms, failures.
 * Usage: peer_modes CONSUL_ADDR FIXED_URL THREADS SECONDS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/client.h"
#include "consul/health.h"
#include "core/clock.h"
#include "core/log.h"
#include "peers/peer_client.h"
#include "peers/resolver.h"

#define MAX_SAMPLES 2000000

enum mode { DISCOVERY, FIXED, PER_CALL };
static const char *const mode_names[] = {"discovery", "fixed", "per_call"};

struct run {
	enum mode mode;
	struct consul *consul;
	struct peer_client *pc;
	const char *fixed_url;
	uint64_t until_ns;
	pthread_mutex_t lock;
	double *samples;  /* ms */
	size_t n;
	unsigned long failures;
};

static const struct peer_settings settings = {
	.timeout_ms = 2000, .retries = 2, .lb = "round_robin", .tag = "",
	.breaker_failures = 5, .breaker_open_ms = 10000,
};

static bool get(struct httpc *h, const char *url, struct httpc_response *res)
{
	char err[256];

	return httpc_perform(h,
			     &(struct httpc_request){.method = "GET", .url = url,
						     .timeout_ms = 2000, .max_response = 1 << 20},
			     res, err, sizeof(err)) == MN_OK &&
	       res->status == 200;
}

/* The reference design: ask the agent, then call what it said. */
static bool per_call(struct run *r, struct httpc *agent, struct httpc *peer, unsigned *rr,
		     struct httpc_response *res)
{
	struct consul_instance *inst;
	char err[256], url[512];
	size_t n;

	if (consul_call(r->consul, agent,
			&(struct consul_call){.op = "bench", .method = "GET",
					      .path = "/v1/health/service/users?passing=1",
					      .timeout_ms = 2000},
			res, err, sizeof(err)) != MN_OK)
		return false;
	if (consul_health_parse(res->body.data, res->body.len, &inst, &n, NULL, err,
				sizeof(err)) != MN_OK)
		return false;
	if (n == 0) {
		consul_instances_free(inst, n);
		return false;
	}
	snprintf(url, sizeof(url), "http://%s:%d/users/1", inst[*rr % n].address,
		 inst[*rr % n].port);
	(*rr)++;
	consul_instances_free(inst, n);
	return get(peer, url, res);
}

static void *worker(void *arg)
{
	struct run *r = arg;
	struct httpc *a = httpc_create(), *b = httpc_create();
	struct httpc_response res;
	unsigned rr = 0;
	char err[256];

	httpc_response_init(&res);
	while (clock_monotonic_ns() < r->until_ns) {
		uint64_t t0 = clock_monotonic_ns();
		bool ok;

		switch (r->mode) {
		case DISCOVERY:
			ok = peer_call(r->pc, &settings,
				       &(struct peer_request){.service = "users", .method = "GET",
							      .path = "/users/1"},
				       &res, err, sizeof(err)) == MN_OK &&
			     res.status == 200;
			break;
		case FIXED:
			ok = get(a, r->fixed_url, &res);
			break;
		default:
			ok = per_call(r, a, b, &rr, &res);
			break;
		}
		pthread_mutex_lock(&r->lock);
		if (!ok)
			r->failures++;
		else if (r->n < MAX_SAMPLES)
			r->samples[r->n++] = (double)(clock_monotonic_ns() - t0) / 1e6;
		pthread_mutex_unlock(&r->lock);
	}
	httpc_response_release(&res);
	httpc_destroy(a);
	httpc_destroy(b);
	return NULL;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
	struct consul *consul;
	struct resolver *resolver;
	struct peer_client *pc;
	char err[256];
	int threads, seconds;

	if (argc != 5) {
		fprintf(stderr, "usage: %s CONSUL_ADDR FIXED_URL THREADS SECONDS\n", argv[0]);
		return 2;
	}
	threads = atoi(argv[3]);
	seconds = atoi(argv[4]);
	if (threads < 1 || threads > 256 || seconds < 1 || seconds > 60)
		return 2;
	log_set_level(MN_LOG_ERROR);
	httpc_global_init();
	consul = consul_create(&(struct consul_opts){.address = argv[1]}, err, sizeof(err));
	if (consul == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	resolver = resolver_create(&(struct resolver_opts){.consul = consul});
	pc = peer_client_create(resolver, NULL, NULL);
	for (enum mode m = DISCOVERY; m <= PER_CALL; m++) {
		struct run r = {.mode = m, .consul = consul, .pc = pc, .fixed_url = argv[2]};
		pthread_t *tids = calloc((size_t)threads, sizeof(*tids));

		r.samples = malloc(MAX_SAMPLES * sizeof(double));
		pthread_mutex_init(&r.lock, NULL);
		r.until_ns = clock_monotonic_ns() + (uint64_t)seconds * 1000000000ULL;
		for (int i = 0; i < threads; i++)
			pthread_create(&tids[i], NULL, worker, &r);
		for (int i = 0; i < threads; i++)
			pthread_join(tids[i], NULL);
		qsort(r.samples, r.n, sizeof(double), cmp);
		printf("%s %.0f %.3f %.3f %lu\n", mode_names[m], (double)r.n / seconds,
		       r.n ? r.samples[r.n / 2] : 0.0, r.n ? r.samples[r.n * 99 / 100] : 0.0,
		       r.failures);
		fflush(stdout);
		free(r.samples);
		free(tids);
		pthread_mutex_destroy(&r.lock);
	}
	peer_client_destroy(pc);
	resolver_destroy(resolver);
	consul_destroy(consul);
	httpc_global_cleanup();
	return 0;
}
