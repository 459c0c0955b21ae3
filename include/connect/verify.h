/* The identity check of a Connect peer's certificate, in place of
 * hostname verification (a Connect leaf's only SAN is its SPIFFE URI):
 * the presented chain (a leaf and the untrusted intermediates after it)
 * must chain to one of the current roots, active or not (both are valid
 * during a CA rotation), be within its validity at a given time, and the
 * leaf must carry exactly one URI SAN, a service identity of the trust
 * domain; of the expected service (and datacenter) when one is given.
 *
 * Pure: no clock, no lock, no log. OpenSSL's types appear here by their
 * struct tags only, so a module that includes this header without
 * calling it need not include OpenSSL's. */
#ifndef MESHNODE_CONNECT_VERIFY_H
#define MESHNODE_CONNECT_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "connect/spiffe.h"

struct x509_st;		  /* X509 */
struct x509_store_st;	  /* X509_STORE */
struct x509_store_ctx_st; /* X509_STORE_CTX */
struct stack_st_X509;	  /* STACK_OF(X509) */
struct connect_snapshot;  /* connect/identity.h */

/*      name                reason */
#define CONNECT_VERIFY_MAP(X)                                                                      \
	X(OK, "ok")                                                                                \
	X(NO_CERT, "no certificate presented")                                                     \
	X(OTHER_CA, "not signed by a root of the trust domain")                                    \
	X(EXPIRED, "certificate expired")                                                          \
	X(NOT_YET_VALID, "certificate not yet valid")                                              \
	X(BAD_CHAIN, "bad certificate chain")                                                      \
	X(BAD_SAN, "malformed subject alternative names")                                          \
	X(NO_URI_SAN, "no URI SAN (DNS or IP names only, or none)")                                \
	X(MANY_URI_SANS, "more than one URI SAN")                                                  \
	X(NOT_SERVICE, "URI SAN is not a SPIFFE service identity")                                 \
	X(OTHER_TRUST_DOMAIN, "identity of another trust domain")                                  \
	X(WRONG_SERVICE, "identity of another service")                                            \
	X(WRONG_DC, "identity of another datacenter")                                              \
	X(NOMEM, "out of memory")

enum connect_verify_result {
#define CONNECT_VERIFY_ENUM(name, reason) CONNECT_VERIFY_##name,
	CONNECT_VERIFY_MAP(CONNECT_VERIFY_ENUM)
#undef CONNECT_VERIFY_ENUM
		CONNECT_VERIFY_COUNT
};

/* The reason of 'r' ("certificate expired"), a static string; never NULL. */
const char *connect_verify_reason(enum connect_verify_result r);

struct connect_verify_opts {
	int64_t now_ms;	     /* the time of the check, epoch ms (wall clock) */
	bool ignore_time;    /* validity not checked (own leaf: its expiry is
				reported, not refused) */
	const char *service; /* the service expected (calls out), or NULL: any
				service of the trust domain (callers in) */
	const char *dc;	     /* the datacenter expected, or NULL: any */
};

/* Checks 'leaf' with the untrusted intermediates 'untrusted' (may be NULL)
 * against the roots in 'roots' of 'trust_domain' (all borrowed; 'roots'
 * is only read, so threads may share it). On CONNECT_VERIFY_OK the leaf's
 * identity is in *peer (may be NULL); on any other result *peer holds what
 * could be parsed (its kind SPIFFE_NONE when nothing). */
enum connect_verify_result connect_verify(const char *trust_domain, struct x509_store_st *roots,
					  struct x509_st *leaf, struct stack_st_X509 *untrusted,
					  const struct connect_verify_opts *o,
					  struct spiffe_id *peer);

/* connect_verify() against a snapshot's trust domain and roots. A NULL
 * snapshot (no identity yet) is CONNECT_VERIFY_OTHER_CA. */
enum connect_verify_result connect_verify_snapshot(const struct connect_snapshot *s,
						   struct x509_st *leaf,
						   struct stack_st_X509 *untrusted,
						   const struct connect_verify_opts *o,
						   struct spiffe_id *peer);

/* For the TLS layer's certificate-verify callback, which replaces
 * OpenSSL's chain building altogether (SSL_CTX_set_cert_verify_callback):
 *
 *     static int tls_verify_cb(X509_STORE_CTX *ctx, void *arg)
 *     {
 *             struct connect_snapshot *s = connect_identity_get(arg's identity);
 *             enum connect_verify_result r = connect_verify_store_ctx(
 *                     s, ctx, &(struct connect_verify_opts){.now_ms = clock_wall_ms(),
 *                     .service = expected}, &peer);
 *             connect_snapshot_release(s);
 *             return r == CONNECT_VERIFY_OK;
 *     }
 *
 * Checks the certificate and untrusted chain the handshake put in 'ctx'
 * (X509_STORE_CTX_get0_cert(), _get0_untrusted()) with
 * connect_verify_snapshot(); on failure sets the context's error
 * (X509_V_ERR_CERT_HAS_EXPIRED, ..._NOT_YET_VALID,
 * ..._UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_CERT_REJECTED for an
 * identity refused, X509_V_ERR_OUT_OF_MEM) so the handshake's alert says
 * why. The snapshot in use is the one read at the handshake: a rotation
 * applies to the next connection. */
enum connect_verify_result connect_verify_store_ctx(const struct connect_snapshot *s,
						    struct x509_store_ctx_st *ctx,
						    const struct connect_verify_opts *o,
						    struct spiffe_id *peer);

#endif
