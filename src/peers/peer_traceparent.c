/* The W3C trace context header of peer calls. */
#include <stdint.h>
#include <string.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "peer_internal.h"

static bool hex_run(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static char *hex_put(char *out, uint64_t v, int digits)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
	return out + digits;
}

#define TRACEPARENT_HEADER "traceparent: "

/* The traceparent header for the call (W3C trace context): the caller's
 * trace id with a new span id of ours, or a new trace when the caller sent
 * none (or a malformed one). Written by hand: it is on every call. */
void peer_traceparent(const char *in, char out[80])
{
	static _Thread_local uint64_t rng; /* per thread: no lock on the call path */
	char *o = out + sizeof(TRACEPARENT_HEADER) - 1;

	if (rng == 0)
		rng = (clock_monotonic_ns() ^ (uint64_t)(uintptr_t)&o) | 1;
	memcpy(out, TRACEPARENT_HEADER "00-", sizeof(TRACEPARENT_HEADER) + 2);
	o += 3;
	if (in && strlen(in) == 55 && in[2] == '-' && in[35] == '-' && in[52] == '-' &&
	    hex_run(in, 2) && hex_run(in + 3, 32) && hex_run(in + 36, 16) && hex_run(in + 53, 2)) {
		memcpy(o, in + 3, 32);
		o += 32;
		*o++ = '-';
		o = hex_put(o, mn_rand_next(&rng) | 1, 16);
		*o++ = '-';
		memcpy(o, in + 53, 2);
		o += 2;
	} else {
		o = hex_put(o, mn_rand_next(&rng), 16);
		o = hex_put(o, mn_rand_next(&rng), 16);
		*o++ = '-';
		o = hex_put(o, mn_rand_next(&rng) | 1, 16);
		memcpy(o, "-01", 3);
		o += 3;
	}
	*o = '\0';
}
