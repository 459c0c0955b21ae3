/* How long config_load() takes to build a configuration from a large KV
 * listing, in process: the cost of one reload of the node's prefix.
 *
 *     cc -Iinclude -D_GNU_SOURCE -O2 bench/kv_reload.c build/libmeshnode.a \
 *        -pthread -lcivetweb -lcurl -ljansson -lconfig -lsqlite3 -lm -o kv_reload
 *     ./kv_reload [KEYS [RUNS]]
 *
 * For each mix of keys (valid peers.<name>.timeout_ms, names of no setting,
 * refused values, a third of each) it loads once without and RUNS times
 * with a running configuration (a reload) and prints markdown table rows:
 * | mix | keys | median CPU ms | median wall ms | slowest wall ms |. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"

#define DEFAULT_KEYS 10000
#define DEFAULT_RUNS 7
#define MAX_KEYS     1000000
#define MAX_RUNS     101

enum mix { MIX_PEERS, MIX_UNKNOWN, MIX_REFUSED, MIX_THIRDS, MIX_COUNT };

static const char *const mix_names[MIX_COUNT] = {
	"valid peers.pN.timeout_ms",
	"names of no setting",
	"refused values",
	"a third of each",
};

static double clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The listing's keys and values (one allocation each, freed by the caller). */
static struct config_kv_pair *listing(enum mix mix, size_t n, char **keys, char **values)
{
	struct config_kv_pair *pairs = calloc(n, sizeof(*pairs));

	if (pairs == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		enum mix kind = mix == MIX_THIRDS ? (enum mix)(i % 3) : mix;
		int k, v;

		switch (kind) {
		case MIX_PEERS:
			k = asprintf(&keys[i], "config/users/peers/p%zu/timeout_ms", i);
			v = asprintf(&values[i], "%zu", 1000 + i % 5000);
			break;
		case MIX_UNKNOWN:
			k = asprintf(&keys[i], "config/users/flood/k%06zu", i);
			v = asprintf(&values[i], "x");
			break;
		default:
			k = asprintf(&keys[i], "config/users/peers/p%zu/timeout_ms", i);
			v = asprintf(&values[i], "soon");
			break;
		}
		if (k < 0 || v < 0) {
			fprintf(stderr, "kv_reload: out of memory\n");
			exit(1);
		}
		pairs[i] = (struct config_kv_pair){keys[i], values[i]};
	}
	return pairs;
}

/* One load: its wall time in *ms and its CPU time in *cpu_ms (what the
 * reload costs the node, whoever else shares the machine). */
static struct config *load(const struct config_kv_pair *pairs, size_t n,
			   const struct config *running, double *ms, double *cpu_ms)
{
	struct config_sources src = {
		.kv = pairs, .n_kv = n, .kv_index = 7, .hostname = "bench", .running = running};
	struct buf warnings;
	struct config *cfg = NULL;
	double t0, c0;

	buf_init(&warnings, 1 << 16);
	t0 = clock_ms(CLOCK_MONOTONIC);
	c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
	if (config_load(&src, &cfg, NULL, &warnings) != MN_OK) {
		fprintf(stderr, "kv_reload: config_load failed\n");
		exit(1);
	}
	*ms = clock_ms(CLOCK_MONOTONIC) - t0;
	*cpu_ms = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
	buf_release(&warnings);
	return cfg;
}

int main(int argc, char **argv)
{
	long keys = argc > 1 ? strtol(argv[1], NULL, 10) : DEFAULT_KEYS;
	long runs = argc > 2 ? strtol(argv[2], NULL, 10) : DEFAULT_RUNS;
	size_t n;

	if (keys < 1 || keys > MAX_KEYS || runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: kv_reload [KEYS (1..%d) [RUNS (1..%d)]]\n", MAX_KEYS,
			MAX_RUNS);
		return 2;
	}
	n = (size_t)keys;
	for (int mix = 0; mix < MIX_COUNT; mix++) {
		char **k = calloc(n, sizeof(*k)), **v = calloc(n, sizeof(*v));
		struct config_kv_pair *pairs;
		struct config *running;
		double times[MAX_RUNS], cpu[MAX_RUNS], first, first_cpu;

		if (k == NULL || v == NULL || (pairs = listing(mix, n, k, v)) == NULL) {
			fprintf(stderr, "kv_reload: out of memory\n");
			return 1;
		}
		running = load(pairs, n, NULL, &first, &first_cpu);
		for (long r = 0; r < runs; r++)
			config_destroy(load(pairs, n, running, &times[r], &cpu[r]));
		qsort(times, (size_t)runs, sizeof(times[0]), cmp_double);
		qsort(cpu, (size_t)runs, sizeof(cpu[0]), cmp_double);
		printf("| %s | %zu | %.1f | %.1f | %.1f |\n", mix_names[mix], n, cpu[runs / 2],
		       times[runs / 2], times[runs - 1]);
		config_destroy(running);
		for (size_t i = 0; i < n; i++) {
			free(k[i]);
			free(v[i]);
		}
		free(k);
		free(v);
		free(pairs);
	}
	return 0;
}
