/* The baseline of `make bench`: civetweb answering GET /users/1 with a fixed
 * JSON body, status line, headers and body in one mg_write, and nothing
 * else (no routing, store, metrics or logging). meshnode is measured beside
 * it in the same run. Usage: bare PORT THREADS */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int handle(struct mg_connection *conn)
{
	static const char body[] = "{\"id\":1,\"name\":\"Ada\",\"email\":\"ada@example.com\"}";
	char out[512];
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 sizeof(body) - 1, body);

	mg_write(conn, out, (size_t)n);
	return 200;
}

int main(int argc, char **argv)
{
	struct mg_callbacks cb;
	const char *opts[] = {"listening_ports", NULL, "num_threads", NULL, "tcp_nodelay", "1",
			      "enable_keep_alive", "yes", NULL};
	char listen[64];
	sigset_t set;
	int sig;

	if (argc != 3)
		return 2;
	snprintf(listen, sizeof(listen), "127.0.0.1:%s", argv[1]);
	opts[1] = listen;
	opts[3] = argv[2];
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	memset(&cb, 0, sizeof(cb));
	cb.begin_request = handle;
	struct mg_context *ctx = mg_start(&cb, NULL, opts);
	if (ctx == NULL)
		return 1;
	sigwait(&set, &sig);
	mg_stop(ctx);
	return 0;
}
