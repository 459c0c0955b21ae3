#include "peers/retry.h"

#include <string.h>

bool retry_idempotent(const char *method)
{
	static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};

	for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
		if (strcmp(method, safe[i]) == 0)
			return true;
	return false;
}

bool retry_allowed(const char *method, enum peer_failure f, unsigned attempts, unsigned retries)
{
	if (f == PEER_FAIL_NONE || attempts > retries)
		return false;
	return f == PEER_FAIL_CONNECT || f == PEER_FAIL_IDENTITY || retry_idempotent(method);
}

bool retry_delay(struct backoff *b, uint64_t now, uint64_t deadline, uint64_t *delay)
{
	uint64_t d = backoff_next(b);

	if (now >= deadline)
		return false;
	/* leave the attempt at least half of what remains */
	if (d > (deadline - now) / 2)
		d = (deadline - now) / 2;
	*delay = d;
	return true;
}
