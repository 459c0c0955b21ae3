#include "peers/users_peer_http.h"

#include <inttypes.h>
#include <stdio.h>

static enum mn_err user_exists(void *ctx, int64_t id, const struct users_peer_trace *trace,
			       unsigned *retry_after_s, char *err, size_t errlen)
{
	struct users_peer_http *u = ctx;
	struct peer_settings s;
	struct httpc_response res;
	const void *token;
	char path[64];
	enum mn_err e;

	snprintf(path, sizeof(path), "/users/%" PRId64, id);
	token = u->settings->get(u->settings->ctx, u->service, &s);
	httpc_response_init(&res);
	e = peer_call(u->client, &s,
		      &(struct peer_request){
			      .service = u->service,
			      .method = "GET",
			      .path = path,
			      .request_id = trace ? trace->request_id : NULL,
			      .traceparent = trace ? trace->traceparent : NULL,
			      .max_response = 64 * 1024,
		      },
		      &res, err, errlen);
	if (e == MN_OK && res.status == 200)
		goto out;
	if (e == MN_OK && res.status == 404) {
		e = mn_error(err, errlen, MN_NOT_FOUND, "user %" PRId64 " does not exist", id);
		goto out;
	}
	if (e == MN_OK)
		e = mn_error(err, errlen, MN_UNAVAILABLE, "%s answered %ld", u->service, res.status);
	if (e == MN_UNAVAILABLE) {
		uint64_t ms = peer_client_retry_after_ms(u->client, u->service, &s);

		*retry_after_s = ms > 1000 ? (unsigned)((ms + 999) / 1000) : 1;
	}
out:
	httpc_response_release(&res);
	u->settings->put(u->settings->ctx, token);
	return e;
}

struct users_peer users_peer_http(struct users_peer_http *u)
{
	return (struct users_peer){user_exists, u};
}
