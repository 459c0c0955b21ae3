#include "http/http_metrics.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

static const char *method_label(const char *m)
{
	static const char *const known[] = {"GET",   "POST", "PUT",    "DELETE",
					    "PATCH", "HEAD", "OPTIONS"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return "OTHER"; /* a client cannot mint label values */
}

void http_metrics_observe(void *ctx, const char *method, const char *route, int status,
			  double seconds, const char *request_id)
{
	struct http_metrics *hm = ctx;
	char code[8];
	const char *m = method_label(method);
	const char *endpoint = route ? route : "unmatched";

	snprintf(code, sizeof(code), "%d", status);
	metric_inc(hm->requests, (const char *[]){m, endpoint, code});
	metric_observe(hm->duration, (const char *[]){m, endpoint}, seconds);
	log_debug("http", "%s %s %d %.3f ms request %s", m, endpoint, status, seconds * 1000.0,
		  request_id);
}

enum mn_err http_metrics_register(struct http_metrics *hm, struct metrics *registry)
{
	static const char *const http_labels[] = {"method", "endpoint", "status"};

	hm->requests = metrics_counter(
		registry, "http_requests_total",
		"HTTP requests answered, by method, route pattern and status.", 3, http_labels);
	hm->duration =
		metrics_histogram(registry, "http_request_duration_seconds",
				  "Time to answer HTTP requests, by method and route pattern.", 2,
				  http_labels, metrics_http_buckets, metrics_http_buckets_count);
	return hm->requests && hm->duration ? MN_OK : MN_NOMEM;
}
