/* When a failed peer call goes again to another instance. Pure. */
#ifndef MESHNODE_PEERS_RETRY_H
#define MESHNODE_PEERS_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backoff.h"

enum peer_failure {
	PEER_FAIL_NONE,
	PEER_FAIL_CONNECT,   /* no connection: nothing was sent */
	PEER_FAIL_TIMEOUT,   /* connected and sent, no answer in time */
	PEER_FAIL_5XX,       /* answered with a server error */
	PEER_FAIL_IO,        /* the connection broke after sending */
	PEER_FAIL_IDENTITY,  /* a Connect peer presented a certificate that is
				not the service's on a current root: nothing
				was sent */
};

/* GET, HEAD, OPTIONS, PUT, DELETE: the same request twice does no harm. */
bool retry_idempotent(const char *method);

/* May the call go again after 'attempts' attempts (1 after the first) that
 * ended with 'f'? Only idempotent requests, or any request when nothing was
 * sent; at most 'retries' retries. */
bool retry_allowed(const char *method, enum peer_failure f, unsigned attempts, unsigned retries);

/* The pause before the next attempt: capped jittered backoff, cut so the
 * attempt still starts before 'deadline'. false when no time is left. */
bool retry_delay(struct backoff *b, uint64_t now, uint64_t deadline, uint64_t *delay);

#endif
