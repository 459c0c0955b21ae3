/* Three ways for a node to check a user on a peer, measured side by side
 * against the same users nodes and agent (bench/mesh_scale.sh):
 *   discovery  meshnode's resolver + peer client: a watched snapshot, no
 *              Consul request per call
 *   fixed      GET /users/1 on fixed addresses, no discovery: each thread
 *              goes round robin over FIXED_URLS (the same users processes
 *              discovery spreads over), starting at its own index
 * Every way sends a traceparent, as a node passing trace context on does
 * (the peer client always does): what differs is finding the address.
 *   per_call   the reference design: GET /v1/health/service/users?passing
 *              on every call, then GET /users/1 on an instance it returned
 * Each worker thread keeps its own keep-alive connections. Prints one line
 * per mode: calls/s, p50 and p99 in ms, failures, and the process's CPU time
 * (user + system) per call in microseconds.
 * Usage: peer_modes CONSUL_ADDR FIXED_URLS THREADS SECONDS [MODES]
 *   FIXED_URLS  comma-separated full URLs ("http://127.0.0.1:8081/users/1,...")
 *   MODES       comma-separated, default "discovery,fixed,per_call" */
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/client.h"
#include "consul/health.h"
#include "core/clock.h"
#include "core/log.h"
#include "peer_api.h"

#define MAX_SAMPLES 2000000
#define MAX_URLS 16

enum mode { DISCOVERY, FIXED, PER_CALL, MODE_COUNT };
static const char *const mode_names[] = {"discovery", "fixed", "per_call"};

struct run {
	enum mode mode;
	struct bench_peers *bp;
	const char *urls[MAX_URLS];
	size_t nurls;
	uint64_t until_ns;
	pthread_mutex_t lock;
	double *samples;  /* ms */
	size_t n;
	unsigned long failures;
};

struct worker_arg {
	struct run *r;
	unsigned index;
};

/* A call to a users instance at 'url' as any node of the mesh makes it:
 * with a W3C traceparent (a new trace per call here), which the peer
 * client passes on too, so that the ways differ only in how they find
 * the address. */
static bool get(struct httpc *h, const char *url, struct httpc_response *res)
{
	static _Thread_local uint64_t rng;
	char err[256], tp[80];
	const char *headers[] = {tp, NULL};

	if (rng == 0)
		rng = clock_monotonic_ns() | 1;
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	snprintf(tp, sizeof(tp), "traceparent: 00-%016llx%016llx-%016llx-01",
		 (unsigned long long)rng, (unsigned long long)(rng * 3), (unsigned long long)(rng | 1));
	return httpc_perform(h,
			     &(struct httpc_request){.method = "GET", .url = url, .headers = headers,
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

	if (consul_call(bench_peers_consul(r->bp), agent,
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
	struct worker_arg *wa = arg;
	struct run *r = wa->r;
	struct httpc *a = r->mode == PER_CALL ? consul_conn_create(bench_peers_consul(r->bp))
					      : httpc_create();
	struct httpc *b = httpc_create();
	struct httpc_response res;
	unsigned rr = wa->index;

	httpc_response_init(&res);
	while (clock_monotonic_ns() < r->until_ns) {
		uint64_t t0 = clock_monotonic_ns();
		bool ok;

		switch (r->mode) {
		case DISCOVERY:
			ok = bench_peers_call(r->bp, "/users/1", &res);
			break;
		case FIXED:
			ok = get(a, r->urls[rr++ % r->nurls], &res);
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
	if (r->mode == PER_CALL)
		consul_conn_destroy(bench_peers_consul(r->bp), a);
	else
		httpc_destroy(a);
	httpc_destroy(b);
	return NULL;
}

static double tv_us(const struct timeval *tv)
{
	return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* Splits a comma-separated list in place; returns the count, 0 when empty
 * or past 'max'. */
static size_t split(char *s, const char **out, size_t max)
{
	size_t n = 0;

	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (n == max)
			return 0;
		out[n++] = tok;
	}
	return n;
}

int main(int argc, char **argv)
{
	const char *mode_list[MODE_COUNT];
	const char *urls[MAX_URLS];
	struct bench_peers *bp;
	struct rusage ru0, ru1;
	char err[256], *modes;
	size_t nurls, nmodes;
	int threads, seconds;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s CONSUL_ADDR FIXED_URLS THREADS SECONDS [MODES]\n",
			argv[0]);
		return 2;
	}
	threads = atoi(argv[3]);
	seconds = atoi(argv[4]);
	modes = argc == 6 ? argv[5] : (char[]){"discovery,fixed,per_call"};
	nurls = split(argv[2], urls, MAX_URLS);
	nmodes = split(modes, mode_list, MODE_COUNT);
	if (threads < 1 || threads > 256 || seconds < 1 || seconds > 60 || nurls == 0 ||
	    nmodes == 0)
		return 2;
	log_set_level(MN_LOG_ERROR);
	httpc_global_init();
	bp = bench_peers_open(argv[1], err, sizeof(err));
	if (bp == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	/* the watch's first answer is not part of any mode's time */
	if (bench_peers_count(bp) < 1)
		fprintf(stderr, "peer_modes: no instance of 'users' in consul yet\n");
	for (size_t k = 0; k < nmodes; k++) {
		struct run r = {.bp = bp, .nurls = nurls};
		pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
		struct worker_arg *args = calloc((size_t)threads, sizeof(*args));

		for (r.mode = DISCOVERY; r.mode < MODE_COUNT; r.mode++)
			if (strcmp(mode_list[k], mode_names[r.mode]) == 0)
				break;
		if (r.mode == MODE_COUNT) {
			fprintf(stderr, "unknown mode '%s'\n", mode_list[k]);
			return 2;
		}
		memcpy(r.urls, urls, nurls * sizeof(*urls));
		r.samples = malloc(MAX_SAMPLES * sizeof(double));
		pthread_mutex_init(&r.lock, NULL);
		getrusage(RUSAGE_SELF, &ru0);
		r.until_ns = clock_monotonic_ns() + (uint64_t)seconds * 1000000000ULL;
		for (int i = 0; i < threads; i++) {
			args[i] = (struct worker_arg){&r, (unsigned)i};
			pthread_create(&tids[i], NULL, worker, &args[i]);
		}
		for (int i = 0; i < threads; i++)
			pthread_join(tids[i], NULL);
		getrusage(RUSAGE_SELF, &ru1);
		qsort(r.samples, r.n, sizeof(double), cmp);
		/* the client's own CPU per call (user + system): steadier than
		 * calls/s on a shared machine, and all of it is the way's cost */
		printf("%s %.0f %.3f %.3f %lu %.1f\n", mode_names[r.mode], (double)r.n / seconds,
		       r.n ? r.samples[r.n / 2] : 0.0, r.n ? r.samples[r.n * 99 / 100] : 0.0,
		       r.failures, r.n ? (tv_us(&ru1.ru_utime) - tv_us(&ru0.ru_utime) +
					  tv_us(&ru1.ru_stime) - tv_us(&ru0.ru_stime)) / (double)r.n
				       : 0.0);
		fflush(stdout);
		free(r.samples);
		free(args);
		free(tids);
		pthread_mutex_destroy(&r.lock);
	}
	bench_peers_close(bp);
	httpc_global_cleanup();
	return 0;
}
