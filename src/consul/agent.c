#include "consul/agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_TIMEOUT_MS 5000

/* Go duration text Consul parses: "10000ms". */
static json_t *duration(int ms)
{
	char s[32];

	snprintf(s, sizeof(s), "%dms", ms);
	return json_string(s);
}

json_t *consul_service_to_json(const struct consul_service *svc, bool check_passing)
{
	json_t *o, *tags, *meta, *check;

	tags = json_array();
	meta = json_object();
	check = json_pack("{s:s, s:o, s:o, s:o}", "HTTP", svc->check_url, "Interval",
			  duration(svc->check_interval_ms), "Timeout", duration(svc->check_timeout_ms),
			  "DeregisterCriticalServiceAfter", duration(svc->deregister_after_ms));
	if (tags == NULL || meta == NULL || check == NULL)
		goto out_free;
	if (check_passing && json_object_set_new(check, "Status", json_string("passing")) != 0)
		goto out_free;
	for (size_t i = 0; i < svc->n_tags; i++)
		if (json_array_append_new(tags, json_string(svc->tags[i])) != 0)
			goto out_free;
	for (size_t i = 0; i < svc->n_meta; i++)
		if (json_object_set_new(meta, svc->meta_keys[i], json_string(svc->meta_values[i])) != 0)
			goto out_free;
	if (json_object_set_new(meta, "version", json_string(svc->version)) != 0)
		goto out_free;
	o = json_pack("{s:s, s:s, s:o, s:o, s:s, s:i, s:o}", "ID", svc->id, "Name", svc->name, "Tags",
		      tags, "Meta", meta, "Address", svc->address, "Port", svc->port, "Check", check);
	/* json_pack's "o" stole the three on success and on failure */
	if (o && svc->connect_native &&
	    json_object_set_new(o, "Connect", json_pack("{s:b}", "Native", 1)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;

out_free:
	json_decref(tags);
	json_decref(meta);
	json_decref(check);
	return NULL;
}

enum mn_err consul_agent_register(struct consul *c, struct httpc *h,
				  const struct consul_service *svc, bool check_passing,
				  const atomic_bool *cancel, char *err, size_t errlen)
{
	struct httpc_response res;
	enum mn_err ret;
	json_t *payload = consul_service_to_json(svc, check_passing);
	char *body;

	if (payload == NULL)
		return mn_error(err, errlen, MN_NOMEM, "cannot build the registration");
	body = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	if (body == NULL)
		return mn_error(err, errlen, MN_NOMEM, "cannot encode the registration");
	httpc_response_init(&res);
	ret = consul_call(c, h,
			  &(struct consul_call){.op = "register",
						.method = "PUT",
						.path = "/v1/agent/service/register",
						.body = body,
						.body_len = strlen(body),
						.timeout_ms = AGENT_TIMEOUT_MS,
						.cancel = cancel},
			  &res, err, errlen);
	httpc_response_release(&res);
	free(body);
	return ret;
}

/* One bodiless call on /v1/agent/service/<what>/<id><query>. */
static enum mn_err service_call(struct consul *c, struct httpc *h, const char *op,
				const char *method, const char *what, const char *id,
				const char *query, long timeout_ms, const atomic_bool *cancel,
				char *err, size_t errlen)
{
	struct httpc_response res;
	char path[1024];
	char *escaped = httpc_escape(id);
	enum mn_err ret;

	if (escaped == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	snprintf(path, sizeof(path), "/v1/agent/service/%s%s%s", what, escaped, query);
	free(escaped);
	httpc_response_init(&res);
	ret = consul_call(c, h,
			  &(struct consul_call){.op = op,
						.method = method,
						.path = path,
						.timeout_ms = timeout_ms > 0 ? timeout_ms
									     : AGENT_TIMEOUT_MS,
						.cancel = cancel},
			  &res, err, errlen);
	httpc_response_release(&res);
	return ret;
}

enum mn_err consul_agent_deregister(struct consul *c, struct httpc *h, const char *id,
				    long timeout_ms, char *err, size_t errlen)
{
	return service_call(c, h, "deregister", "PUT", "deregister/", id, "", timeout_ms, NULL, err,
			    errlen);
}

enum mn_err consul_agent_service_exists(struct consul *c, struct httpc *h, const char *id,
					const atomic_bool *cancel, char *err, size_t errlen)
{
	return service_call(c, h, "service_check", "GET", "", id, "", 0, cancel, err,
			    errlen);
}

enum mn_err consul_agent_maintenance(struct consul *c, struct httpc *h, const char *id,
				     bool enable, const char *reason, const atomic_bool *cancel,
				     char *err, size_t errlen)
{
	char query[512];
	char *escaped = httpc_escape(reason);

	if (escaped == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	snprintf(query, sizeof(query), "?enable=%s&reason=%.400s", enable ? "true" : "false",
		 escaped);
	free(escaped);
	return service_call(c, h, "maintenance", "PUT", "maintenance/", id, query, 0, cancel, err,
			    errlen);
}
