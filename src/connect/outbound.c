#include "connect/outbound.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/clock.h"

/* A host name's longest (RFC 1035), and so libcurl's and the SNI's. */
#define HOST_MAX 253

struct connect_outbound {
	struct connect_identity *id;
	pthread_mutex_t lock;		  /* current */
	struct connect_material *current; /* NULL before the first call */
};

/* The PEM text written by 'fn' into a memory BIO, copied into *out
 * (NUL-terminated, *len without it); false when OpenSSL or malloc fails. */
static bool bio_text(BIO *b, char **out, size_t *len)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);

	if (n <= 0 || (*out = malloc((size_t)n + 1)) == NULL)
		return false;
	memcpy(*out, data, (size_t)n);
	(*out)[n] = '\0';
	*len = (size_t)n;
	return true;
}

static bool write_certs(struct x509_st *first, struct stack_st_X509 *rest, char **out, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	bool ok = b != NULL;

	if (ok && first)
		ok = PEM_write_bio_X509(b, first) == 1;
	for (int i = 0; ok && rest && i < sk_X509_num(rest); i++)
		ok = PEM_write_bio_X509(b, sk_X509_value(rest, i)) == 1;
	ok = ok && bio_text(b, out, len);
	BIO_free(b);
	return ok;
}

static bool write_key(struct evp_pkey_st *key, char **out, size_t *len)
{
	BIO *b = BIO_new(BIO_s_secmem());
	bool ok = b != NULL && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1 &&
		  bio_text(b, out, len);

	/* the secure-memory BIO clears its own buffer when freed */
	BIO_free(b);
	return ok;
}

struct connect_material *connect_material_new(struct connect_snapshot *s, enum mn_err *e, char *err,
					      size_t errlen)
{
	struct connect_material *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		*e = mn_error(err, errlen, MN_NOMEM, "out of memory");
		return NULL;
	}
	atomic_init(&m->refs, 1);
	m->generation = s->generation;
	m->snap = connect_snapshot_ref(s);
	if (!write_certs(s->leaf, s->chain, &m->cert_pem, &m->cert_pem_len) ||
	    !write_key(s->key, &m->key_pem, &m->key_pem_len) ||
	    !write_certs(NULL, s->roots, &m->ca_pem, &m->ca_pem_len)) {
		connect_material_release(m);
		*e = mn_error(err, errlen, MN_INVALID,
			      "cannot write the Connect leaf of generation %llu as PEM",
			      (unsigned long long)s->generation);
		return NULL;
	}
	*e = MN_OK;
	return m;
}

void connect_material_release(struct connect_material *m)
{
	if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	if (m->key_pem)
		OPENSSL_cleanse(m->key_pem, m->key_pem_len);
	free(m->key_pem);
	free(m->cert_pem);
	free(m->ca_pem);
	connect_snapshot_release(m->snap);
	free(m);
}

struct connect_outbound *connect_outbound_create(struct connect_identity *id)
{
	struct connect_outbound *co = calloc(1, sizeof(*co));

	if (co == NULL)
		return NULL;
	co->id = id;
	pthread_mutex_init(&co->lock, NULL);
	return co;
}

void connect_outbound_destroy(struct connect_outbound *co)
{
	if (co == NULL)
		return;
	connect_material_release(co->current);
	pthread_mutex_destroy(&co->lock);
	free(co);
}

struct connect_material *connect_outbound_material(struct connect_outbound *co, enum mn_err *e,
						   char *err, size_t errlen)
{
	struct connect_snapshot *s = connect_identity_get(co->id);
	struct connect_material *m = NULL;

	if (s == NULL) {
		*e = mn_error(err, errlen, MN_UNAVAILABLE,
			      "no Connect identity yet: the agent has not given this node its "
			      "leaf certificate and roots");
		return NULL;
	}
	pthread_mutex_lock(&co->lock);
	if (co->current && co->current->generation == s->generation) {
		m = co->current;
		atomic_fetch_add(&m->refs, 1);
		*e = MN_OK;
	} else if ((m = connect_material_new(s, e, err, errlen)) != NULL) {
		/* made under the lock: one writer per generation, and the
		 * calls that wait for it take the same one */
		connect_material_release(co->current);
		co->current = m;
		atomic_fetch_add(&m->refs, 1);
	}
	pthread_mutex_unlock(&co->lock);
	connect_snapshot_release(s);
	return m;
}

enum mn_err connect_outbound_host(char *buf, size_t size, const char *service, const char *dc,
				  const char *trust_domain, char *err, size_t errlen)
{
	bool any_dc = dc == NULL || *dc == '\0';
	const char *why;
	int n;

	/* the parts checked as the SPIFFE ID they stand for */
	if ((why = spiffe_trust_domain_problem(trust_domain, strlen(trust_domain))) != NULL)
		return mn_error(err, errlen, MN_INVALID, "trust domain '%.64s' %s", trust_domain,
				why);
	if (!any_dc && (why = spiffe_dc_problem(dc, strlen(dc))) != NULL)
		return mn_error(err, errlen, MN_INVALID, "datacenter '%.64s' %s", dc, why);
	if ((why = spiffe_service_problem(service, strlen(service))) != NULL)
		return mn_error(err, errlen, MN_INVALID, "service '%.64s' %s", service, why);
	n = snprintf(buf, size, "%s.default.%s%sinternal.%s", service, any_dc ? "" : dc,
		     any_dc ? "" : ".", trust_domain);
	if (n < 0 || (size_t)n >= size || n > HOST_MAX)
		return mn_error(err, errlen, MN_TOO_LARGE,
				"host name for service '%.64s' longer than %d bytes", service,
				HOST_MAX);
	return MN_OK;
}

/* The handshake's check of the answering chain, in place of OpenSSL's. */
static int verify_peer(X509_STORE_CTX *ctx, void *arg)
{
	struct connect_outbound_peer *p = arg;
	struct connect_verify_opts o = {
		.now_ms = clock_wall_ms(),
		.service = p->service,
		.dc = p->dc && *p->dc ? p->dc : NULL,
	};

	p->result = connect_verify_store_ctx(p->m->snap, ctx, &o, &p->presented);
	p->checked = true;
	return p->result == CONNECT_VERIFY_OK;
}

int connect_outbound_ssl_ctx(void *ssl_ctx, void *arg)
{
	SSL_CTX *ctx = ssl_ctx;

	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return -1;
	/* a renegotiation would run the check again after the request that
	 * owns 'arg' returned */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify_peer, arg);
	return 0;
}
