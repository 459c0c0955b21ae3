/* Per-call cost against the size of the mesh (issue 9), in one process; run
 * by bench/mesh_scale.sh once per point.
 *
 *   mesh_scale calls CONSUL_ADDR EXPECT THREADS SECONDS
 *     Follows 'users' through the resolver until its snapshot holds EXPECT
 *     instances (at most 60 s), makes one warm-up call (at most 30 s), then
 *     THREADS threads call GET /users/1 through the peer client: 0.5 s not
 *     counted, then a window of SECONDS. Prints one line:
 *       EXPECT calls/s p50_ms p99_ms failed unfinished ready_ms warmup_ms
 *     calls/s counts the calls that ended in the window. A call still running
 *     when the window closes is 'unfinished': it enters the percentiles as
 *     longer than any finished call, and a percentile that falls on one is
 *     printed as ">" and the time it had run. The process exits without
 *     waiting for unfinished calls, so a point lasts what it was given.
 *
 *   mesh_scale parse CONSUL_ADDR REPEAT
 *     Fetches /v1/health/service/users?passing=1 once and parses the body
 *     REPEAT times with consul_health_parse. Prints one line:
 *       instances bytes median_ms min_ms */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consul/client.h"
#include "consul/health.h"
#include "core/clock.h"
#include "core/log.h"
#include "peer_api.h"

#define MAX_SAMPLES   4000000
#define WARM_NS	      500000000ULL
#define READY_MAX_MS  60000
#define WARMUP_MAX_MS 30000
#define MAX_BODY      (64u << 20)

struct window {
	struct bench_peers *bp;
	uint64_t t_start, t_end; /* the counted window, monotonic ns */
};

struct worker {
	pthread_t tid;
	const struct window *w;
	float *samples; /* ms of the calls that ended in the window */
	size_t cap;
	atomic_size_t n; /* published after the sample is written */
	atomic_ulong failed;
	atomic_uint_fast64_t busy_since; /* start of the call under way, 0: none */
	atomic_uint_fast64_t late_start; /* start of a call that ended after t_end */
	atomic_bool done;
};

static void *worker_run(void *arg)
{
	struct worker *wk = arg;
	const struct window *w = wk->w;
	struct httpc_response res;

	httpc_response_init(&res);
	for (;;) {
		uint64_t t0 = clock_monotonic_ns(), t1;
		bool ok;

		atomic_store(&wk->busy_since, t0);
		ok = bench_peers_call(w->bp, "/users/1", &res);
		t1 = clock_monotonic_ns();
		if (t1 > w->t_end) {
			atomic_store(&wk->late_start, t0);
			atomic_store(&wk->busy_since, 0);
			break;
		}
		atomic_store(&wk->busy_since, 0);
		if (t1 < w->t_start)
			continue;
		if (!ok) {
			atomic_fetch_add(&wk->failed, 1);
		} else {
			size_t n = atomic_load_explicit(&wk->n, memory_order_relaxed);

			if (n < wk->cap) {
				wk->samples[n] = (float)((double)(t1 - t0) / 1e6);
				atomic_store_explicit(&wk->n, n + 1, memory_order_release);
			}
		}
	}
	httpc_response_release(&res);
	atomic_store(&wk->done, true);
	return NULL;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* The q-quantile of 'total' samples, 'fin' of them (sorted) from finished
 * calls and the rest from unfinished ones, whose true times are unknown: with
 * those counted as endless, the quantile is fin[i] while i < nfin (a bound
 * from above that a handful of unfinished calls barely moves); past that it
 * is an unfinished call, printed as ">" and the time it had run ('all':
 * every sample, unfinished ones at the time they had run, sorted). */
static void percentile(const double *all, size_t total, const double *fin, size_t nfin, double q,
		       char *out, size_t len)
{
	size_t i = (size_t)((double)(total ? total - 1 : 0) * q);

	if (total == 0)
		snprintf(out, len, "0");
	else if (i < nfin)
		snprintf(out, len, "%.3f", fin[i]);
	else
		snprintf(out, len, ">%.3f", all[i]);
}

struct warmup {
	struct bench_peers *bp;
	atomic_bool done;
};

static void *warmup_run(void *arg)
{
	struct warmup *wu = arg;
	struct httpc_response res;

	httpc_response_init(&res);
	bench_peers_call(wu->bp, "/users/1", &res);
	httpc_response_release(&res);
	atomic_store(&wu->done, true);
	return NULL;
}

static int run_calls(const char *addr, long expect, int threads, int seconds)
{
	struct warmup wu = {0};
	struct window w = {0};
	struct worker *wk;
	pthread_t wtid;
	double *all, *fin;
	size_t total = 0, nfin = 0, unfinished = 0;
	unsigned long failed = 0;
	uint64_t t0, ready_ms, warmup_ms;
	char err[256], p50[32], p99[32];
	bool all_done = true;
	long have = -1;

	w.bp = bench_peers_open(addr, err, sizeof(err));
	if (w.bp == NULL) {
		fprintf(stderr, "mesh_scale: %s\n", err);
		return 1;
	}
	t0 = clock_monotonic_ns();
	while ((have = bench_peers_count(w.bp)) != expect &&
	       clock_monotonic_ns() - t0 < READY_MAX_MS * 1000000ULL)
		clock_sleep_ms(20);
	ready_ms = (clock_monotonic_ns() - t0) / 1000000;
	if (have != expect) {
		fprintf(stderr, "mesh_scale: %ld instances after %d ms, expected %ld\n", have,
			READY_MAX_MS, expect);
		return 1;
	}

	/* the first call creates the per-instance state: not part of the window */
	wu.bp = w.bp;
	t0 = clock_monotonic_ns();
	pthread_create(&wtid, NULL, warmup_run, &wu);
	while (!atomic_load(&wu.done) && clock_monotonic_ns() - t0 < WARMUP_MAX_MS * 1000000ULL)
		clock_sleep_ms(5);
	warmup_ms = (clock_monotonic_ns() - t0) / 1000000;
	if (!atomic_load(&wu.done)) {
		printf("%ld 0 >%d >%d 0 1 %llu >%d\n", expect, WARMUP_MAX_MS, WARMUP_MAX_MS,
		       (unsigned long long)ready_ms, WARMUP_MAX_MS);
		fflush(stdout);
		_exit(0);
	}
	pthread_join(wtid, NULL);

	wk = calloc((size_t)threads, sizeof(*wk));
	w.t_start = clock_monotonic_ns() + WARM_NS;
	w.t_end = w.t_start + (uint64_t)seconds * 1000000000ULL;
	for (int i = 0; i < threads; i++) {
		wk[i].w = &w;
		wk[i].cap = MAX_SAMPLES / (size_t)threads;
		wk[i].samples = malloc(wk[i].cap * sizeof(float));
		pthread_create(&wk[i].tid, NULL, worker_run, &wk[i]);
	}
	/* past t_end every worker has either published its last sample or is
	   inside a call whose start it has published */
	while (clock_monotonic_ns() < w.t_end + 20000000ULL)
		clock_sleep_ms(5);

	all = malloc((MAX_SAMPLES + (size_t)threads) * sizeof(double));
	fin = malloc(MAX_SAMPLES * sizeof(double));
	for (int i = 0; i < threads; i++) {
		size_t n = atomic_load_explicit(&wk[i].n, memory_order_acquire);
		uint64_t start = atomic_load(&wk[i].late_start);

		if (start == 0)
			start = atomic_load(&wk[i].busy_since);
		for (size_t j = 0; j < n; j++)
			all[total++] = fin[nfin++] = wk[i].samples[j];
		failed += atomic_load(&wk[i].failed);
		if (start != 0 && start < w.t_end) {
			all[total++] = (double)(w.t_end - start) / 1e6;
			unfinished++;
		}
	}
	qsort(all, total, sizeof(double), cmp_double);
	qsort(fin, nfin, sizeof(double), cmp_double);
	percentile(all, total, fin, nfin, 0.50, p50, sizeof(p50));
	percentile(all, total, fin, nfin, 0.99, p99, sizeof(p99));
	printf("%ld %.1f %s %s %lu %zu %llu %llu\n", expect, (double)(total - unfinished) / seconds,
	       p50, p99, failed, unfinished, (unsigned long long)ready_ms,
	       (unsigned long long)warmup_ms);
	fflush(stdout);
	for (int i = 0; i < threads; i++)
		all_done = all_done && atomic_load(&wk[i].done);
	if (!all_done)
		_exit(0); /* calls still inside the peer client: not worth waiting for */
	for (int i = 0; i < threads; i++) {
		pthread_join(wk[i].tid, NULL);
		free(wk[i].samples);
	}
	free(all);
	free(fin);
	free(wk);
	bench_peers_close(w.bp);
	return 0;
}

static int run_parse(const char *addr, int repeat)
{
	struct httpc_response res;
	struct consul *consul;
	struct httpc *h;
	double *ms, min;
	size_t n = 0;
	char err[256];
	int rc = 1;

	consul = consul_create(&(struct consul_opts){.address = addr}, err, sizeof(err));
	if (consul == NULL) {
		fprintf(stderr, "mesh_scale: %s\n", err);
		return 1;
	}
	h = consul_conn_create(consul);
	httpc_response_init(&res);
	ms = calloc((size_t)repeat, sizeof(*ms));
	if (h == NULL || ms == NULL)
		goto out;
	if (consul_call(consul, h,
			&(struct consul_call){.op = "bench",
					      .method = "GET",
					      .path = "/v1/health/service/users?passing=1",
					      .timeout_ms = 30000,
					      .max_response = MAX_BODY},
			&res, err, sizeof(err)) != MN_OK) {
		fprintf(stderr, "mesh_scale: %s\n", err);
		goto out;
	}
	for (int i = 0; i < repeat; i++) {
		struct consul_instance *inst;
		uint64_t t0 = clock_monotonic_ns();

		if (consul_health_parse(res.body.data, res.body.len, &inst, &n, NULL, err,
					sizeof(err)) != MN_OK) {
			fprintf(stderr, "mesh_scale: %s\n", err);
			goto out;
		}
		ms[i] = (double)(clock_monotonic_ns() - t0) / 1e6;
		consul_instances_free(inst, n);
	}
	qsort(ms, (size_t)repeat, sizeof(double), cmp_double);
	min = ms[0];
	printf("%zu %zu %.2f %.2f\n", n, res.body.len, ms[repeat / 2], min);
	rc = 0;
out:
	free(ms);
	httpc_response_release(&res);
	consul_conn_destroy(consul, h);
	consul_destroy(consul);
	return rc;
}

int main(int argc, char **argv)
{
	int rc;

	log_set_level(MN_LOG_ERROR);
	httpc_global_init();
	if (argc == 6 && strcmp(argv[1], "calls") == 0 && atol(argv[3]) >= 0 &&
	    atoi(argv[4]) >= 1 && atoi(argv[4]) <= 256 && atoi(argv[5]) >= 1 &&
	    atoi(argv[5]) <= 60) {
		rc = run_calls(argv[2], atol(argv[3]), atoi(argv[4]), atoi(argv[5]));
	} else if (argc == 4 && strcmp(argv[1], "parse") == 0 && atoi(argv[3]) >= 1 &&
		   atoi(argv[3]) <= 1000) {
		rc = run_parse(argv[2], atoi(argv[3]));
	} else {
		fprintf(stderr,
			"usage: %s calls CONSUL_ADDR EXPECT THREADS SECONDS\n"
			"       %s parse CONSUL_ADDR REPEAT\n",
			argv[0], argv[0]);
		return 2;
	}
	httpc_global_cleanup();
	return rc;
}
