/* Calls out over Connect: what a call needs of this node's identity
 * (connect/identity.h) and how it checks the answering peer.
 *
 * - The material: the current snapshot's leaf with the certificates after
 *   it, its private key and the roots, as PEM text (libcurl takes them from
 *   memory), made once per snapshot generation and shared, immutable and
 *   reference-counted, by the calls of that generation. A rotated leaf or
 *   new roots make new material; calls that hold the old one finish with
 *   it.
 * - The host name a call puts in its URL for the identity it expects,
 *   Consul's own SNI for a service
 *   ("<service>.default.<dc>.internal.<trust-domain>"): libcurl reuses a
 *   kept-alive connection, or resumes a TLS session, only for the same
 *   host, so a connection verified as one service is never reused for a
 *   call that expects another.
 * - The SSL_CTX setup (http/client.h's ssl_ctx_fn): the handshake checks
 *   the answering chain with connect_verify_store_ctx() for the expected
 *   service and datacenter, on the material's roots, instead of OpenSSL's
 *   chain building and host name check.
 *
 * Only connect/ includes OpenSSL: the SSL_CTX is a void * here. */
#ifndef MESHNODE_CONNECT_OUTBOUND_H
#define MESHNODE_CONNECT_OUTBOUND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connect/identity.h"
#include "connect/spiffe.h"
#include "connect/verify.h"
#include "core/error.h"

/* One generation's material: read-only once made. */
struct connect_material {
	uint64_t generation;	       /* the snapshot's */
	struct connect_snapshot *snap; /* a reference: its roots verify peers */
	char *cert_pem;		       /* the leaf, then the chain after it */
	size_t cert_pem_len;
	char *key_pem; /* the leaf's key (PKCS#8); zeroed when freed */
	size_t key_pem_len;
	char *ca_pem; /* every root */
	size_t ca_pem_len;
	atomic_uint refs; /* private */
};

/* The material of snapshot 's' (borrowed; a reference is taken), a new
 * one with one reference. NULL with the reason in 'err': MN_NOMEM, or
 * MN_INVALID for a snapshot OpenSSL cannot write out. */
struct connect_material *connect_material_new(struct connect_snapshot *s, enum mn_err *e, char *err,
					      size_t errlen);

/* Drops a reference; the last frees the material (the key's text zeroed)
 * and releases its snapshot. NULL does nothing. */
void connect_material_release(struct connect_material *m);

struct connect_outbound;

/* Follows 'id' (borrowed: it must outlive the handle) for calls out. NULL
 * when out of memory. */
struct connect_outbound *connect_outbound_create(struct connect_identity *id);

/* Frees the handle; material handed out stays valid until released. NULL
 * does nothing. */
void connect_outbound_destroy(struct connect_outbound *co);

/* The material of the identity's current snapshot, a new reference
 * (release it): the one made for that generation, or made now when the
 * generation moved. Any thread. NULL, the reason in 'err': MN_UNAVAILABLE
 * before the identity has its first snapshot, MN_NOMEM, MN_INVALID. */
struct connect_material *connect_outbound_material(struct connect_outbound *co, enum mn_err *e,
						   char *err, size_t errlen);

/* The host name for a call expecting 'service' in datacenter 'dc' (NULL or
 * "": any of the trust domain) under 'trust_domain', NUL-terminated, in
 * buf[0..size): "<service>.default.<dc>.internal.<trust-domain>", or
 * without a datacenter "<service>.default.internal.<trust-domain>".
 * MN_INVALID when a part is not what Consul would write (spiffe.h),
 * MN_TOO_LARGE when the name is longer than a host name may be (253) or
 * buf is short. */
enum mn_err connect_outbound_host(char *buf, size_t size, const char *service, const char *dc,
				  const char *trust_domain, char *err, size_t errlen);

/* The peer one call expects, and what its handshakes found. The caller
 * owns it and keeps it alive for the whole request. */
struct connect_outbound_peer {
	const struct connect_material *m; /* borrowed: the roots and trust domain */
	const char *service;		  /* the service expected */
	const char *dc;			  /* its datacenter, or NULL/"": any */
	/* set by the handshake's check: */
	bool checked;			   /* a certificate was checked */
	enum connect_verify_result result; /* the last check's result */
	struct spiffe_id presented;	   /* what the peer presented (kind
					      SPIFFE_NONE when unparsed) */
};

/* http/client.h's ssl_ctx_fn, with a struct connect_outbound_peer as
 * 'arg': sets up a new connection's SSL_CTX so that its handshake checks
 * the peer (certificate verify callback replaced by the Connect check, TLS
 * 1.2 at the least, no renegotiation: the check runs within the request
 * only). 0, or -1 when OpenSSL refuses the setup. */
int connect_outbound_ssl_ctx(void *ssl_ctx, void *arg);

#endif
