#include "consul/dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/hostport.h"
#include "core/log.h"
#include "core/text.h"
#include "core/worker.h"

#define DEFAULT_REFRESH_MS 1000
#define DEFAULT_TIMEOUT_MS 1000
/* A TTL above zero is followed, up to this: an operator who set one
 * chose fewer lookups, not stale views for hours. */
#define TTL_REFRESH_CAP_MS 30000

/* ---- the query ------------------------------------------------------------ */

static bool label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

size_t consul_dns_query(const char *name, uint16_t id, unsigned char *buf, size_t cap)
{
	size_t len = strlen(name), pos = 12;
	const char *label = name;

	if (len == 0 || len > 253 || cap < 12 + len + 2 + 4)
		return 0;
	memset(buf, 0, 12);
	buf[0] = (unsigned char)(id >> 8);
	buf[1] = (unsigned char)id;
	buf[2] = 0x01; /* recursion desired: what resolvers send */
	buf[5] = 1;    /* one question */
	while (*label) {
		const char *end = strchr(label, '.');
		size_t n = end ? (size_t)(end - label) : strlen(label);

		if (n == 0 || n > 63)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (!label_char(label[i]))
				return 0;
		buf[pos++] = (unsigned char)n;
		memcpy(buf + pos, label, n);
		pos += n;
		label += n + (end ? 1 : 0);
		if (end && *label == '\0')
			return 0; /* a trailing dot: names are given without it */
	}
	buf[pos++] = 0;
	buf[pos++] = 0, buf[pos++] = ns_t_srv;
	buf[pos++] = 0, buf[pos++] = ns_c_in;
	return pos;
}

/* ---- the answer ----------------------------------------------------------- */

struct host_addr {
	char name[NS_MAXDNAME];
	char addr[INET6_ADDRSTRLEN];
};

/* The address Consul encodes in a target "<hex>.addr.<dc>.consul": 8 hex
 * digits for IPv4, 32 for IPv6. false for any other name. */
static bool addr_from_target(const char *target, char out[INET6_ADDRSTRLEN])
{
	const char *dot = strchr(target, '.');
	unsigned char raw[16];
	size_t hex = dot ? (size_t)(dot - target) : 0;

	if ((hex != 8 && hex != 32) || strncasecmp(dot, ".addr.", 6) != 0)
		return false;
	for (size_t i = 0; i < hex / 2; i++) {
		int hi = text_hex_value(target[2 * i]), lo = text_hex_value(target[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		raw[i] = (unsigned char)(hi << 4 | lo);
	}
	return inet_ntop(hex == 8 ? AF_INET : AF_INET6, raw, out, INET6_ADDRSTRLEN) != NULL;
}

/* "<node>.node.<dc>.consul": the node's name in 'node'; "" otherwise. */
static void node_from_target(const char *target, char *node, size_t cap)
{
	const char *dot = strchr(target, '.');
	size_t n = dot ? (size_t)(dot - target) : 0;

	node[0] = '\0';
	if (n && n < cap && strncasecmp(dot, ".node.", 6) == 0) {
		memcpy(node, target, n);
		node[n] = '\0';
	}
}

/* The A and AAAA records of the additional section; *n of them. */
static struct host_addr *additional_addrs(ns_msg *h, size_t *n)
{
	size_t count = ns_msg_count(*h, ns_s_ar);
	struct host_addr *v = calloc(count ? count : 1, sizeof(*v));

	*n = 0;
	for (size_t i = 0; v && i < count; i++) {
		ns_rr rr;
		int af;

		if (ns_parserr(h, ns_s_ar, (int)i, &rr) != 0 || ns_rr_class(rr) != ns_c_in)
			continue;
		if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4)
			af = AF_INET;
		else if (ns_rr_type(rr) == ns_t_aaaa && ns_rr_rdlen(rr) == 16)
			af = AF_INET6;
		else
			continue;
		if (inet_ntop(af, ns_rr_rdata(rr), v[*n].addr, sizeof(v[*n].addr)) == NULL)
			continue;
		snprintf(v[*n].name, sizeof(v[*n].name), "%s", ns_rr_name(rr));
		(*n)++;
	}
	return v;
}

static const char *lookup_addr(const struct host_addr *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v[i].name, name) == 0)
			return v[i].addr;
	return NULL;
}

/* One instance from an SRV record: false when it is not one Consul sends
 * (its target has no address) or out of memory (*oom). */
static bool instance_from_srv(ns_msg *h, const ns_rr *rr, const struct host_addr *addrs,
			      size_t naddrs, struct consul_instance *in, bool *oom)
{
	const unsigned char *rd = ns_rr_rdata(*rr);
	char target[NS_MAXDNAME], node[NS_MAXDNAME], decoded[INET6_ADDRSTRLEN], id[80];
	const char *addr;
	int port;

	if (ns_rr_rdlen(*rr) < 7)
		return false;
	port = rd[4] << 8 | rd[5];
	if (port == 0 || ns_name_uncompress(ns_msg_base(*h), ns_msg_end(*h), rd + 6, target,
					    sizeof(target)) < 0)
		return false;
	addr = lookup_addr(addrs, naddrs, target);
	if (addr == NULL && addr_from_target(target, decoded))
		addr = decoded;
	if (addr == NULL || consul_host_unusable(addr) != NULL)
		return false;
	node_from_target(target, node, sizeof(node));
	snprintf(id, sizeof(id), strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr, port);
	*in = (struct consul_instance){
		.id = strdup(id),
		.node = strdup(node),
		.address = strdup(addr),
		.port = port,
		.tags = json_array(),
		.meta = json_object(),
		.passing = true,
	};
	if (!in->id || !in->node || !in->address || !in->tags || !in->meta) {
		*oom = true;
		free(in->id), free(in->node), free(in->address);
		json_decref(in->tags), json_decref(in->meta);
		return false;
	}
	return true;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(((const struct consul_instance *)a)->id,
		      ((const struct consul_instance *)b)->id);
}

static void instance_release(struct consul_instance *in)
{
	free(in->id);
	free(in->node);
	free(in->address);
	json_decref(in->tags);
	json_decref(in->meta);
}

/* Sorts v by id (Consul shuffles its records: the order is no change)
 * and frees all but the first of each id; the count left. */
static size_t sort_unique(struct consul_instance *v, size_t n)
{
	size_t k = 0;

	if (n < 2) /* qsort(NULL, 0, ...) is undefined */
		return n;
	qsort(v, n, sizeof(*v), cmp_id);
	for (size_t i = 0; i < n; i++) {
		if (k && strcmp(v[k - 1].id, v[i].id) == 0) {
			instance_release(&v[i]);
			continue;
		}
		v[k++] = v[i];
	}
	return k;
}

enum mn_err consul_dns_parse(const unsigned char *msg, size_t len, uint16_t id,
			     struct consul_instance **out, size_t *n, struct consul_dns_answer *a,
			     char *err, size_t errlen)
{
	struct consul_instance *v;
	struct host_addr *addrs;
	size_t count, naddrs, usable;
	bool oom = false;
	ns_msg h;
	int rcode;

	*out = NULL;
	*n = 0;
	*a = (struct consul_dns_answer){0};
	if (len > DNS_ANSWER_MAX || ns_initparse(msg, (int)len, &h) != 0)
		return mn_error(err, errlen, MN_INVALID, "malformed DNS message (%zu bytes)", len);
	if (ns_msg_id(h) != id || !ns_msg_getflag(h, ns_f_qr))
		return mn_error(err, errlen, MN_INVALID, "not the answer to our query");
	rcode = ns_msg_getflag(h, ns_f_rcode);
	a->truncated = ns_msg_getflag(h, ns_f_tc);
	if (rcode == ns_r_nxdomain) {
		a->nxdomain = true; /* no such service, or none of it passing */
		return MN_OK;
	}
	if (rcode != ns_r_noerror)
		return mn_error(err, errlen, MN_INVALID, "the DNS server answered rcode %d", rcode);
	count = ns_msg_count(h, ns_s_an);
	v = calloc(count ? count : 1, sizeof(*v));
	addrs = v ? additional_addrs(&h, &naddrs) : NULL;
	if (v == NULL || addrs == NULL) {
		free(v);
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < count && !oom; i++) {
		ns_rr rr;

		if (ns_parserr(&h, ns_s_an, (int)i, &rr) != 0) {
			free(addrs);
			consul_instances_free(v, *n);
			*n = 0;
			*a = (struct consul_dns_answer){0};
			return mn_error(err, errlen, MN_INVALID, "malformed DNS answer record %zu",
					i);
		}
		if (ns_rr_type(rr) != ns_t_srv || ns_rr_class(rr) != ns_c_in)
			continue;
		a->records++;
		if (instance_from_srv(&h, &rr, addrs, naddrs, &v[*n], &oom)) {
			if (*n == 0 || ns_rr_ttl(rr) < a->ttl)
				a->ttl = ns_rr_ttl(rr);
			(*n)++;
		} else if (!oom) {
			a->refused++;
		}
	}
	free(addrs);
	if (oom) {
		consul_instances_free(v, *n);
		*n = 0;
		*a = (struct consul_dns_answer){0};
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	}
	usable = sort_unique(v, *n);
	a->duplicates = *n - usable;
	*n = usable;
	*out = v;
	return MN_OK;
}

enum consul_dns_verdict consul_dns_verdict(const struct consul_dns_answer *a, size_t n)
{
	if (n)
		return CONSUL_DNS_SOME;
	return a->nxdomain || a->records == 0 ? CONSUL_DNS_NONE : CONSUL_DNS_BROKEN;
}

/* ---- the lookup ----------------------------------------------------------- */

bool consul_dns_server_valid(const char *server)
{
	return server && hostport_parse_ip(server, NULL, NULL);
}

/* Waits until fd is ready for 'events' or the deadline; false on time out. */
static bool wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = clock_monotonic_ms();
		struct pollfd p = {.fd = fd, .events = events};
		int r;

		if (now >= deadline)
			return false;
		r = poll(&p, 1, (int)(deadline - now));
		if (r > 0)
			return true;
		if (r < 0 && errno != EINTR)
			return true; /* the call that follows says what is wrong */
	}
}

/* Reads exactly len bytes from a non-blocking stream socket by the deadline. */
static bool read_full(int fd, unsigned char *buf, size_t len, uint64_t deadline)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = recv(fd, buf + got, len - got, 0);

		if (r > 0) {
			got += (size_t)r;
		} else if (r == 0) {
			return false;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			if (!wait_fd(fd, POLLIN, deadline))
				return false;
		} else {
			return false;
		}
	}
	return true;
}

/* One exchange over TCP (two-byte length before each message). */
static enum mn_err exchange_tcp(const struct sockaddr_storage *sa, socklen_t salen,
				const unsigned char *q, size_t qlen, unsigned char *buf,
				size_t *len, uint64_t deadline, char *err, size_t errlen)
{
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unsigned char framed[2 + 512];
	enum mn_err e = MN_UNAVAILABLE;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (fd < 0)
		return mn_error(err, errlen, MN_IO, "socket: %s", strerror(errno));
	if (qlen > sizeof(framed) - 2) {
		mn_error(err, errlen, MN_INVALID, "query too long");
		goto out;
	}
	if (connect(fd, (const struct sockaddr *)sa, salen) != 0 && errno != EINPROGRESS) {
		mn_error(err, errlen, MN_UNAVAILABLE, "TCP: %s", strerror(errno));
		goto out;
	}
	if (!wait_fd(fd, POLLOUT, deadline) ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
		mn_error(err, errlen, MN_UNAVAILABLE, "TCP: %s",
			 soerr ? strerror(soerr) : "no connection in time");
		goto out;
	}
	framed[0] = (unsigned char)(qlen >> 8);
	framed[1] = (unsigned char)qlen;
	memcpy(framed + 2, q, qlen);
	/* a few dozen bytes into an empty socket buffer: one send */
	if (send(fd, framed, qlen + 2, MSG_NOSIGNAL) != (ssize_t)(qlen + 2)) {
		mn_error(err, errlen, MN_UNAVAILABLE, "TCP: %s", strerror(errno));
		goto out;
	}
	if (!read_full(fd, framed, 2, deadline) ||
	    !read_full(fd, buf, (size_t)(framed[0] << 8 | framed[1]), deadline)) {
		mn_error(err, errlen, MN_UNAVAILABLE, "TCP: no whole answer in time");
		goto out;
	}
	*len = (size_t)(framed[0] << 8 | framed[1]);
	e = MN_OK;
out:
	close(fd);
	return e;
}

enum mn_err consul_dns_lookup(const char *server, const char *name, uint64_t timeout_ms,
			      struct consul_instance **out, size_t *n, struct consul_dns_answer *a,
			      char *err, size_t errlen)
{
	static atomic_uint serial;
	uint64_t deadline = clock_monotonic_ms() + timeout_ms;
	unsigned char q[512], *buf;
	struct sockaddr_storage sa;
	socklen_t salen;
	size_t qlen, len = 0;
	uint16_t id;
	enum mn_err e;

	*out = NULL;
	*n = 0;
	*a = (struct consul_dns_answer){0};
	if (!hostport_parse_ip(server, &sa, &salen))
		return mn_error(err, errlen, MN_INVALID, "not an address:port: '%s'", server);
	/* not a secret: the agent is on loopback; an id only tells answers apart */
	id = (uint16_t)(atomic_fetch_add(&serial, 1) * 40503u + (unsigned)clock_monotonic_ms());
	qlen = consul_dns_query(name, id, q, sizeof(q));
	if (qlen == 0)
		return mn_error(err, errlen, MN_INVALID, "not a valid DNS name: '%s'", name);
	buf = malloc(DNS_ANSWER_MAX);
	if (buf == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	e = exchange_tcp(&sa, salen, q, qlen, buf, &len, deadline, err, errlen);
	if (e == MN_OK)
		e = consul_dns_parse(buf, len, id, out, n, a, err, errlen);
	free(buf);
	return e;
}

/* ---- the view ------------------------------------------------------------- */

/* The set's signature: FNV-1a over its ids in order (consul_dns_parse()
 * sorted them, so Consul's shuffling is no change). */
static uint64_t set_signature(const struct consul_instance *v, size_t n)
{
	uint64_t h = HASH_START;

	for (size_t i = 0; i < n; i++)
		h = hash_byte(hash_str(h, v[i].id), '\0');
	return h;
}

void dns_view_init(struct dns_view *v)
{
	*v = (struct dns_view){0};
}

enum dns_view_action dns_view_answer(struct dns_view *v, const struct consul_dns_answer *a,
				     const struct consul_instance *inst, size_t n, uint64_t now_ms)
{
	uint64_t sig;

	switch (consul_dns_verdict(a, n)) {
	case CONSUL_DNS_BROKEN:
		v->broken++;
		return DNS_VIEW_KEEP;
	case CONSUL_DNS_NONE:
		v->none_in_a_row++;
		if (v->shown && v->shown_n &&
		    (v->none_in_a_row < DNS_VIEW_NONE_ANSWERS ||
		     now_ms - v->confirmed_ms < DNS_VIEW_KEEP_MS))
			return DNS_VIEW_HOLD;
		break;
	case CONSUL_DNS_SOME:
		v->none_in_a_row = 0;
		v->confirmed_ms = now_ms;
		break;
	}
	sig = set_signature(inst, n);
	if (v->shown && sig == v->signature && n == v->shown_n)
		return DNS_VIEW_SAME;
	v->shown = true;
	v->signature = sig;
	v->shown_n = n;
	return DNS_VIEW_CHANGE;
}

/* ---- the watch ------------------------------------------------------------ */

struct dns_watch {
	char *server, *name, *service;
	uint64_t refresh_ms, timeout_ms;
	dns_change_fn on_change;
	void *ctx;
	pthread_mutex_t lock;
	struct worker worker;         /* the watch's thread, under 'lock' */
	atomic_uint_fast64_t last_ok; /* monotonic ms of the last answer applied */
	uint64_t index;               /* changes delivered */
	struct dns_view view;
};

/* Logs what an answer that changed nothing says, once per run of them. */
static void log_kept(struct dns_watch *w, enum dns_view_action act,
		     const struct consul_dns_answer *a, enum dns_view_action *last)
{
	if (act == *last)
		return;
	if (act == DNS_VIEW_HOLD)
		log_warn("peers",
			 "DNS: no instance of '%s' at %s (%s); the last view of '%s' (%zu "
			 "instance%s) stays until %d answers in a row and %d ms since the last "
			 "instance say so",
			 w->name, w->server, a->nxdomain ? "NXDOMAIN" : "an empty answer",
			 w->service, w->view.shown_n, w->view.shown_n == 1 ? "" : "s",
			 DNS_VIEW_NONE_ANSWERS, DNS_VIEW_KEEP_MS);
	else if (act == DNS_VIEW_KEEP)
		log_warn("peers",
			 "DNS answer for '%s' at %s has no usable record (%zu SRV records, all "
			 "refused: no address, port 0, an unspecified or link-local address); the "
			 "last view of '%s' stays (%llu such answers)",
			 w->name, w->server, a->records, w->service,
			 (unsigned long long)w->view.broken);
}

static void *watch_main(void *arg)
{
	struct dns_watch *w = arg;
	enum dns_view_action last = DNS_VIEW_SAME;
	unsigned failures = 0;

	pthread_mutex_lock(&w->lock);
	while (!worker_stopping(&w->worker)) {
		struct consul_instance *v = NULL;
		struct consul_dns_answer a;
		uint64_t wait_ms = w->refresh_ms;
		enum dns_view_action act;
		uint64_t now;
		size_t n = 0;
		char err[256];
		enum mn_err e;

		pthread_mutex_unlock(&w->lock);
		e = consul_dns_lookup(w->server, w->name, w->timeout_ms, &v, &n, &a, err,
				      sizeof(err));
		if (e == MN_OK) {
			if (failures)
				log_info("peers", "DNS lookup of '%s' at %s answers again", w->name,
					 w->server);
			failures = 0;
			now = clock_monotonic_ms();
			act = dns_view_answer(&w->view, &a, v, n, now);
			/* the agent answered (a hold is an answer of none, kept
			 * for a while): only a broken answer leaves the view stale */
			if (act != DNS_VIEW_KEEP)
				atomic_store(&w->last_ok, now);
			if (act == DNS_VIEW_CHANGE && last == DNS_VIEW_HOLD && n == 0)
				log_warn("peers",
					 "DNS: no instance of '%s' in %u answers over %llu ms; the "
					 "view of '%s' is empty now",
					 w->name, w->view.none_in_a_row,
					 (unsigned long long)(now - w->view.confirmed_ms), w->service);
			if (a.duplicates && act == DNS_VIEW_CHANGE)
				log_info("peers",
					 "DNS answer for '%s': %zu repeated SRV records counted once",
					 w->name, a.duplicates);
			log_kept(w, act, &a, &last);
			last = act;
			if (act == DNS_VIEW_CHANGE)
				w->on_change(w->ctx, v, n, ++w->index);
			else
				consul_instances_free(v, n);
			if (a.ttl)
				wait_ms = (uint64_t)a.ttl * 1000 < w->refresh_ms ? w->refresh_ms
				    : (uint64_t)a.ttl * 1000 > TTL_REFRESH_CAP_MS ? TTL_REFRESH_CAP_MS
										  : (uint64_t)a.ttl * 1000;
		} else if (failures++ == 0) {
			log_warn("peers", "DNS lookup of '%s' at %s failed: %s; the last view of '%s' "
				 "stays", w->name, w->server, err, w->service);
		}
		pthread_mutex_lock(&w->lock);
		worker_wait_locked(&w->worker, wait_ms, NULL, NULL);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void watch_free(struct dns_watch *w)
{
	free(w->server);
	free(w->name);
	free(w->service);
	free(w);
}

struct dns_watch *dns_watch_start(const struct dns_watch_opts *o)
{
	struct dns_watch *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->server = strdup(o->server);
	w->name = strdup(o->name);
	w->service = strdup(o->service ? o->service : o->name);
	if (!w->server || !w->name || !w->service) {
		watch_free(w);
		return NULL;
	}
	w->refresh_ms = o->refresh_ms ? o->refresh_ms : DEFAULT_REFRESH_MS;
	w->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	w->on_change = o->on_change;
	w->ctx = o->ctx;
	atomic_init(&w->last_ok, clock_monotonic_ms());
	pthread_mutex_init(&w->lock, NULL);
	if (worker_init(&w->worker, &w->lock, NULL) != MN_OK)
		goto out_mutex;
	if (worker_start(&w->worker, watch_main, w) != MN_OK)
		goto out_worker;
	return w;

out_worker:
	worker_release(&w->worker);
out_mutex:
	pthread_mutex_destroy(&w->lock);
	watch_free(w);
	return NULL;
}

void dns_watch_stop(struct dns_watch *w)
{
	if (w == NULL)
		return;
	worker_stop(&w->worker);
	worker_join(&w->worker, -1);
	worker_release(&w->worker);
	pthread_mutex_destroy(&w->lock);
	watch_free(w);
}

uint64_t dns_watch_stale_ms(struct dns_watch *w)
{
	uint64_t now = clock_monotonic_ms(), last = atomic_load(&w->last_ok);

	return now > last ? now - last : 0;
}
