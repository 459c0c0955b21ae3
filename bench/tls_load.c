/* A load generator for the Connect rows of bench/connect.sh: the same
 * client for plain HTTP and for mutual TLS, so that the two are compared
 * by one measuring stick (wrk cannot present a client certificate).
 *
 * CONNS threads, one connection each, send REQUEST for SECONDS: on one
 * kept-alive connection (mode "keep"), or on a new connection per request
 * (mode "new": a TCP connect and, with TLS, a full handshake each time;
 * session resumption is off, as a Connect server refuses it). Each answer
 * is read whole (Content-Length); a status outside 2xx, a cut connection
 * or a handshake refused counts as a failure. Prints one line:
 *   <req/s> <p50 ms> <p99 ms> <answers> <failures>
 *
 * Usage: tls_load HOST PORT CONNS SECONDS MODE METHOD PATH [BODY]
 * With TLS: the environment TLS_CERT, TLS_KEY (the client's PEM files) and
 * TLS_CA (the roots); the server's certificate is checked against TLS_CA,
 * not its name (a Connect leaf has no host name). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES_PER_THREAD 400000
#define BUF_BYTES 65536

struct conn {
	int fd;
	SSL *ssl;
};

struct worker {
	pthread_t thread;
	double *samples;
	size_t n;
	unsigned long failures;
};

static const char *host;
static int port;
static bool keep;
static SSL_CTX *ctx; /* NULL: plain HTTP */
static char request[8192];
static size_t request_len;
static double until;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static bool conn_open(struct conn *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 5};
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	c->ssl = NULL;
	if (c->fd < 0)
		return false;
	inet_pton(AF_INET, host, &sa.sin_addr);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto fail;
	if (ctx == NULL)
		return true;
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_connect(c->ssl) != 1)
		goto fail;
	return true;
fail:
	conn_close(c);
	return false;
}

static long conn_write(struct conn *c, const char *p, size_t n)
{
	if (c->ssl != NULL)
		return SSL_write(c->ssl, p, (int)n);
	return (long)send(c->fd, p, n, MSG_NOSIGNAL);
}

static long conn_read(struct conn *c, char *p, size_t n)
{
	if (c->ssl != NULL)
		return SSL_read(c->ssl, p, (int)n);
	return (long)recv(c->fd, p, n, 0);
}

/* One request and its whole answer: true for a 2xx. *closed is set when
 * the server said Connection: close. */
static bool exchange(struct conn *c, char *buf, bool *closed)
{
	size_t have = 0, head_len = 0, want = 0;
	long clen = -1;
	int status = 0;
	char *end;

	if (conn_write(c, request, request_len) != (long)request_len)
		return false;
	for (;;) {
		long r;

		if (have == BUF_BYTES)
			return false;
		r = conn_read(c, buf + have, BUF_BYTES - have);
		if (r <= 0)
			return false;
		have += (size_t)r;
		if (head_len == 0) {
			char *cl;

			buf[have < BUF_BYTES ? have : BUF_BYTES - 1] = '\0';
			end = strstr(buf, "\r\n\r\n");
			if (end == NULL)
				continue;
			head_len = (size_t)(end - buf) + 4;
			if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
				return false;
			cl = strcasestr(buf, "\r\ncontent-length:");
			if (cl == NULL || cl > end)
				return false;
			clen = strtol(cl + 17, NULL, 10);
			*closed = strcasestr(buf, "\r\nconnection: close") != NULL;
			want = head_len + (size_t)clen;
		}
		if (head_len != 0 && have >= want)
			break;
	}
	return status >= 200 && status < 300;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct conn c = {.fd = -1};
	char *buf = malloc(BUF_BYTES);

	while (buf != NULL && now_s() < until) {
		double t0 = now_s();
		bool closed = false, ok;

		if (c.fd < 0 && !conn_open(&c)) {
			w->failures++;
			usleep(1000);
			continue;
		}
		ok = exchange(&c, buf, &closed);
		if (!ok)
			w->failures++;
		else if (w->n < MAX_SAMPLES_PER_THREAD)
			w->samples[w->n++] = (now_s() - t0) * 1000.0;
		if (!ok || closed || !keep)
			conn_close(&c);
	}
	conn_close(&c);
	free(buf);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static SSL_CTX *tls_ctx(void)
{
	const char *cert = getenv("TLS_CERT"), *key = getenv("TLS_KEY"), *ca = getenv("TLS_CA");
	SSL_CTX *c;

	if (cert == NULL || *cert == '\0')
		return NULL;
	c = SSL_CTX_new(TLS_client_method());
	if (c == NULL || SSL_CTX_use_certificate_chain_file(c, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(c, ca, NULL) != 1) {
		ERR_print_errors_fp(stderr);
		exit(2);
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	return c;
}

int main(int argc, char **argv)
{
	struct worker *ws;
	size_t total = 0, k = 0;
	unsigned long failures = 0;
	double *all, seconds, t0, elapsed;
	int conns;

	if (argc < 8) {
		fprintf(stderr, "usage: tls_load HOST PORT CONNS SECONDS keep|new METHOD PATH [BODY]\n");
		return 2;
	}
	host = argv[1];
	port = atoi(argv[2]);
	conns = atoi(argv[3]);
	seconds = atof(argv[4]);
	keep = strcmp(argv[5], "keep") == 0;
	if (argc > 8)
		request_len = (size_t)snprintf(request, sizeof(request),
					       "%s %s HTTP/1.1\r\nHost: %s:%d\r\n"
					       "Content-Type: application/json\r\n"
					       "Content-Length: %zu\r\n\r\n%s",
					       argv[6], argv[7], host, port, strlen(argv[8]), argv[8]);
	else
		request_len = (size_t)snprintf(request, sizeof(request),
					       "%s %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", argv[6],
					       argv[7], host, port);
	if (conns < 1 || conns > 1024 || seconds <= 0 || seconds > 600 ||
	    request_len >= sizeof(request))
		return 2;
	ctx = tls_ctx();
	ws = calloc((size_t)conns, sizeof(*ws));
	if (ws == NULL)
		return 1;
	t0 = now_s();
	until = t0 + seconds;
	for (int i = 0; i < conns; i++) {
		ws[i].samples = malloc(MAX_SAMPLES_PER_THREAD * sizeof(double));
		if (ws[i].samples == NULL || pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0)
			return 1;
	}
	for (int i = 0; i < conns; i++) {
		pthread_join(ws[i].thread, NULL);
		total += ws[i].n;
		failures += ws[i].failures;
	}
	elapsed = now_s() - t0;
	all = malloc((total + 1) * sizeof(double));
	if (all == NULL)
		return 1;
	for (int i = 0; i < conns; i++) {
		memcpy(all + k, ws[i].samples, ws[i].n * sizeof(double));
		k += ws[i].n;
		free(ws[i].samples);
	}
	qsort(all, total, sizeof(double), cmp_double);
	printf("%.1f %.2f %.2f %zu %lu\n", (double)total / elapsed,
	       total ? all[total / 2] : 0.0,
	       total ? all[(size_t)((double)total * 0.99) < total ? (size_t)((double)total * 0.99)
							       : total - 1]
		     : 0.0,
	       total, failures);
	free(all);
	free(ws);
	SSL_CTX_free(ctx);
	return 0;
}
