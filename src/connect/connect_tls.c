#include "connect/connect_tls.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "connect/verify.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"

struct connect_tls {
	struct connect_tls_opts o;
	_Atomic uint64_t counts[CONNECT_TLS_RESULT_COUNT];
	pthread_mutex_t seen_lock;
	uint64_t seen[CONNECT_TLS_SEEN_MAX]; /* hashes of refusals logged, 0: free */
};

/* What a caller's certificate carries from its handshake to its requests:
 * the identity checked and the authorization's generation. */
struct caller {
	uint64_t generation; /* 0: check again at the next request */
	struct spiffe_id id;
	char uri[SPIFFE_URI_MAX + 1];
	char serial[CONNECT_FIELD_MAX + 1];
};

static const char *const result_names[] = {
#define CONNECT_TLS_RESULT_NAME(name, label) label,
	CONNECT_TLS_RESULT_MAP(CONNECT_TLS_RESULT_NAME)
#undef CONNECT_TLS_RESULT_NAME
};

const char *connect_tls_result_name(enum connect_tls_result r)
{
	if ((unsigned)r >= CONNECT_TLS_RESULT_COUNT)
		return "unknown";
	return result_names[r];
}

/* The ex_data slots, one set for the process: the handle on each SSL_CTX
 * configured here, the result so far on each of its SSLs (result + 1, so
 * that NULL means "not one of ours"), the caller on each peer X509. */
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static int ctx_slot = -1, ssl_slot = -1, x509_slot = -1;

static void count(struct connect_tls *t, enum connect_tls_result r)
{
	const char *label[] = {connect_tls_result_name(r)};

	atomic_fetch_add(&t->counts[r], 1);
	if (t->o.handshakes)
		metric_inc(t->o.handshakes, label);
}

/* Every SSL of the process passes here when freed (libcurl's too): only
 * those that began a handshake on a context of ours carry a result. */
static void ssl_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	SSL_CTX *c;
	struct connect_tls *t;

	(void)ad, (void)idx, (void)argl, (void)argp;
	if (ptr == NULL)
		return;
	c = SSL_get_SSL_CTX(parent);
	t = c ? SSL_CTX_get_ex_data(c, ctx_slot) : NULL;
	if (t)
		count(t, (enum connect_tls_result)((uintptr_t)ptr - 1));
}

static void caller_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	free(ptr);
}

static void slots_init(void)
{
	ctx_slot = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ssl_slot = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_freed);
	x509_slot = X509_get_ex_new_index(0, NULL, NULL, NULL, caller_freed);
}

static enum connect_tls_result result_of(const SSL *ssl)
{
	return (enum connect_tls_result)((uintptr_t)SSL_get_ex_data(ssl, ssl_slot) - 1);
}

static void result_set(const SSL *ssl, enum connect_tls_result r)
{
	SSL_set_ex_data((SSL *)ssl, ssl_slot, (void *)(uintptr_t)(r + 1));
}

struct connect_tls *connect_tls_create(const struct connect_tls_opts *opts, char *err,
				       size_t errlen)
{
	struct connect_tls *t;

	if (opts->identity == NULL || opts->authz.check == NULL || opts->authz.generation == NULL) {
		mn_error(err, errlen, MN_INVALID,
			 "connect tls: an identity and an authorizer needed");
		return NULL;
	}
	pthread_once(&slots_once, slots_init);
	if (ctx_slot < 0 || ssl_slot < 0 || x509_slot < 0) {
		mn_error(err, errlen, MN_NOMEM, "connect tls: openssl gave no ex_data index");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	t->o = *opts;
	pthread_mutex_init(&t->seen_lock, NULL);
	return t;
}

void connect_tls_destroy(struct connect_tls *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->seen_lock);
	free(t);
}

uint64_t connect_tls_count(const struct connect_tls *t, enum connect_tls_result r)
{
	if ((unsigned)r >= CONNECT_TLS_RESULT_COUNT)
		return 0;
	return atomic_load(&((struct connect_tls *)t)->counts[r]);
}

/* The remote address of the handshake's socket, for the log line. */
static void peer_address(const SSL *ssl, char *out, size_t len)
{
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	char host[INET6_ADDRSTRLEN] = "?";
	int fd = SSL_get_fd(ssl), port = 0;

	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&sa, &salen) == 0) {
		if (sa.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host,
				  sizeof(host));
			port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
		} else if (sa.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host,
				  sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
		}
	}
	snprintf(out, len, "%s:%d", host, port);
}

/* true the first time (among the last CONNECT_TLS_SEEN_MAX) this caller
 * was refused for this reason: a flood of one bad client logs one line. */
static bool first_refusal(struct connect_tls *t, const struct spiffe_id *peer,
			  enum connect_verify_result r)
{
	uint64_t h = hash_byte(HASH_START, (unsigned char)r);
	size_t slot;
	bool first;

	h = hash_str(hash_byte(h, (unsigned char)peer->kind), peer->trust_domain);
	h = hash_str(hash_byte(h, '/'), peer->ns);
	h = hash_str(hash_byte(h, '/'), peer->dc);
	h = hash_str(hash_byte(h, '/'), peer->service);
	h = hash_mix(h) | 1; /* never 0, a free slot's mark */
	slot = (size_t)(h % CONNECT_TLS_SEEN_MAX);
	pthread_mutex_lock(&t->seen_lock);
	first = t->seen[slot] != h;
	t->seen[slot] = h;
	pthread_mutex_unlock(&t->seen_lock);
	return first;
}

/* For the log line of a certificate refused before its URI was read (a
 * chain of another CA, an expired one): its first URI SAN, parsed into
 * *peer when it is a SPIFFE ID. */
static void presented_identity(X509 *leaf, struct spiffe_id *peer)
{
	GENERAL_NAMES *names;

	if (peer->kind != SPIFFE_NONE || leaf == NULL)
		return;
	names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *n = sk_GENERAL_NAME_value(names, i);

		if (n->type == GEN_URI) {
			const ASN1_IA5STRING *u = n->d.uniformResourceIdentifier;

			if (spiffe_parse((const char *)ASN1_STRING_get0_data(u),
					 (size_t)ASN1_STRING_length(u), peer, NULL, 0) != MN_OK)
				peer->kind = SPIFFE_NONE;
			break;
		}
	}
	GENERAL_NAMES_free(names);
}

static void log_refusal(struct connect_tls *t, const SSL *ssl, const struct spiffe_id *peer,
			enum connect_verify_result r)
{
	char from[INET6_ADDRSTRLEN + 8], uri[SPIFFE_URI_MAX + 1];

	if (!first_refusal(t, peer, r))
		return;
	peer_address(ssl, from, sizeof(from));
	if (peer->kind == SPIFFE_SERVICE && spiffe_id_format(peer, uri, sizeof(uri)))
		log_warn("connect",
			 "caller refused at the handshake: %s: %s from %s (logged once per caller "
			 "and reason)",
			 connect_verify_reason(r), uri, from);
	else
		log_warn("connect",
			 "caller refused at the handshake: %s, from %s (logged once per "
			 "reason for callers without a service identity)",
			 connect_verify_reason(r), from);
}

/* The certificate's serial as Consul writes it: hex bytes with colons. */
static void serial_text(X509 *x, char *out, size_t len)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	const unsigned char *d = ASN1_STRING_get0_data(sn);
	int n = ASN1_STRING_length(sn);
	size_t at = 0;

	out[0] = '\0';
	for (int i = 0; i < n && at + 4 <= len; i++)
		at += (size_t)snprintf(out + at, len - at, "%s%02x", i ? ":" : "", d[i]);
}

static bool caller_check(struct connect_tls *t, struct caller *c)
{
	struct connect_authz_decision d;

	if (!t->o.authz.check(t->o.authz.ctx, &c->id, c->uri, c->serial, &d)) {
		c->generation = 0;
		return false;
	}
	c->generation = d.kept ? d.generation : 0;
	return true;
}

static int64_t wall_ms(const struct connect_tls *t)
{
	return t->o.wall_ms ? t->o.wall_ms(t->o.wall_ctx) : clock_wall_ms();
}

/* OpenSSL's chain building replaced altogether: the caller's chain, times
 * and SPIFFE URI against the snapshot current at this handshake, then the
 * authorizer. The decision is left on the caller's certificate for its
 * requests. */
static int verify_cb(X509_STORE_CTX *x, void *arg)
{
	struct connect_tls *t = arg;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct connect_snapshot *s = connect_identity_get(t->o.identity);
	struct connect_verify_opts vo = {.now_ms = wall_ms(t)};
	struct spiffe_id peer;
	enum connect_verify_result r;
	X509 *leaf = X509_STORE_CTX_get0_cert(x);
	struct caller *c;

	r = connect_verify_store_ctx(s, x, &vo, &peer);
	connect_snapshot_release(s);
	if (r != CONNECT_VERIFY_OK) {
		result_set(ssl, CONNECT_TLS_BAD_CERTIFICATE);
		presented_identity(leaf, &peer);
		log_refusal(t, ssl, &peer, r);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		X509_STORE_CTX_set_error(x, X509_V_ERR_OUT_OF_MEM);
		result_set(ssl, CONNECT_TLS_PROTOCOL);
		return 0;
	}
	c->id = peer;
	if (!spiffe_id_format(&peer, c->uri, sizeof(c->uri))) {
		free(c);
		X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
		result_set(ssl, CONNECT_TLS_BAD_CERTIFICATE);
		return 0;
	}
	serial_text(leaf, c->serial, sizeof(c->serial));
	/* the authorizer logs its decisions, once per source and change */
	if (!caller_check(t, c)) {
		free(c);
		X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
		result_set(ssl, CONNECT_TLS_DENIED);
		return 0;
	}
	/* this X509 is the one the session keeps as its peer's, the one the
	 * server hands each request (SSL_get1_peer_certificate) */
	if (X509_set_ex_data(leaf, x509_slot, c) != 1) {
		free(c);
		X509_STORE_CTX_set_error(x, X509_V_ERR_OUT_OF_MEM);
		result_set(ssl, CONNECT_TLS_PROTOCOL);
		return 0;
	}
	return 1;
}

/* The current snapshot's leaf, key and chain for this handshake: a
 * rotation reaches the next connection without a restart. 0 (the
 * handshake fails) when there is no identity yet. */
static int cert_cb(SSL *ssl, void *arg)
{
	struct connect_tls *t = arg;
	struct connect_snapshot *s = connect_identity_get(t->o.identity);
	int ok;

	if (s == NULL)
		return 0;
	ok = SSL_use_certificate(ssl, s->leaf) == 1 && SSL_use_PrivateKey(ssl, s->key) == 1 &&
	     SSL_set1_chain(ssl, s->chain) == 1;
	connect_snapshot_release(s);
	return ok;
}

/* http/1.1 when offered, else no protocol at all (NOACK), never h2: the
 * listener speaks HTTP/1.1 only, and what a client sends that is not
 * (an HTTP/2 preface) is refused by the HTTP layer. A client that offers
 * no http/1.1 is not refused here: Consul's own connect proxy, a TCP
 * proxy, offers other protocols only ("remote error: tls: no application
 * protocol" otherwise). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl, (void)arg;
	for (unsigned int i = 0; i < inlen;) {
		unsigned int n = in[i];

		if (i + 1 + n > inlen)
			break;
		if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Follows each handshake of our listener for its count: started,
 * finished, or ended by a fatal alert of ours. */
static void info_cb(const SSL *ssl, int where, int ret)
{
	if (where & SSL_CB_HANDSHAKE_START) {
		if (SSL_get_ex_data(ssl, ssl_slot) == NULL)
			result_set(ssl, CONNECT_TLS_INCOMPLETE);
	} else if (where & SSL_CB_HANDSHAKE_DONE) {
		if (result_of(ssl) == CONNECT_TLS_INCOMPLETE)
			result_set(ssl, CONNECT_TLS_OK);
	} else if ((where & SSL_CB_WRITE_ALERT) && (ret >> 8) == SSL3_AL_FATAL &&
		   result_of(ssl) == CONNECT_TLS_INCOMPLETE) {
		unsigned long e = ERR_peek_last_error();
		bool none = (ret & 0xff) == SSL_AD_CERTIFICATE_REQUIRED ||
			    (ERR_GET_LIB(e) == ERR_LIB_SSL &&
			     ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);

		result_set(ssl, none ? CONNECT_TLS_NO_CERTIFICATE : CONNECT_TLS_PROTOCOL);
	}
}

int connect_tls_setup(void *ssl_ctx, void *ctx)
{
	static const unsigned char sid_ctx[] = "meshnode-connect";
	SSL_CTX *c = ssl_ctx;
	struct connect_tls *t = ctx;

	if (SSL_CTX_set_ex_data(c, ctx_slot, t) != 1 ||
	    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1) != 1 ||
	    SSL_CTX_set_num_tickets(c, 0) != 1) {
		log_error("connect", "cannot configure the service port's tls: %s",
			  ERR_reason_error_string(ERR_peek_last_error()));
		return -1;
	}
	/* no resumption: a resumed session skips the certificate checks */
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				       SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	/* a record in one read(), not two (its header, then the rest): a
	 * system call less per request; civetweb's SSL_pending, which would
	 * not see bytes read ahead, is the shim's (src/tls_shim/libssl_shim.c) */
	SSL_CTX_set_read_ahead(c, 1);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_cert_verify_callback(c, verify_cb, t);
	SSL_CTX_set_cert_cb(c, cert_cb, t);
	SSL_CTX_set_alpn_select_cb(c, alpn_cb, t);
	SSL_CTX_set_info_callback(c, info_cb);
	return 0;
}

bool connect_tls_gate(void *ctx, void *peer_cert)
{
	struct connect_tls *t = ctx;
	struct caller *c;

	if (peer_cert == NULL)
		return false;
	c = X509_get_ex_data(peer_cert, x509_slot);
	if (c == NULL)
		return false; /* not checked at a handshake of ours */
	if (c->generation != 0 && c->generation == t->o.authz.generation(t->o.authz.ctx))
		return true;
	return caller_check(t, c);
}
