/* Keeps this node registered with the local agent: a thread that registers
 * at once, retries with capped jittered backoff while the agent does not
 * answer, and deregisters when stopped. */
#ifndef MESHNODE_CONSUL_REGISTRAR_H
#define MESHNODE_CONSUL_REGISTRAR_H

#include <stdbool.h>
#include <stdint.h>

#include "consul/agent.h"

struct registrar;

/* Starts the thread. 'c' and 'svc' (and everything it points to) are
 * borrowed and must outlive the registrar. NULL when the thread cannot
 * start. */
struct registrar *registrar_start(struct consul *c, const struct consul_service *svc,
				  uint64_t backoff_base_ms, uint64_t backoff_cap_ms);

/* Stops the thread (within a moment, even mid-backoff), then deregisters
 * the service when it was registered. Frees the registrar; NULL is a no-op. */
void registrar_stop(struct registrar *r);

/* true once the agent accepted the registration. */
bool registrar_registered(struct registrar *r);

/* Waits up to 'timeout_ms' for the first successful registration. */
bool registrar_wait(struct registrar *r, uint64_t timeout_ms);

/* The last registration error ("" when none) copied into out[outlen]. */
void registrar_last_error(struct registrar *r, char *out, size_t outlen);

#endif
