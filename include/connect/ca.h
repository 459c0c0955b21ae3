/* The Connect answers of the local Consul agent, parsed and bounded:
 * GET /v1/agent/connect/ca/roots (the CA roots and the trust domain),
 * GET /v1/agent/connect/ca/leaf/<service> (this service's certificate and
 * private key) and POST /v1/agent/connect/authorize (an intention's
 * decision). Certificates and keys are kept as PEM text, checked only for
 * their armour here; their verification is the TLS layer's. */
#ifndef MESHNODE_CONNECT_CA_H
#define MESHNODE_CONNECT_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connect/spiffe.h"
#include "core/error.h"

#define CONNECT_ANSWER_MAX (1u << 20)	 /* longest answer parsed, in bytes */
#define CONNECT_ROOTS_MAX  16		 /* roots in one answer (a rotation has 2) */
#define CONNECT_PEM_MAX	   (32u * 1024u) /* one PEM text (a chain of a few certs) */
#define CONNECT_FIELD_MAX  256		 /* IDs, names, serial numbers */
#define CONNECT_REASON_MAX 1024		 /* an authorize answer's reason */

struct connect_root {
	char *id;	      /* ID: the certificate's key ID, colon hex */
	char *name;	      /* Name */
	char *cert_pem;	      /* RootCert */
	char *signing_key_id; /* SigningKeyID, or NULL when absent */
	int64_t not_after_ms; /* NotAfter as epoch ms, or 0 when absent */
	bool active;	      /* Active */
};

struct connect_roots {
	char trust_domain[SPIFFE_TRUST_DOMAIN_MAX + 1]; /* TrustDomain */
	char *active_root_id;				/* ActiveRootID */
	struct connect_root *roots;			/* Roots[], in order */
	size_t n;
};

/* Parses a roots answer into *out (owned by it: release with
 * connect_roots_release()). MN_INVALID (reason in 'err', *out empty) for
 * a body that is not such an object, nests deeper than MN_JSON_MAX_DEPTH,
 * misses or mistypes a field, has no root, more than CONNECT_ROOTS_MAX, a
 * root without a certificate PEM, an ActiveRootID naming none of them, or
 * a TrustDomain that is not a lowercase host name; MN_TOO_LARGE past
 * CONNECT_ANSWER_MAX bytes; MN_NOMEM. */
enum mn_err connect_roots_parse(const char *json, size_t len, struct connect_roots *out, char *err,
				size_t errlen);

/* Frees what *r holds and empties it; an empty or released one is fine. */
void connect_roots_release(struct connect_roots *r);

/* The root with ID 'id', or NULL. Borrowed. */
const struct connect_root *connect_roots_find(const struct connect_roots *r, const char *id);

struct connect_leaf {
	char *serial;		 /* SerialNumber, colon-less hex as Consul sends */
	char *cert_pem;		 /* CertPEM */
	char *key_pem;		 /* PrivateKeyPEM: secret, zeroed on release */
	size_t key_len;		 /* strlen(key_pem) */
	char *service;		 /* Service */
	char *service_uri;	 /* ServiceURI */
	struct spiffe_id id;	 /* ServiceURI parsed: a service identity */
	int64_t valid_after_ms;	 /* ValidAfter, epoch ms */
	int64_t valid_before_ms; /* ValidBefore, epoch ms, > valid_after_ms */
	uint64_t modify_index;	 /* ModifyIndex */
};

/* Parses a leaf answer into *out (release with connect_leaf_release()).
 * The private key is copied once into out->key_pem and the parser's own
 * copies are zeroed before they are freed; the caller zeroes 'json'.
 * Nothing of the key is ever written into 'err'. MN_INVALID for a missing
 * or mistyped field, a PEM without its armour, a ServiceURI that is not a
 * service identity or names another service than Service, times that are
 * not RFC 3339 or ValidBefore not after ValidAfter; MN_TOO_LARGE,
 * MN_NOMEM as connect_roots_parse(). */
enum mn_err connect_leaf_parse(const char *json, size_t len, struct connect_leaf *out, char *err,
			       size_t errlen);

/* Zeroes the key (explicit_bzero), frees everything, empties *leaf. */
void connect_leaf_release(struct connect_leaf *leaf);

struct connect_authz {
	bool authorized;		     /* Authorized */
	char reason[CONNECT_REASON_MAX + 1]; /* Reason, "" when absent */
};

/* Parses an authorize answer into *out. MN_INVALID when Authorized is
 * missing or not a boolean, Reason not a string or longer than
 * CONNECT_REASON_MAX; MN_TOO_LARGE, MN_NOMEM as above. */
enum mn_err connect_authz_parse(const char *json, size_t len, struct connect_authz *out, char *err,
				size_t errlen);

/* An RFC 3339 time ("2026-12-08T00:07:20Z", fractions of a second and
 * numeric offsets accepted, as Go writes them) as milliseconds since the
 * epoch in *ms; false when s[0..len) is not one, or before 1970. */
bool connect_time_parse(const char *s, size_t len, int64_t *ms);

#endif
