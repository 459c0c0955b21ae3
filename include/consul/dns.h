/* Consul's DNS interface: the instances of a service from the SRV records
 * of <name>.service.consul (or <tag>.<name>.service.consul), asked of the
 * agent's DNS port. The agent answers with the instances whose checks
 * pass (warning included, as Consul's DNS does by default), one SRV record
 * each, and an A or AAAA record per target in the additional section.
 *
 * An answer is hostile input: parsed by libresolv's bounds-checked
 * ns_initparse()/ns_parserr(), at most DNS_ANSWER_MAX bytes (TCP's cap),
 * and a record that is not what Consul sends is skipped, never trusted.
 * Queries go over TCP: over UDP the agent trims an answer to the buffer
 * the query offers and, unless its dns_config.enable_truncate is set,
 * without saying so (300 instances: 67 came back over UDP with EDNS0's
 * 4096 bytes, 3 without EDNS, no TC bit either way); over TCP all come.
 *
 * A DNS answer carries no service ID and no Consul node for an instance
 * with its own address: an instance is named by its address and port
 * ("10.0.0.5:8080"), its node taken from the target when it is a node name
 * ("<node>.node.<dc>.consul"), "" otherwise.
 *
 * dns_watch asks again every refresh (the records' TTL when above zero,
 * else a fixed interval: Consul's default TTL is 0) on a thread of its own,
 * delivers a changed set of instances, and keeps the last one through
 * failures and broken answers, and through answers saying there is none
 * for a while (dns_view_answer()). */
#ifndef MESHNODE_CONSUL_DNS_H
#define MESHNODE_CONSUL_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consul/health.h"
#include "core/clock.h"
#include "core/error.h"

#define DNS_ANSWER_MAX 65535

/* The query for SRV records of 'name' with id 'id' in buf; its length, or
 * 0 when 'name' is not a valid DNS name or buf is too small. */
size_t consul_dns_query(const char *name, uint16_t id, unsigned char *buf, size_t cap);

/* What an answer said besides its instances. */
struct consul_dns_answer {
	uint32_t ttl;      /* the smallest TTL of the usable SRV records (0: none) */
	bool truncated;    /* the TC bit */
	bool nxdomain;     /* the agent knows no passing instance of the name */
	size_t records;    /* SRV records in the answer section */
	size_t refused;    /* of them unusable: no address, port 0, an address
			      consul_host_unusable() refuses */
	size_t duplicates; /* of them the same address and port as another */
};

/* The instances of an answer 'msg' (len bytes) to query 'id' in *out (new
 * array of *n, sorted by id, each address and port once; free with
 * consul_instances_free()), each with empty tags and meta and passing;
 * what else it said in *a. NXDOMAIN is a valid answer with no instance:
 * consul 1.8.7 answers it for a service never registered, deregistered,
 * or whose instances are all critical or in maintenance alike. MN_INVALID
 * for anything else that is not an answer to the query (another id, not
 * a response, a server failure, a malformed message), with detail in
 * err. */
enum mn_err consul_dns_parse(const unsigned char *msg, size_t len, uint16_t id,
			     struct consul_instance **out, size_t *n,
			     struct consul_dns_answer *a, char *err, size_t errlen);

enum consul_dns_verdict {
	CONSUL_DNS_SOME,   /* at least one usable instance */
	CONSUL_DNS_NONE,   /* Consul says there is none: NXDOMAIN, or no SRV record */
	CONSUL_DNS_BROKEN, /* SRV records, none of them usable: not to be believed */
};

/* The verdict on a parsed answer *a with n usable instances. */
enum consul_dns_verdict consul_dns_verdict(const struct consul_dns_answer *a, size_t n);

/* How many answers in a row saying there is no instance, and how long
 * after the last answer that had one, before a view with instances is
 * emptied. A check that flaps on every instance at once (a shared
 * dependency's blip), or a registration being redone, then costs no
 * order; a service really gone is out of the view within the bound
 * (with a 1 s refresh, about DNS_VIEW_KEEP_MS). */
#define DNS_VIEW_NONE_ANSWERS 3
#define DNS_VIEW_KEEP_MS 10000

/* What the last answers made of one watched name: the decisions of
 * dns_watch, apart so that a test can feed it answers and times. */
struct dns_view {
	bool shown;             /* a set was delivered */
	size_t shown_n;         /* its instances */
	uint64_t signature;     /* of its ids */
	uint64_t confirmed_ms;  /* when an answer last had an instance */
	unsigned none_in_a_row; /* CONSUL_DNS_NONE answers since */
	uint64_t broken;        /* CONSUL_DNS_BROKEN answers in all */
};

enum dns_view_action {
	DNS_VIEW_CHANGE, /* deliver the answer's instances */
	DNS_VIEW_SAME,   /* the set delivered last, again */
	DNS_VIEW_HOLD,   /* none, said too few times or too soon: keep the view */
	DNS_VIEW_KEEP,   /* a broken answer: keep the view, counted */
};

void dns_view_init(struct dns_view *v);

/* Decides what the answer *a with its usable instances 'inst' (n, sorted
 * as consul_dns_parse() leaves them; borrowed) at now_ms (monotonic)
 * does to the view. A broken answer never changes it; a "none" answer
 * empties a view with instances only when it is the
 * DNS_VIEW_NONE_ANSWERS-th in a row and DNS_VIEW_KEEP_MS have passed
 * since the last answer with an instance; a view with none (or the
 * first answer) takes it at once. */
enum dns_view_action dns_view_answer(struct dns_view *v, const struct consul_dns_answer *a,
				     const struct consul_instance *inst, size_t n, uint64_t now_ms);

/* Asks 'server' ("127.0.0.1:8600", an IPv4 or [IPv6] address and a port)
 * over TCP for the SRV records of 'name', within timeout_ms in all.
 * Results as consul_dns_parse(); MN_UNAVAILABLE when the server cannot be
 * reached or did not answer in time. */
enum mn_err consul_dns_lookup(const char *server, const char *name, uint64_t timeout_ms,
			      struct consul_instance **out, size_t *n, struct consul_dns_answer *a,
			      char *err, size_t errlen);

/* true for "host:port" with a numeric IPv4 host or a bracketed IPv6 one. */
bool consul_dns_server_valid(const char *server);

struct dns_watch;

/* Called on the watch thread with the instances of an answer that differs
 * from the last one delivered (and with the first); takes 'inst' (free
 * with consul_instances_free()). 'index' counts the changes, from 1. */
typedef void (*dns_change_fn)(void *ctx, struct consul_instance *inst, size_t n,
			      uint64_t index);

struct dns_watch_opts {
	const char *server;          /* copied */
	const char *name;            /* "users.service.consul" (copied) */
	uint64_t refresh_ms;         /* when the TTL is 0; 0 means 1000 */
	uint64_t timeout_ms;         /* one lookup; 0 means 1000 */
	const char *service;         /* for logs (copied) */
	dns_change_fn on_change;
	void *ctx;
};

/* NULL when out of memory or the thread cannot start. */
struct dns_watch *dns_watch_start(const struct dns_watch_opts *opts);
/* Stops the thread (within the lookup in flight's timeout) and frees. */
void dns_watch_stop(struct dns_watch *w);
/* Milliseconds since the last successful lookup (since the start, before
 * the first). */
uint64_t dns_watch_stale_ms(struct dns_watch *w);

#endif
