/* A users peer for tests: a table of known user ids, a switch that makes
 * every call MN_UNAVAILABLE (or another failure), a call counter and a copy
 * of the last trace received. Included by the orders test programs. */
#ifndef MESHNODE_TESTS_FAKE_USERS_PEER_H
#define MESHNODE_TESTS_FAKE_USERS_PEER_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "orders/users_peer.h"

#define FAKE_PEER_USERS_MAX 8

struct fake_users_peer {
	int64_t known[FAKE_PEER_USERS_MAX];
	size_t n_known;
	enum mn_err fail;	/* MN_OK: answer from 'known' */
	unsigned retry_after_s; /* given with MN_UNAVAILABLE */
	int calls;
	int64_t last_id;
	bool got_trace;	     /* the trace pointer was not NULL */
	char request_id[64]; /* "(null)" when the trace had none */
	char traceparent[128];
};

static enum mn_err fake_user_exists(void *ctx, int64_t id, const struct users_peer_trace *trace,
				    unsigned *retry_after_s, char *err, size_t errlen)
{
	struct fake_users_peer *p = ctx;

	p->calls++;
	p->last_id = id;
	p->got_trace = trace != NULL;
	snprintf(p->request_id, sizeof(p->request_id), "%s",
		 trace && trace->request_id ? trace->request_id : "(null)");
	snprintf(p->traceparent, sizeof(p->traceparent), "%s",
		 trace && trace->traceparent ? trace->traceparent : "(null)");
	if (p->fail == MN_UNAVAILABLE)
		*retry_after_s = p->retry_after_s;
	if (p->fail != MN_OK)
		return mn_error(err, errlen, p->fail, "fake peer secret detail");
	for (size_t i = 0; i < p->n_known; i++)
		if (p->known[i] == id)
			return MN_OK;
	return mn_error(err, errlen, MN_NOT_FOUND, "no user %lld", (long long)id);
}

/* A peer knowing users 1 and 42. */
static void fake_users_peer_init(struct fake_users_peer *p)
{
	memset(p, 0, sizeof(*p));
	p->known[p->n_known++] = 1;
	p->known[p->n_known++] = 42;
}

static struct users_peer fake_users_peer_iface(struct fake_users_peer *p)
{
	return (struct users_peer){fake_user_exists, p};
}

#endif
