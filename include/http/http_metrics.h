/* The HTTP server's metrics: http_requests_total and
 * http_request_duration_seconds, updated by the server's observe hook. */
#ifndef MESHNODE_HTTP_HTTP_METRICS_H
#define MESHNODE_HTTP_HTTP_METRICS_H

#include "core/error.h"
#include "metrics/metrics.h"

struct http_metrics {
	struct metric_family *requests; /* {method,endpoint,status} counter */
	struct metric_family *duration; /* {method,endpoint} histogram, seconds */
};

/* Registers the families in 'registry' (which must outlive 'hm'): MN_OK or
 * MN_NOMEM. */
enum mn_err http_metrics_register(struct http_metrics *hm, struct metrics *registry);

/* An http_observe_fn with a struct http_metrics as its context: counts and
 * times the request, and logs it at debug. */
void http_metrics_observe(void *ctx, const char *method, const char *route, int status,
			  double seconds, const char *request_id);

#endif
