#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "metrics/metrics.h"

/* Every registry ends with its dropped-series counter. */
#define DROPPED_HEAD                                                                               \
	"# HELP meshnode_metrics_dropped_series_total Label sets dropped because their "           \
	"family reached the series limit or a label value was not valid UTF-8.\n"                  \
	"# TYPE meshnode_metrics_dropped_series_total counter\n"

/* The rendered text of 'm' (caller frees). */
static char *render(struct metrics *m)
{
	struct buf b;

	buf_init(&b, 16 << 20);
	assert_int_equal(metrics_render(m, &b), MN_OK);
	return buf_steal(&b, NULL);
}

static void assert_render(struct metrics *m, const char *expected)
{
	char *text = render(m);

	assert_string_equal(text, expected);
	free(text);
}

/* The value of the sample line starting with 'prefix' (NAN if absent). */
static double sample_value(const char *text, const char *prefix)
{
	size_t len = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, len) == 0 && p[len] == ' ')
			return strtod(p + len + 1, NULL);
	return NAN;
}

static void test_counter_with_labels(void **state)
{
	static const char *const names[] = {"method", "endpoint", "status"};
	static const char *const get_ok[] = {"GET", "/users/{id}", "200"};
	static const char *const post_created[] = {"POST", "/users", "201"};
	struct metrics *m = metrics_create();
	struct metric_family *f;
	(void)state;

	f = metrics_counter(m, "http_requests_total", "Requests served.", 3, names);
	assert_non_null(f);
	metric_inc(f, get_ok);
	metric_inc(f, post_created);
	metric_inc(f, get_ok);
	metric_add(f, get_ok, 2);
	metric_add(f, post_created, 0.5);
	metric_add(f, post_created, -7); /* counters never go down */
	assert_render(
		m, "# HELP http_requests_total Requests served.\n"
		   "# TYPE http_requests_total counter\n"
		   "http_requests_total{method=\"GET\",endpoint=\"/users/{id}\",status=\"200\"} 4\n"
		   "http_requests_total{method=\"POST\",endpoint=\"/users\",status=\"201\"} "
		   "1.5\n" DROPPED_HEAD);
	metrics_destroy(m);
}

/* A count kept elsewhere, published at collect time: it may only grow. */
static void test_counter_set_from_its_source(void **state)
{
	static const char *const names[] = {"kind"};
	static const char *const full[] = {"disk_full"};
	struct metrics *m = metrics_create();
	struct metric_family *f, *g;
	(void)state;

	f = metrics_counter(m, "w_total", "Failed writes.", 1, names);
	g = metrics_gauge(m, "g", "", 0, NULL);
	metric_set_counter(f, full, 3);
	metric_set_counter(f, full, 7);
	metric_set_counter(f, full, 5);	  /* never back */
	metric_set_counter(f, full, NAN); /* nor to nothing */
	metric_set_counter(g, NULL, 9);	  /* counters only */
	assert_render(m, "# HELP w_total Failed writes.\n"
			 "# TYPE w_total counter\n"
			 "w_total{kind=\"disk_full\"} 7\n"
			 "# HELP g \n"
			 "# TYPE g gauge\n"
			 "g 0\n" DROPPED_HEAD);
	metric_set_counter(NULL, full, 1);
	metrics_destroy(m);
}

static void test_labelless_gauge(void **state)
{
	struct metrics *m = metrics_create();
	struct metric_family *g;
	(void)state;

	g = metrics_gauge(m, "meshnode_kv_index", "Last Consul KV index seen.", 0, NULL);
	assert_non_null(g);
	assert_render(m, "# HELP meshnode_kv_index Last Consul KV index seen.\n"
			 "# TYPE meshnode_kv_index gauge\n"
			 "meshnode_kv_index 0\n" DROPPED_HEAD);
	metric_set(g, NULL, 1000);
	metric_add(g, NULL, 30);
	metric_inc(g, NULL);
	metric_add(g, NULL, -7);
	assert_render(m, "# HELP meshnode_kv_index Last Consul KV index seen.\n"
			 "# TYPE meshnode_kv_index gauge\n"
			 "meshnode_kv_index 1024\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_histogram_buckets(void **state)
{
	static const char *const names[] = {"method", "endpoint"};
	static const char *const get[] = {"GET", "/users/{id}"};
	static const char *const del[] = {"DELETE", "/users/{id}"};
	struct metrics *m = metrics_create();
	struct metric_family *h;
	(void)state;

	h = metrics_histogram(m, "http_request_duration_seconds", "Request latency.", 2, names,
			      metrics_http_buckets, metrics_http_buckets_count);
	assert_non_null(h);
	metric_observe(h, get, 0.003); /* 0.005 */
	metric_observe(h, get, 0.005); /* 0.005: bounds are inclusive */
	metric_observe(h, get, 0.07);  /* 0.1 */
	metric_observe(h, get, 0.75);  /* 1 */
	metric_observe(h, get, 1.25);  /* 2.5 */
	metric_observe(h, get, 42);    /* +Inf */
	metric_observe(h, del, 0.25);  /* 0.25 */
	assert_render(
		m,
		"# HELP http_request_duration_seconds Request latency.\n"
		"# TYPE http_request_duration_seconds histogram\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.005\"} 2\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.01\"} 2\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.025\"} 2\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.05\"} 2\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.1\"} 3\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.25\"} 3\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"0.5\"} 3\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"1\"} 4\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"2.5\"} 5\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"5\"} 5\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"10\"} 5\n"
		"http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/users/"
		"{id}\",le=\"+Inf\"} 6\n"
		"http_request_duration_seconds_sum{method=\"GET\",endpoint=\"/users/{id}\"} "
		"44.078\n"
		"http_request_duration_seconds_count{method=\"GET\",endpoint=\"/users/{id}\"} 6\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.005\"} 0\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.01\"} 0\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.025\"} 0\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.05\"} 0\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.1\"} 0\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.25\"} 1\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"0.5\"} 1\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"1\"} 1\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"2.5\"} 1\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"5\"} 1\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"10\"} 1\n"
		"http_request_duration_seconds_bucket{method=\"DELETE\",endpoint=\"/users/"
		"{id}\",le=\"+Inf\"} 1\n"
		"http_request_duration_seconds_sum{method=\"DELETE\",endpoint=\"/users/{id}\"} "
		"0.25\n"
		"http_request_duration_seconds_count{method=\"DELETE\",endpoint=\"/users/{id}\"} "
		"1\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_labelless_histogram_and_inf_bound(void **state)
{
	static const double bounds[] = {1, 1e6, INFINITY};
	struct metrics *m = metrics_create();
	struct metric_family *h;
	(void)state;

	/* a trailing +Inf bound is the implicit one, not a second +Inf bucket */
	h = metrics_histogram(m, "job_bytes", "", 0, NULL, bounds, 3);
	assert_non_null(h);
	assert_render(m, "# HELP job_bytes \n"
			 "# TYPE job_bytes histogram\n"
			 "job_bytes_bucket{le=\"1\"} 0\n"
			 "job_bytes_bucket{le=\"1000000\"} 0\n"
			 "job_bytes_bucket{le=\"+Inf\"} 0\n"
			 "job_bytes_sum 0\n"
			 "job_bytes_count 0\n" DROPPED_HEAD);
	metric_observe(h, NULL, 2e6);
	metric_observe(h, NULL, 1);
	assert_render(m, "# HELP job_bytes \n"
			 "# TYPE job_bytes histogram\n"
			 "job_bytes_bucket{le=\"1\"} 1\n"
			 "job_bytes_bucket{le=\"1000000\"} 1\n"
			 "job_bytes_bucket{le=\"+Inf\"} 2\n"
			 "job_bytes_sum 2000001\n"
			 "job_bytes_count 2\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_escaping(void **state)
{
	static const char *const names[] = {"path"};
	static const char *const weird[] = {"a\\b\"c\nd"};
	struct metrics *m = metrics_create();
	struct metric_family *f;
	(void)state;

	f = metrics_counter(m, "esc_total", "Back\\slash and\nnewline, \"quotes\" kept.", 1, names);
	assert_non_null(f);
	metric_inc(f, weird);
	assert_render(m, "# HELP esc_total Back\\\\slash and\\nnewline, \"quotes\" kept.\n"
			 "# TYPE esc_total counter\n"
			 "esc_total{path=\"a\\\\b\\\"c\\nd\"} 1\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_value_formatting(void **state)
{
	static const char *const names[] = {"case"};
	static const struct {
		const char *label;
		double v;
		const char *text;
	} cases[] = {
		{"int", 3, "3"},
		{"big", 123456789012345.0, "123456789012345"},
		{"huge", 1e20, "1e+20"},
		{"frac", 0.1, "0.1"},
		{"third", 1.0 / 3, "0.3333333333333333"},
		{"tenth17", 0.1 + 0.2, "0.30000000000000004"},
		{"neg", -2.5, "-2.5"},
		{"negzero", -0.0, "0"},
		{"nan", NAN, "NaN"},
		{"inf", INFINITY, "+Inf"},
		{"ninf", -INFINITY, "-Inf"},
	};
	struct metrics *m = metrics_create();
	struct metric_family *g;
	char *text;
	(void)state;

	g = metrics_gauge(m, "fmt", "Formats.", 1, names);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		metric_set(g, &cases[i].label, cases[i].v);
	text = render(m);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[128];

		snprintf(line, sizeof(line), "\nfmt{case=\"%s\"} %s\n", cases[i].label,
			 cases[i].text);
		if (strstr(text, line) == NULL)
			fail_msg("missing %s in:\n%s", line, text);
	}
	free(text);
	metrics_destroy(m);
}

static void test_bad_names_rejected(void **state)
{
	static const char *const bad_labels[][1] = {
		{"1abc"}, {"a-b"}, {"__reserved"}, {""}, {"a:b"}};
	static const char *const dup_labels[] = {"a", "a"};
	static const char *const le_label[] = {"le"};
	static const char *const ok_label[] = {"le_ok"};
	static const double unsorted[] = {1, 0.5};
	static const double repeated[] = {1, 1};
	static const double with_nan[] = {NAN};
	struct metrics *m = metrics_create();
	(void)state;

	assert_null(metrics_counter(m, "", "", 0, NULL));
	assert_null(metrics_counter(m, NULL, "", 0, NULL));
	assert_null(metrics_counter(m, "9lives", "", 0, NULL));
	assert_null(metrics_counter(m, "has space", "", 0, NULL));
	assert_null(metrics_gauge(m, "dash-name", "", 0, NULL));
	assert_null(metrics_gauge(m, "dot.name", "", 0, NULL));
	assert_null(metrics_gauge(m, "caf\xc3\xa9", "", 0, NULL));
	for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
		assert_null(metrics_counter(m, "c_total", "", 1, bad_labels[i]));
	assert_null(metrics_counter(m, "c_total", "", 2, dup_labels));
	assert_null(metrics_counter(m, "c_total", "", 1, NULL));
	assert_null(metrics_histogram(m, "h", "", 1, le_label, NULL, 0));
	assert_null(metrics_histogram(m, "h", "", 0, NULL, unsorted, 2));
	assert_null(metrics_histogram(m, "h", "", 0, NULL, repeated, 2));
	assert_null(metrics_histogram(m, "h", "", 0, NULL, with_nan, 1));
	assert_null(metrics_histogram(m, "h", "", 0, NULL, NULL, 3));
	assert_null(metrics_counter(NULL, "c_total", "", 0, NULL));

	/* and nothing of the above was registered */
	assert_render(m, DROPPED_HEAD);

	/* the valid forms right next to them are accepted */
	assert_non_null(metrics_counter(m, "c_total", "", 1, ok_label));
	assert_non_null(metrics_gauge(m, "_a:b_9", "", 0, NULL));
	assert_non_null(metrics_histogram(m, "h", "", 0, NULL, NULL, 0));
	metrics_destroy(m);
}

static void test_duplicate_rejected(void **state)
{
	static const char *const names[] = {"x"};
	static const double bounds[] = {1};
	struct metrics *m = metrics_create();
	(void)state;

	assert_non_null(metrics_counter(m, "dup_total", "first", 0, NULL));
	assert_null(metrics_counter(m, "dup_total", "again", 0, NULL));
	assert_null(metrics_gauge(m, "dup_total", "as a gauge", 1, names));
	assert_null(metrics_histogram(m, "dup_total", "as a histogram", 0, NULL, bounds, 1));
	assert_null(metrics_counter(m, METRICS_DROPPED_NAME, "reserved", 0, NULL));
	assert_render(m, "# HELP dup_total first\n"
			 "# TYPE dup_total counter\n"
			 "dup_total 0\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_series_cap(void **state)
{
	static const char *const names[] = {"id"};
	static const char *const first[] = {"0"};
	static const char *const bad_utf8[] = {"\xff"};
	struct metrics *m = metrics_create();
	struct metric_family *f;
	char value[16];
	const char *values[] = {value};
	char *text, *p;
	size_t lines = 0;
	(void)state;

	f = metrics_counter(m, "capped_total", "Capped.", 1, names);
	for (int i = 0; i < METRICS_MAX_SERIES + 5; i++) {
		snprintf(value, sizeof(value), "%d", i);
		metric_inc(f, values);
	}
	metric_inc(f, first); /* an existing series still counts past the cap */
	metric_inc(f, bad_utf8);

	text = render(m);
	for (p = strstr(text, "\ncapped_total{"); p; p = strstr(p + 1, "\ncapped_total{"))
		lines++;
	assert_int_equal(lines, METRICS_MAX_SERIES);
	assert_true(sample_value(text, "capped_total{id=\"0\"}") == 2);
	assert_true(sample_value(text, "capped_total{id=\"9999\"}") == 1);
	assert_null(strstr(text, "capped_total{id=\"10000\"}"));
	assert_true(sample_value(text, METRICS_DROPPED_NAME "{family=\"capped_total\"}") == 6);
	free(text);
	metrics_destroy(m);
}

static void test_invalid_utf8_dropped(void **state)
{
	static const char *const names[] = {"v"};
	static const char *const bad[][1] = {{"\xff"}, {"\xc3"}, {"\xc0\xaf"}, {"\xed\xa0\x80"}};
	static const char *const good[] = {"caf\xc3\xa9 \xf0\x9f\x98\x80"};
	struct metrics *m = metrics_create();
	struct metric_family *f;
	(void)state;

	f = metrics_counter(m, "u_total", "", 1, names);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		metric_inc(f, bad[i]);
	metric_inc(f, good);
	assert_render(m, "# HELP u_total \n"
			 "# TYPE u_total counter\n"
			 "u_total{v=\"caf\xc3\xa9 \xf0\x9f\x98\x80\"} 1\n" DROPPED_HEAD
			 "meshnode_metrics_dropped_series_total{family=\"u_total\"} 4\n");
	metrics_destroy(m);
}

static void test_wrong_type_calls_ignored(void **state)
{
	static const double bounds[] = {1};
	struct metrics *m = metrics_create();
	struct metric_family *c, *h;
	(void)state;

	c = metrics_counter(m, "c_total", "", 0, NULL);
	h = metrics_histogram(m, "h", "", 0, NULL, bounds, 1);
	metric_set(c, NULL, 5);
	metric_observe(c, NULL, 5);
	metric_inc(h, NULL);
	metric_add(h, NULL, 5);
	metric_set(h, NULL, 5);
	metric_add(c, NULL, NAN);
	metric_inc(NULL, NULL);
	metric_observe(NULL, NULL, 1);
	assert_render(m, "# HELP c_total \n"
			 "# TYPE c_total counter\n"
			 "c_total 0\n"
			 "# HELP h \n"
			 "# TYPE h histogram\n"
			 "h_bucket{le=\"1\"} 0\n"
			 "h_bucket{le=\"+Inf\"} 0\n"
			 "h_sum 0\n"
			 "h_count 0\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_render_cap(void **state)
{
	struct metrics *m = metrics_create();
	struct buf b;
	(void)state;

	assert_non_null(metrics_gauge(m, "g", "A gauge.", 0, NULL));
	buf_init(&b, 16);
	assert_int_equal(metrics_render(m, &b), MN_TOO_LARGE);
	assert_null(b.data);
	buf_release(&b);
	metrics_destroy(m);
}

struct collect_ctx {
	struct metric_family *g;
	int calls;
};

static void collect_cb(struct metrics *m, void *ctx)
{
	struct collect_ctx *c = ctx;

	(void)m;
	c->calls++;
	metric_set(c->g, NULL, c->calls * 10);
}

static void test_collect_called_at_render(void **state)
{
	struct metrics *m = metrics_create();
	struct collect_ctx ctx = {0};
	char *text;
	(void)state;

	ctx.g = metrics_gauge(m, "derived", "Set by a collector.", 0, NULL);
	assert_int_equal(metrics_on_collect(m, NULL, &ctx), MN_INVALID);
	assert_int_equal(metrics_on_collect(m, collect_cb, &ctx), MN_OK);
	assert_int_equal(ctx.calls, 0);

	text = render(m);
	assert_int_equal(ctx.calls, 1);
	assert_true(sample_value(text, "derived") == 10);
	free(text);
	text = render(m);
	assert_int_equal(ctx.calls, 2);
	assert_true(sample_value(text, "derived") == 20);
	free(text);
	metrics_destroy(m);
}

#define THREADS	   4
#define PER_THREAD 100000

struct worker {
	struct metric_family *c;
	struct metric_family *h;
	int id;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	static const char *const shared[] = {"GET", "200"};
	const char *own[] = {w->id % 2 ? "POST" : "PUT", "201"};

	for (int i = 0; i < PER_THREAD; i++) {
		metric_inc(w->c, shared);
		metric_inc(w->c, own);
		metric_observe(w->h, shared, (i % 4) * 0.01);
	}
	return NULL;
}

static void test_concurrent_increments(void **state)
{
	static const char *const names[] = {"method", "status"};
	struct metrics *m = metrics_create();
	struct worker w[THREADS];
	pthread_t tid[THREADS];
	char *text;
	int renders = 0;
	(void)state;

	struct metric_family *c = metrics_counter(m, "conc_total", "", 2, names);
	struct metric_family *h = metrics_histogram(
		m, "conc_seconds", "", 2, names, metrics_http_buckets, metrics_http_buckets_count);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){c, h, i};
		assert_int_equal(pthread_create(&tid[i], NULL, worker_run, &w[i]), 0);
	}
	/* render while the workers update: totals only ever grow */
	for (double last = 0; renders < 20; renders++) {
		double now;

		text = render(m);
		now = sample_value(text, "conc_total{method=\"GET\",status=\"200\"}");
		if (!isnan(now)) {
			assert_true(now >= last);
			last = now;
		}
		free(text);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(tid[i], NULL);

	text = render(m);
	assert_true(sample_value(text, "conc_total{method=\"GET\",status=\"200\"}") ==
		    THREADS * PER_THREAD);
	assert_true(sample_value(text, "conc_total{method=\"PUT\",status=\"201\"}") ==
		    THREADS / 2 * PER_THREAD);
	assert_true(sample_value(text, "conc_total{method=\"POST\",status=\"201\"}") ==
		    THREADS / 2 * PER_THREAD);
	assert_true(sample_value(text, "conc_seconds_count{method=\"GET\",status=\"200\"}") ==
		    THREADS * PER_THREAD);
	/* 0 and 0.01 land in le=0.01: half of all observations */
	assert_true(
		sample_value(text,
			     "conc_seconds_bucket{method=\"GET\",status=\"200\",le=\"0.01\"}") ==
		THREADS * PER_THREAD / 2);
	free(text);
	metrics_destroy(m);
}

static void test_remove_stops_rendering(void **state)
{
	static const char *const names[] = {"peer"};
	static const char *const a[] = {"a"}, *const b[] = {"b"}, *const c[] = {"c"};
	static const char *const absent[] = {"zzz"};
	static const char *const empty[] = {""};
	static const char *const after[] = {"# HELP r_total Requests.\n"
					    "# TYPE r_total counter\n"
					    "r_total{peer=\"a\"} 1\n"
					    "r_total{peer=\"c\"} 3\n"
					    "# HELP g \n"
					    "# TYPE g gauge\n"
					    "g 5\n" DROPPED_HEAD};
	struct metrics *m = metrics_create();
	struct metric_family *f, *g;
	(void)state;

	f = metrics_counter(m, "r_total", "Requests.", 1, names);
	g = metrics_gauge(m, "g", "", 0, NULL);
	metric_inc(f, a);
	metric_add(f, b, 2);
	metric_add(f, c, 3);
	metric_set(g, NULL, 5);
	metric_remove(f, b);
	assert_render(m, after[0]);

	/* absent label sets, a second removal, NULL and label-less families */
	metric_remove(f, absent);
	metric_remove(f, b);
	metric_remove(NULL, a);
	metric_remove(g, NULL);
	assert_render(m, after[0]);

	/* NULL values mean "" here as for updates */
	metric_inc(f, empty);
	metric_remove(f, NULL);
	assert_render(m, after[0]);

	metric_remove(f, a);
	metric_remove(f, c);
	assert_render(m, "# HELP r_total Requests.\n"
			 "# TYPE r_total counter\n"
			 "# HELP g \n"
			 "# TYPE g gauge\n"
			 "g 5\n" DROPPED_HEAD);
	metrics_destroy(m);
}

static void test_remove_then_readd_starts_from_zero(void **state)
{
	static const char *const names[] = {"peer"};
	static const char *const a[] = {"a"}, *const b[] = {"b"};
	static const double bounds[] = {1};
	struct metrics *m = metrics_create();
	struct metric_family *f, *h;
	(void)state;

	f = metrics_counter(m, "r_total", "", 1, names);
	h = metrics_histogram(m, "d", "", 1, names, bounds, 1);
	for (int i = 0; i < 5; i++) {
		metric_inc(f, a);
		metric_observe(h, a, 0.5);
	}
	metric_inc(f, b);
	metric_remove(f, a);
	metric_remove(h, a);
	metric_inc(f, a);
	metric_observe(h, a, 2);
	/* a comes back after b: it is seen anew */
	assert_render(m, "# HELP r_total \n"
			 "# TYPE r_total counter\n"
			 "r_total{peer=\"b\"} 1\n"
			 "r_total{peer=\"a\"} 1\n"
			 "# HELP d \n"
			 "# TYPE d histogram\n"
			 "d_bucket{peer=\"a\",le=\"1\"} 0\n"
			 "d_bucket{peer=\"a\",le=\"+Inf\"} 1\n"
			 "d_sum{peer=\"a\"} 2\n"
			 "d_count{peer=\"a\"} 1\n" DROPPED_HEAD);
	metrics_destroy(m);
}

/* What a collect callback reports: the instances alive at this render. */
struct sweep_ctx {
	struct metric_family *g;
	const char *const *alive;
	size_t nalive;
	bool sweep;
};

static void sweep_collect(struct metrics *m, void *ctx)
{
	struct sweep_ctx *c = ctx;

	(void)m;
	if (c->sweep)
		metric_sweep_begin(c->g);
	for (size_t i = 0; i < c->nalive; i++) {
		const char *values[] = {"users", c->alive[i]};

		metric_set(c->g, values, (double)i + 1);
	}
	if (c->sweep)
		metric_sweep_end(c->g);
}

static void test_sweep_removes_untouched(void **state)
{
	static const char *const names[] = {"service", "instance"};
	static const char *const first[] = {"i1", "i2", "i3", "i4"};
	static const char *const second[] = {"i2", "i4", "i5"};
	static const char *const users_i1[] = {"users", "i1"};
	static const char *const head = "# HELP up Instances.\n"
					"# TYPE up gauge\n";
	struct metrics *m = metrics_create();
	struct sweep_ctx ctx = {0};
	struct metric_family *other;
	char expected[1024];
	(void)state;

	ctx.g = metrics_gauge(m, "up", "Instances.", 2, names);
	other = metrics_gauge(m, "other", "", 2, names);
	metric_set(other, users_i1, 7); /* another family is not swept */
	ctx.sweep = true;
	assert_int_equal(metrics_on_collect(m, sweep_collect, &ctx), MN_OK);

	ctx.alive = first;
	ctx.nalive = 4;
	snprintf(expected, sizeof(expected),
		 "%sup{service=\"users\",instance=\"i1\"} 1\n"
		 "up{service=\"users\",instance=\"i2\"} 2\n"
		 "up{service=\"users\",instance=\"i3\"} 3\n"
		 "up{service=\"users\",instance=\"i4\"} 4\n"
		 "# HELP other \n# TYPE other gauge\n"
		 "other{service=\"users\",instance=\"i1\"} 7\n" DROPPED_HEAD,
		 head);
	assert_render(m, expected);

	/* i1 and i3 are gone; the kept ones keep their order, i5 comes last */
	ctx.alive = second;
	ctx.nalive = 3;
	snprintf(expected, sizeof(expected),
		 "%sup{service=\"users\",instance=\"i2\"} 1\n"
		 "up{service=\"users\",instance=\"i4\"} 2\n"
		 "up{service=\"users\",instance=\"i5\"} 3\n"
		 "# HELP other \n# TYPE other gauge\n"
		 "other{service=\"users\",instance=\"i1\"} 7\n" DROPPED_HEAD,
		 head);
	assert_render(m, expected);

	/* an end without a begin, and NULL or label-less families, do nothing */
	metric_sweep_end(ctx.g);
	metric_sweep_begin(NULL);
	metric_sweep_end(NULL);
	ctx.sweep = false;
	assert_render(m, expected);

	/* a came-back instance starts afresh; nothing alive: nothing rendered */
	ctx.sweep = true;
	ctx.alive = first;
	ctx.nalive = 1;
	snprintf(expected, sizeof(expected),
		 "%sup{service=\"users\",instance=\"i1\"} 1\n"
		 "# HELP other \n# TYPE other gauge\n"
		 "other{service=\"users\",instance=\"i1\"} 7\n" DROPPED_HEAD,
		 head);
	assert_render(m, expected);
	ctx.nalive = 0;
	snprintf(expected, sizeof(expected),
		 "%s# HELP other \n# TYPE other gauge\n"
		 "other{service=\"users\",instance=\"i1\"} 7\n" DROPPED_HEAD,
		 head);
	assert_render(m, expected);
	metrics_destroy(m);
}

/* Counts the sample lines of 'text' that start with 'prefix'. */
static size_t count_lines(const char *text, const char *prefix)
{
	size_t n = 0, len = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, len) == 0)
			n++;
	return n;
}

static void test_remove_regains_room(void **state)
{
	static const char *const names[] = {"id"};
	static const char *const five[] = {"5"};
	static const char *const extra[] = {"extra"}, *const extra2[] = {"extra2"};
	struct metrics *m = metrics_create();
	struct metric_family *f, *g;
	char value[16];
	const char *values[] = {value};
	char *text;
	(void)state;

	f = metrics_counter(m, "capped_total", "", 1, names);
	g = metrics_gauge(m, "swept", "", 1, names);
	for (int i = 0; i < METRICS_MAX_SERIES; i++) {
		snprintf(value, sizeof(value), "%d", i);
		metric_inc(f, values);
		metric_set(g, values, i);
	}
	metric_inc(f, extra); /* full: dropped */
	metric_remove(f, five);
	metric_inc(f, extra);  /* fits again, not dropped */
	metric_inc(f, extra2); /* full again: dropped */

	/* a sweep that keeps half makes room for as many new ones */
	metric_sweep_begin(g);
	for (int i = 0; i < METRICS_MAX_SERIES / 2; i++) {
		snprintf(value, sizeof(value), "%d", i);
		metric_set(g, values, i);
	}
	metric_sweep_end(g);
	for (int i = 0; i < METRICS_MAX_SERIES / 2; i++) {
		snprintf(value, sizeof(value), "new%d", i);
		metric_set(g, values, i);
	}

	text = render(m);
	assert_int_equal(count_lines(text, "capped_total{"), METRICS_MAX_SERIES);
	assert_true(isnan(sample_value(text, "capped_total{id=\"5\"}")));
	assert_true(sample_value(text, "capped_total{id=\"extra\"}") == 1);
	assert_true(isnan(sample_value(text, "capped_total{id=\"extra2\"}")));
	assert_int_equal(count_lines(text, "swept{"), METRICS_MAX_SERIES);
	assert_true(isnan(sample_value(text, "swept{id=\"5000\"}")));
	assert_true(sample_value(text, "swept{id=\"4999\"}") == 4999);
	assert_true(sample_value(text, "swept{id=\"new4999\"}") == 4999);
	assert_true(sample_value(text, METRICS_DROPPED_NAME "{family=\"capped_total\"}") == 2);
	assert_true(isnan(sample_value(text, METRICS_DROPPED_NAME "{family=\"swept\"}")));
	free(text);
	metrics_destroy(m);
}

static uint64_t xorshift(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

/* Renders 'm' and checks that family churn_total holds exactly the keys
 * whose model count is not 0, each once and with that count. */
static void churn_check(struct metrics *m, const uint64_t *model, size_t universe)
{
	static const char prefix[] = "churn_total{k=\"k";
	char *text = render(m);
	bool *seen = calloc(universe, sizeof(*seen));
	size_t lines = 0, live = 0;

	assert_non_null(seen);
	for (const char *p = strstr(text, prefix); p; p = strstr(p + 1, prefix)) {
		char *end;
		unsigned long k = strtoul(p + sizeof(prefix) - 1, &end, 10);
		double v;

		if (k >= universe || strncmp(end, "\"} ", 3) != 0)
			fail_msg("bad line: %.40s", p);
		v = strtod(end + 3, NULL);
		if (seen[k] || model[k] == 0 || v != (double)model[k])
			fail_msg("k%lu: seen %d, model %llu, rendered %g", k, seen[k],
				 (unsigned long long)model[k], v);
		seen[k] = true;
		lines++;
	}
	for (size_t k = 0; k < universe; k++)
		live += model[k] != 0;
	assert_int_equal(lines, live);
	free(seen);
	free(text);
}

/* Random inserts, updates and removals against a model, the table kept at
 * its highest load (half full), so clusters are long and wrap around. */
static void churn_run(size_t universe, size_t max_live, int ops, int check_every, uint64_t seed)
{
	static const char *const names[] = {"k"};
	struct metrics *m = metrics_create();
	struct metric_family *f = metrics_counter(m, "churn_total", "", 1, names);
	uint64_t *model = calloc(universe, sizeof(*model));
	size_t live = 0;
	char value[32];
	const char *values[] = {value};
	char *text;

	assert_non_null(model);
	for (int op = 0; op < ops; op++) {
		size_t k = (size_t)(xorshift(&seed) % universe);

		snprintf(value, sizeof(value), "k%zu", k);
		if (model[k] != 0 && (live >= max_live || xorshift(&seed) % 2)) {
			metric_remove(f, values);
			metric_remove(f, values); /* and again: absent now */
			model[k] = 0;
			live--;
		} else if (model[k] != 0 || live < max_live) {
			/* found when there, created afresh when not */
			metric_inc(f, values);
			live += model[k] == 0;
			model[k]++;
		}
		if (op % check_every == 0)
			churn_check(m, model, universe);
	}
	churn_check(m, model, universe);
	text = render(m);
	assert_null(strstr(text, METRICS_DROPPED_NAME "{"));
	free(text);
	free(model);
	metrics_destroy(m);
}

static void test_interleaved_insert_remove_keeps_table(void **state)
{
	(void)state;
	/* a 32-slot table, 16 live of 64 keys */
	churn_run(64, 16, 20000, 7, 0x9e3779b97f4a7c15ULL);
	/* a 4096-slot table, 2048 live of 8192 keys */
	churn_run(8192, 2048, 40000, 1000, 0x2545f4914f6cdd1dULL);
}

#define RACE_IDS	64
#define RACE_OPS	200000
#define RACE_RENDERS	100000
#define RACE_SECONDS_MS 3000

struct race {
	struct metric_family *churn;	 /* removed and re-added by the churner */
	struct metric_family *hist;	 /* the same, with buckets to copy */
	struct metric_family *collected; /* swept at each collect, removed by the churner */
	char ids[RACE_IDS][8];
	uint64_t deadline_ms;
	int renders;
	atomic_bool done; /* set by the churner when it ends */
	atomic_bool stop; /* set by the renderer to end the churner early */
};

static void race_collect(struct metrics *m, void *ctx)
{
	struct race *r = ctx;

	(void)m;
	metric_sweep_begin(r->collected);
	for (int i = r->renders % 3; i < RACE_IDS; i += 3) {
		const char *values[] = {r->ids[i]};

		metric_set(r->collected, values, r->renders);
	}
	metric_sweep_end(r->collected);
}

static void *race_churn(void *arg)
{
	struct race *r = arg;

	for (int i = 0;
	     i < RACE_OPS && clock_monotonic_ms() < r->deadline_ms && !atomic_load(&r->stop); i++) {
		const char *add[] = {r->ids[i % RACE_IDS]};
		const char *del[] = {r->ids[(i * 7 + 3) % RACE_IDS]};

		metric_set(r->churn, add, i);
		metric_observe(r->hist, add, i % 3);
		metric_remove(r->churn, del);
		metric_remove(r->hist, del);
		if (i % 5 == 0)
			metric_remove(r->collected, add);
	}
	atomic_store(&r->done, true);
	return NULL;
}

/* Checks that every sample of 'family' in 'text' names one of r->ids, and
 * none twice. false with the offending line in 'why': the caller must stop
 * the churner before failing, it reads the test's stack. */
static bool race_check(const struct race *r, const char *text, const char *family, char *why,
		       size_t whylen)
{
	bool seen[RACE_IDS] = {false};
	char prefix[32];
	size_t len;

	len = (size_t)snprintf(prefix, sizeof(prefix), "\n%s{id=\"", family);
	for (const char *p = strstr(text, prefix); p; p = strstr(p + 1, prefix)) {
		const char *id = p + len;
		const char *end = strchr(id, '"');
		int i;

		for (i = 0; end && i < RACE_IDS; i++)
			if (strlen(r->ids[i]) == (size_t)(end - id) &&
			    strncmp(r->ids[i], id, (size_t)(end - id)) == 0)
				break;
		if (end == NULL || i == RACE_IDS || seen[i]) {
			snprintf(why, whylen, "unknown or repeated id in: %.60s", p + 1);
			return false;
		}
		seen[i] = true;
	}
	return true;
}

/* One thread renders (and sweeps from its collect callback) while another
 * removes and re-adds series: a removed series must stay readable until the
 * render that may hold it is over. Meant for the sanitizer build. */
static void test_remove_while_rendering(void **state)
{
	static const char *const names[] = {"id"};
	static const double bounds[] = {0.5, 1.5};
	struct metrics *m = metrics_create();
	struct race r = {0};
	pthread_t tid;
	char why[128] = "";
	bool ok = true;
	(void)state;

	for (int i = 0; i < RACE_IDS; i++)
		snprintf(r.ids[i], sizeof(r.ids[i]), "id%d", i);
	r.churn = metrics_gauge(m, "churn", "", 1, names);
	r.hist = metrics_histogram(m, "hist", "", 1, names, bounds, 2);
	r.collected = metrics_gauge(m, "collected", "", 1, names);
	r.deadline_ms = clock_monotonic_ms() + RACE_SECONDS_MS;
	atomic_init(&r.done, false);
	atomic_init(&r.stop, false);
	assert_int_equal(metrics_on_collect(m, race_collect, &r), MN_OK);
	assert_int_equal(pthread_create(&tid, NULL, race_churn, &r), 0);
	for (; ok && r.renders < RACE_RENDERS && !atomic_load(&r.done); r.renders++) {
		struct buf b;
		char *text;

		buf_init(&b, 16 << 20);
		ok = metrics_render(m, &b) == MN_OK;
		text = buf_steal(&b, NULL);
		ok = ok && race_check(&r, text, "churn", why, sizeof(why)) &&
		     race_check(&r, text, "hist_count", why, sizeof(why)) &&
		     race_check(&r, text, "collected", why, sizeof(why));
		free(text);
	}
	atomic_store(&r.stop, true);
	pthread_join(tid, NULL);
	metrics_destroy(m);
	if (!ok)
		fail_msg("render %d: %s", r.renders, why[0] ? why : "render failed");
	assert_true(r.renders > 0);
}

static void test_process_metrics(void **state)
{
	static const char *const names[] = {
		"process_cpu_seconds_total",
		"process_resident_memory_bytes",
		"process_virtual_memory_bytes",
		"process_open_fds",
		"process_max_fds",
		"process_start_time_seconds",
		"process_threads",
	};
	struct metrics *m = metrics_create();
	char *text;
	(void)state;

	assert_int_equal(metrics_register_process(m), MN_OK);
	assert_int_equal(metrics_register_process(m), MN_CONFLICT);
	text = render(m);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char type[96];

		snprintf(type, sizeof(type), "\n# TYPE %s %s\n", names[i],
			 i == 0 ? "counter" : "gauge");
		if (strstr(text, type) == NULL)
			fail_msg("missing %s in:\n%s", type, text);
		assert_false(isnan(sample_value(text, names[i])));
	}
	assert_true(sample_value(text, "process_resident_memory_bytes") > 0);
	assert_true(sample_value(text, "process_virtual_memory_bytes") >=
		    sample_value(text, "process_resident_memory_bytes"));
	assert_true(sample_value(text, "process_start_time_seconds") > 1.6e9);
	assert_true(sample_value(text, "process_start_time_seconds") <= clock_wall_seconds());
	assert_true(sample_value(text, "process_open_fds") >= 3);
	assert_true(sample_value(text, "process_max_fds") >=
		    sample_value(text, "process_open_fds"));
	assert_true(sample_value(text, "process_threads") >= 1);
	assert_true(sample_value(text, "process_cpu_seconds_total") >= 0);
	free(text);
	metrics_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_with_labels),
		cmocka_unit_test(test_counter_set_from_its_source),
		cmocka_unit_test(test_labelless_gauge),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_labelless_histogram_and_inf_bound),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_value_formatting),
		cmocka_unit_test(test_bad_names_rejected),
		cmocka_unit_test(test_duplicate_rejected),
		cmocka_unit_test(test_series_cap),
		cmocka_unit_test(test_invalid_utf8_dropped),
		cmocka_unit_test(test_wrong_type_calls_ignored),
		cmocka_unit_test(test_render_cap),
		cmocka_unit_test(test_collect_called_at_render),
		cmocka_unit_test(test_concurrent_increments),
		cmocka_unit_test(test_process_metrics),
		cmocka_unit_test(test_remove_stops_rendering),
		cmocka_unit_test(test_remove_then_readd_starts_from_zero),
		cmocka_unit_test(test_sweep_removes_untouched),
		cmocka_unit_test(test_remove_regains_room),
		cmocka_unit_test(test_interleaved_insert_remove_keeps_table),
		cmocka_unit_test(test_remove_while_rendering),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
