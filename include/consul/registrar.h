/* Keeps this node registered with the local agent: a thread that registers
 * at once, retries with capped jittered backoff while the agent does not
 * answer, then checks every second that the agent still holds the service
 * (a read, never a re-registration on a timer) and registers again when the
 * agent has lost it (restarted, -dev state gone, deregistered by hand). It
 * also puts the service in or out of maintenance mode as asked, again after
 * a re-registration. It deregisters when stopped. */
#ifndef MESHNODE_CONSUL_REGISTRAR_H
#define MESHNODE_CONSUL_REGISTRAR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "consul/agent.h"

struct registrar;

/* Starts the thread. Call it once the node's listener and store are up:
 * each registration first GETs svc->check_url itself and, when that
 * answers 2xx, registers the check already passing (else critical, Consul's
 * default, until the agent's first check); in maintenance ('maintenance'
 * here, or registrar_set_maintenance() since) it always starts critical.
 * 'c' and 'svc' (and everything it points to) are borrowed and must outlive
 * the registrar. NULL when the thread cannot start. */
struct registrar *registrar_start(struct consul *c, const struct consul_service *svc,
				  bool maintenance, uint64_t backoff_base_ms,
				  uint64_t backoff_cap_ms);

/* Stops the thread (within a moment, even mid-backoff), then deregisters
 * the service when it was registered. The registrar stays readable (it
 * reports not registered) until registrar_destroy(), so readers on other
 * threads (/ready, metrics) may go on using it while the node drains.
 * A second call does nothing; NULL is a no-op. */
void registrar_stop(struct registrar *r);

/* Stops (as above) if not yet stopped, then frees; NULL is a no-op. Only
 * once no other thread can still read 'r'. */
void registrar_destroy(struct registrar *r);

/* true while the agent is known to hold the registration. */
bool registrar_registered(struct registrar *r);

/* Asks for maintenance mode on or off; applied by the thread at once. */
void registrar_set_maintenance(struct registrar *r, bool on);

/* Waits up to 'timeout_ms' for the first successful registration. */
bool registrar_wait(struct registrar *r, uint64_t timeout_ms);

/* registrar_wait() in steps of 100 ms, for up to 'timeout_ms', looking at
 * '*cancel' (NULL: none) between them so that a stop meanwhile is not kept
 * waiting. true when registered or cancelled. */
bool registrar_wait_registered(struct registrar *r, int timeout_ms, const atomic_bool *cancel);

/* The last registration error ("" when none) copied into out[outlen]. */
void registrar_last_error(struct registrar *r, char *out, size_t outlen);

#endif
