#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
