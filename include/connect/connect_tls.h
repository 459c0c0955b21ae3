/* The service port's mutual TLS for a Connect native node (docs/connect.md,
 * "The service port"): the SSL_CTX the HTTP server made is configured here
 * (connect_tls_setup(), http_server_opts.tls_setup), and each request is
 * let through or not before it is routed (connect_tls_gate(),
 * http_server_opts.gate).
 *
 * Per handshake: the certificate callback installs the leaf, key and chain
 * of the identity's CURRENT snapshot (a rotation applies to the next
 * connection, with no restart); the certificate-verify callback checks the
 * caller's chain, times and SPIFFE URI against the snapshot current at this
 * handshake (connect/verify.h), then asks the authorizer; a caller refused
 * fails the handshake. TLS 1.2 and up, no session
 * resumption (a resumed session would skip the checks), a session id
 * context set. ALPN: http/1.1 selected when offered, else none (a client
 * offering only h2 gets no protocol, and an HTTP/2 preface it sends is
 * refused by the HTTP layer; Consul's connect proxy offers no http/1.1
 * and must be served).
 *
 * Per request: the decision taken at the handshake travels with the
 * caller's certificate (an ex_data slot of its X509, freed with it); when
 * the authorizer's generation moved since, the caller is checked again,
 * and a refusal closes the connection before the request is routed.
 *
 * Every TLS connection attempt on the listener is counted once, by result,
 * when OpenSSL frees it: see CONNECT_TLS_RESULT_MAP. A refused caller is
 * logged once per (identity, reason) among the last CONNECT_TLS_SEEN_MAX
 * seen (component "connect"); authorization decisions are logged by the
 * authorizer.
 *
 * Only connect/ includes OpenSSL: SSL_CTX and X509 are passed as void *. */
#ifndef MESHNODE_CONNECT_CONNECT_TLS_H
#define MESHNODE_CONNECT_CONNECT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connect/authz.h"
#include "connect/identity.h"
#include "core/error.h"
#include "metrics/metrics.h"

/* Refusals remembered for the once-per-source log line. */
#define CONNECT_TLS_SEEN_MAX 256

/*      name              label            */
#define CONNECT_TLS_RESULT_MAP(X)                                                                  \
	X(OK, "ok")			      /* handshake completed */                            \
	X(DENIED, "denied")		      /* the authorizer refused (or could not decide) */   \
	X(BAD_CERTIFICATE, "bad_certificate") /* chain, time or identity refused */                \
	X(NO_CERTIFICATE, "no_certificate")   /* the client presented none */                      \
	X(PROTOCOL, "protocol")		      /* another fatal alert: version, ALPN, garbage */    \
	X(INCOMPLETE, "incomplete")	      /* closed or stalled before the end, or not TLS */

enum connect_tls_result {
#define CONNECT_TLS_RESULT_ENUM(name, label) CONNECT_TLS_##name,
	CONNECT_TLS_RESULT_MAP(CONNECT_TLS_RESULT_ENUM)
#undef CONNECT_TLS_RESULT_ENUM
		CONNECT_TLS_RESULT_COUNT
};

/* The result's metric label ("ok", "denied", ...); "unknown" out of range. */
const char *connect_tls_result_name(enum connect_tls_result r);

/* Who decides on a verified caller: connect_authz_check() and
 * connect_authz_generation() in the node (connect/authz.h); the unit tests
 * give their own. */
struct connect_tls_authz {
	bool (*check)(void *ctx, const struct spiffe_id *caller, const char *caller_uri,
		      const char *serial, struct connect_authz_decision *out);
	uint64_t (*generation)(void *ctx);
	void *ctx;
};

struct connect_tls_opts {
	struct connect_identity *identity; /* borrowed, must outlive the handle */
	struct connect_tls_authz authz;
	struct metric_family *handshakes; /* meshnode_connect_handshakes_total{result},
					     borrowed (connect_metrics.h); NULL: none */
	int64_t (*wall_ms)(void *ctx);	  /* epoch ms for the validity check; NULL:
					     clock_wall_ms() */
	void *wall_ctx;
};

struct connect_tls;

/* A new handle (NULL, with the reason in 'err', when out of memory or
 * when OpenSSL gives no ex_data index). It must outlive every server
 * configured with it: OpenSSL calls into it until the last connection is
 * freed. NULL opts->identity or authz.check is MN_INVALID. */
struct connect_tls *connect_tls_create(const struct connect_tls_opts *opts, char *err,
				       size_t errlen);

/* Frees the handle. NULL does nothing. */
void connect_tls_destroy(struct connect_tls *t);

/* http_server_opts.tls_setup, ctx = the handle: configures 'ssl_ctx' (an
 * SSL_CTX *) as described above. 0, or -1 when OpenSSL refused a setting
 * (logged). */
int connect_tls_setup(void *ssl_ctx, void *ctx);

/* http_server_opts.gate, ctx = the handle: whether the request on the
 * connection whose client certificate is 'peer_cert' (an X509 *, borrowed;
 * NULL when none) may be routed. false for no certificate, one this
 * handle's handshake did not check, or a caller the authorizer refuses on
 * a check made again because its generation moved. Called by the
 * connection's worker only. */
bool connect_tls_gate(void *ctx, void *peer_cert);

/* Connection attempts counted with 'r' since the handle was made. */
uint64_t connect_tls_count(const struct connect_tls *t, enum connect_tls_result r);

#endif
