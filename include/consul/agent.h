/* The local agent's service endpoints: register and deregister this node. */
#ifndef MESHNODE_CONSUL_AGENT_H
#define MESHNODE_CONSUL_AGENT_H

#include <jansson.h>
#include <stdbool.h>

#include "consul/client.h"

struct consul_service {
	const char *id;
	const char *name;
	const char *const *tags;
	size_t n_tags;
	const char *const *meta_keys;   /* n_meta pairs */
	const char *const *meta_values;
	size_t n_meta;
	const char *version;            /* Meta "version" */
	const char *address;
	int port;
	const char *check_url;          /* "http://127.0.0.1:8080/health" */
	int check_interval_ms;
	int check_timeout_ms;
	int deregister_after_ms;
	bool connect_native;            /* "Connect": {"Native": true} (connect.enabled) */
};

/* The registration payload of PUT /v1/agent/service/register (new reference);
 * NULL when out of memory. With 'check_passing' the check starts passing
 * ("Status": "passing"): only for a caller that has just seen the check URL
 * answer; otherwise it starts critical, Consul's default, until the agent's
 * first run of it (at a random point of the first interval). */
json_t *consul_service_to_json(const struct consul_service *svc, bool check_passing);

/* Registers (or re-registers, idempotently) the service with its check,
 * starting passing or critical as consul_service_to_json() says. This
 * call and the two below end at once (MN_IO) when 'cancel' (may be NULL)
 * turns true. */
enum mn_err consul_agent_register(struct consul *c, struct httpc *h,
				  const struct consul_service *svc, bool check_passing,
				  const atomic_bool *cancel, char *err, size_t errlen);

/* Removes the service and its check from the agent, waiting for its
 * answer at most 'timeout_ms' (0: the agent calls' usual bound). */
enum mn_err consul_agent_deregister(struct consul *c, struct httpc *h, const char *id,
				    long timeout_ms, char *err, size_t errlen);

/* MN_OK when the agent holds service 'id', MN_NOT_FOUND when it does not
 * (its state was lost, or someone deregistered it). */
enum mn_err consul_agent_service_exists(struct consul *c, struct httpc *h, const char *id,
					const atomic_bool *cancel, char *err, size_t errlen);

/* Puts the service in maintenance mode (it leaves ?passing with a critical
 * "_service_maintenance:<id>" check) or takes it out. */
enum mn_err consul_agent_maintenance(struct consul *c, struct httpc *h, const char *id,
				     bool enable, const char *reason, const atomic_bool *cancel,
				     char *err, size_t errlen);

#endif
