#include "connect/verify.h"

#include <string.h>
#include <strings.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "connect/identity.h"

static const char *const reasons[] = {
#define CONNECT_VERIFY_REASON(name, reason) reason,
	CONNECT_VERIFY_MAP(CONNECT_VERIFY_REASON)
#undef CONNECT_VERIFY_REASON
};

const char *connect_verify_reason(enum connect_verify_result r)
{
	if ((unsigned)r >= CONNECT_VERIFY_COUNT)
		return "unknown";
	return reasons[r];
}

static enum connect_verify_result chain_result(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED: return CONNECT_VERIFY_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID: return CONNECT_VERIFY_NOT_YET_VALID;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return CONNECT_VERIFY_OTHER_CA;
	case X509_V_ERR_OUT_OF_MEM: return CONNECT_VERIFY_NOMEM;
	default: return CONNECT_VERIFY_BAD_CHAIN;
	}
}

/* Certificates a presented chain may carry besides the leaf, and the
 * intermediates a chain may have between the leaf and a root. */
#define VERIFY_CHAIN_MAX 4

static enum connect_verify_result check_chain(struct x509_store_st *roots, X509 *leaf,
					      STACK_OF(X509) * untrusted,
					      const struct connect_verify_opts *o)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	enum connect_verify_result r;
	X509_VERIFY_PARAM *param;

	if (ctx == NULL)
		return CONNECT_VERIFY_NOMEM;
	/* a caller's chain is outside input: Consul's have at most a
	 * cross-signed root and an intermediate between leaf and root */
	if (untrusted && sk_X509_num(untrusted) > VERIFY_CHAIN_MAX) {
		r = CONNECT_VERIFY_BAD_CHAIN;
		goto out_free_ctx;
	}
	if (X509_STORE_CTX_init(ctx, roots, leaf, untrusted) != 1) {
		r = CONNECT_VERIFY_NOMEM;
		goto out_free_ctx;
	}
	/* the context's own parameters: the store is shared between threads
	 * and must not be written */
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_depth(param, VERIFY_CHAIN_MAX);
	if (o->ignore_time)
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME);
	else
		X509_VERIFY_PARAM_set_time(param, (time_t)(o->now_ms / 1000));
	if (X509_verify_cert(ctx) == 1)
		r = CONNECT_VERIFY_OK;
	else
		r = chain_result(X509_STORE_CTX_get_error(ctx));
out_free_ctx:
	X509_STORE_CTX_free(ctx);
	return r;
}

/* The leaf's one URI SAN parsed into *peer. */
static enum connect_verify_result check_san(X509 *leaf, struct spiffe_id *peer)
{
	const ASN1_IA5STRING *uri = NULL;
	enum connect_verify_result r;
	GENERAL_NAMES *names;
	int crit = -1, n_uri = 0;

	names = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	if (names == NULL)
		/* -1: no such extension; -2: more than one; else undecodable */
		return crit == -1 ? CONNECT_VERIFY_NO_URI_SAN : CONNECT_VERIFY_BAD_SAN;
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

		if (g->type == GEN_URI) {
			n_uri++;
			uri = g->d.uniformResourceIdentifier;
		}
	}
	if (n_uri == 0)
		r = CONNECT_VERIFY_NO_URI_SAN;
	else if (n_uri > 1)
		r = CONNECT_VERIFY_MANY_URI_SANS;
	else if (uri->length <= 0 ||
		 spiffe_parse((const char *)uri->data, (size_t)uri->length, peer, NULL, 0) != MN_OK)
		r = CONNECT_VERIFY_NOT_SERVICE;
	else
		r = CONNECT_VERIFY_OK;
	GENERAL_NAMES_free(names);
	return r;
}

enum connect_verify_result connect_verify(const char *trust_domain, struct x509_store_st *roots,
					  struct x509_st *leaf, struct stack_st_X509 *untrusted,
					  const struct connect_verify_opts *o,
					  struct spiffe_id *peer)
{
	struct spiffe_id own;
	enum connect_verify_result r;

	if (peer == NULL)
		peer = &own;
	memset(peer, 0, sizeof(*peer));
	if (leaf == NULL)
		return CONNECT_VERIFY_NO_CERT;
	if (roots == NULL || trust_domain == NULL)
		return CONNECT_VERIFY_OTHER_CA;
	r = check_chain(roots, leaf, untrusted, o);
	if (r != CONNECT_VERIFY_OK)
		return r;
	r = check_san(leaf, peer);
	if (r != CONNECT_VERIFY_OK)
		return r;
	/* a root of this trust domain could have signed a name of another:
	 * the URI, not the signature, says whose identity it is */
	if (strcasecmp(peer->trust_domain, trust_domain) != 0)
		return CONNECT_VERIFY_OTHER_TRUST_DOMAIN;
	if (o->service != NULL && !spiffe_service_matches(peer, trust_domain, o->service))
		return CONNECT_VERIFY_WRONG_SERVICE;
	if (o->dc != NULL && strcmp(peer->dc, o->dc) != 0)
		return CONNECT_VERIFY_WRONG_DC;
	return CONNECT_VERIFY_OK;
}

enum connect_verify_result connect_verify_snapshot(const struct connect_snapshot *s,
						   struct x509_st *leaf,
						   struct stack_st_X509 *untrusted,
						   const struct connect_verify_opts *o,
						   struct spiffe_id *peer)
{
	if (s == NULL) {
		if (peer != NULL)
			memset(peer, 0, sizeof(*peer));
		return leaf == NULL ? CONNECT_VERIFY_NO_CERT : CONNECT_VERIFY_OTHER_CA;
	}
	return connect_verify(s->trust_domain, s->store, leaf, untrusted, o, peer);
}

static int x509_error(enum connect_verify_result r)
{
	switch (r) {
	case CONNECT_VERIFY_OK: return X509_V_OK;
	case CONNECT_VERIFY_NO_CERT:
	case CONNECT_VERIFY_OTHER_CA: return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
	case CONNECT_VERIFY_EXPIRED: return X509_V_ERR_CERT_HAS_EXPIRED;
	case CONNECT_VERIFY_NOT_YET_VALID: return X509_V_ERR_CERT_NOT_YET_VALID;
	case CONNECT_VERIFY_NOMEM: return X509_V_ERR_OUT_OF_MEM;
	case CONNECT_VERIFY_BAD_CHAIN: return X509_V_ERR_CERT_SIGNATURE_FAILURE;
	default: return X509_V_ERR_CERT_REJECTED;
	}
}

enum connect_verify_result connect_verify_store_ctx(const struct connect_snapshot *s,
						    struct x509_store_ctx_st *ctx,
						    const struct connect_verify_opts *o,
						    struct spiffe_id *peer)
{
	enum connect_verify_result r;

	r = connect_verify_snapshot(s, X509_STORE_CTX_get0_cert(ctx),
				    X509_STORE_CTX_get0_untrusted(ctx), o, peer);
	X509_STORE_CTX_set_error(ctx, x509_error(r));
	return r;
}
