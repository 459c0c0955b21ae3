/* What every program under tests/agent/ shares: the agent it runs against,
 * named the way Consul's own tools name it, CONSUL_HTTP_ADDR
 * ("127.0.0.1:8500" or "http://127.0.0.1:8500") and CONSUL_HTTP_TOKEN
 * (optional), with TLS from CONSUL_CACERT and friends (consul/client.h).
 * tests/integration/test_agent_programs.py sets them. Header-only; include
 * after <cmocka.h>. */
#ifndef MESHNODE_TESTS_AGENT_ENV_H
#define MESHNODE_TESTS_AGENT_ENV_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "consul/client.h"
#include "http/client.h"

extern char **environ;

/* A client of the agent in CONSUL_HTTP_ADDR (free with consul_destroy()). */
static inline struct consul *agent_consul(char *err, size_t errlen)
{
	const char *addr = getenv("CONSUL_HTTP_ADDR");
	char url[512];

	if (addr == NULL || *addr == '\0')
		return NULL;
	if (strstr(addr, "://"))
		snprintf(url, sizeof(url), "%s", addr);
	else
		snprintf(url, sizeof(url), "http://%s", addr);
	return consul_create_env(url, getenv("CONSUL_HTTP_TOKEN"), environ, err, errlen);
}

/* A group setup: fails the whole program when there is no agent to run
 * against (these programs never pass without one). */
static inline int agent_env_check(void **state)
{
	(void)state;
	if (getenv("CONSUL_HTTP_ADDR") == NULL || *getenv("CONSUL_HTTP_ADDR") == '\0') {
		fprintf(stderr, "CONSUL_HTTP_ADDR is not set: run through "
				"tests/integration/test_agent_programs.py\n");
		return -1;
	}
	return 0;
}

/* A loopback port nothing listens on: bound, read, closed (free for a
 * server the program starts, or refused for a client it points there). */
static inline int agent_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* One call to the agent, which must answer 200 (the program fails
 * otherwise); the answer's body in 'body' (may be NULL), 'size' bytes. */
static inline void agent_do(struct consul *c, const char *method, const char *path, const char *req,
			    char *body, size_t size)
{
	struct httpc *h = consul_conn_create(c);
	struct httpc_response res;
	char err[256];
	enum mn_err e;

	assert_non_null(h);
	httpc_response_init(&res);
	e = consul_call(c, h,
			&(struct consul_call){.op = "test",
					      .method = method,
					      .path = path,
					      .body = req,
					      .body_len = req ? strlen(req) : 0,
					      .timeout_ms = 10000},
			&res, err, sizeof(err));
	if (e != MN_OK || res.status != 200)
		fail_msg("%s %s: %s (%ld)", method, path, e != MN_OK ? err : "status", res.status);
	if (body) {
		assert_true(res.body.len < size);
		memcpy(body, res.body.data ? res.body.data : "", res.body.len);
		body[res.body.len] = '\0';
	}
	httpc_response_release(&res);
	consul_conn_destroy(c, h);
}

#endif
