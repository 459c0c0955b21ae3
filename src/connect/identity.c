#include "connect/identity.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "connect/ca.h"
#include "connect/verify.h"
#include "consul/watch.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"

#define COMPONENT "connect"
/* certificates after the leaf in its CertPEM (a cross-signed root or two) */
#define LEAF_CHAIN_MAX 8
/* the renewal thread looks again at least this often (a wall-clock jump) */
#define RENEWAL_RECHECK_MS 60000

/* One accepted roots answer, as OpenSSL objects. */
struct roots_part {
	struct connect_roots parsed;
	STACK_OF(X509) * certs;
	X509_STORE *store;
	uint64_t index;
};

/* One accepted leaf answer: its key matches its certificate and it is
 * this service's; whether it chains is the pairing's question. */
struct leaf_part {
	char *serial;
	char *cert_pem;
	struct spiffe_id id;
	X509 *leaf;
	STACK_OF(X509) * chain;
	EVP_PKEY *key;
	uint64_t index;
};

struct connect_identity {
	char service[SPIFFE_SERVICE_MAX + 1];
	connect_identity_change_fn on_change;
	void *ctx;
	int64_t (*wall_ms)(void *ctx);
	void *wall_ctx;

	/* the answers: the latest taken (cand) and those of the published
	 * snapshot (pub); a pointer may be both. Callbacks run under it. */
	pthread_mutex_t feed_lock;
	struct roots_part *roots_cand, *roots_pub;
	struct leaf_part *leaf_cand, *leaf_pub;
	uint64_t generation;

	/* the published snapshot, and the serial of the leaf warned about */
	pthread_mutex_t snap_lock;
	pthread_cond_t ready;
	struct connect_snapshot *snap;
	char warned_serial[CONNECT_FIELD_MAX + 1];

	struct watch *roots_watch, *leaf_watch;
	struct worker renewal;
	bool renewal_started;
};

/* ---- snapshots ------------------------------------------------------- */

struct connect_snapshot *connect_snapshot_ref(struct connect_snapshot *s)
{
	if (s != NULL)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

static void snapshot_free(struct connect_snapshot *s)
{
	for (size_t i = 0; s->root_ids != NULL && i < s->n_roots; i++)
		free(s->root_ids[i]);
	free(s->root_ids);
	free(s->active_root_id);
	free(s->leaf_serial);
	X509_STORE_free(s->store);
	sk_X509_pop_free(s->roots, X509_free);
	X509_free(s->leaf);
	sk_X509_pop_free(s->chain, X509_free);
	EVP_PKEY_free(s->key);
	free(s);
}

void connect_snapshot_release(struct connect_snapshot *s)
{
	if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
		snapshot_free(s);
}

/* When the leaf's renewal is overdue: CONNECT_RENEW_OVERDUE_PERMILLE of
 * its validity. */
static int64_t renewal_due_ms(const struct connect_snapshot *s)
{
	int64_t life = s->leaf_valid_before_ms - s->leaf_valid_after_ms;

	return s->leaf_valid_after_ms + life / 1000 * CONNECT_RENEW_OVERDUE_PERMILLE;
}

bool connect_snapshot_renewal_overdue(const struct connect_snapshot *s, int64_t now_ms)
{
	return now_ms >= renewal_due_ms(s);
}

double connect_snapshot_expires_in(const struct connect_snapshot *s, int64_t now_ms)
{
	return (double)(s->leaf_valid_before_ms - now_ms) / 1000.0;
}

static void rfc3339(char *buf, size_t size, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "%s", "?");
}

json_t *connect_snapshot_view(const struct connect_snapshot *s, int64_t now_ms)
{
	char after[32], before[32];
	json_t *v, *ids;

	if (s == NULL)
		return json_pack("{s:b}", "ready", 0);
	ids = json_array();
	if (ids == NULL)
		return NULL;
	for (size_t i = 0; i < s->n_roots; i++) {
		if (json_array_append_new(ids, json_string(s->root_ids[i])) != 0) {
			json_decref(ids);
			return NULL;
		}
	}
	rfc3339(after, sizeof(after), s->leaf_valid_after_ms);
	rfc3339(before, sizeof(before), s->leaf_valid_before_ms);
	v = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:o, s:s, s:I}", "ready", 1,
		      "trust_domain", s->trust_domain, "service", s->leaf_id.service, "leaf_serial",
		      s->leaf_serial, "leaf_valid_after", after, "leaf_expires", before,
		      "leaf_expires_in_seconds",
		      (json_int_t)((s->leaf_valid_before_ms - now_ms) / 1000), "renewal_overdue",
		      connect_snapshot_renewal_overdue(s, now_ms), "root_ids", ids,
		      "active_root_id", s->active_root_id, "generation", (json_int_t)s->generation);
	return v; /* "o" stole ids, even on failure */
}

/* ---- parts ------------------------------------------------------------ */

static void roots_part_free(struct roots_part *r)
{
	if (r == NULL)
		return;
	connect_roots_release(&r->parsed);
	sk_X509_pop_free(r->certs, X509_free);
	X509_STORE_free(r->store);
	free(r);
}

static void leaf_part_free(struct leaf_part *l)
{
	if (l == NULL)
		return;
	free(l->serial);
	free(l->cert_pem);
	X509_free(l->leaf);
	sk_X509_pop_free(l->chain, X509_free);
	EVP_PKEY_free(l->key);
	free(l);
}

/* The first certificate of pem[0..len), or NULL. */
static X509 *pem_cert(const char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x;

	if (bio == NULL)
		return NULL;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return x;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1; /* an encrypted key is refused, never prompted for */
}

static enum mn_err roots_convert(struct roots_part *r, char *err, size_t errlen)
{
	r->certs = sk_X509_new_null();
	r->store = X509_STORE_new();
	if (r->certs == NULL || r->store == NULL)
		goto out_nomem;
	for (size_t i = 0; i < r->parsed.n; i++) {
		const struct connect_root *root = &r->parsed.roots[i];
		X509 *x = pem_cert(root->cert_pem, strlen(root->cert_pem));

		if (x == NULL) {
			snprintf(err, errlen, "root '%s': RootCert is not a certificate", root->id);
			ERR_clear_error();
			return MN_INVALID;
		}
		if (sk_X509_push(r->certs, x) == 0) {
			X509_free(x);
			goto out_nomem;
		}
		if (X509_check_ca(x) < 1) {
			snprintf(err, errlen, "root '%s': not a CA certificate", root->id);
			return MN_INVALID;
		}
		if (X509_STORE_add_cert(r->store, x) != 1)
			goto out_nomem;
	}
	return MN_OK;

out_nomem:
	snprintf(err, errlen, "out of memory converting the roots");
	ERR_clear_error();
	return MN_NOMEM;
}

static enum mn_err leaf_convert(struct leaf_part *l, const struct connect_leaf *parsed, char *err,
				size_t errlen)
{
	enum mn_err e = MN_INVALID;
	BIO *bio;
	X509 *x;

	l->chain = sk_X509_new_null();
	bio = BIO_new_mem_buf(parsed->cert_pem, (int)strlen(parsed->cert_pem));
	if (l->chain == NULL || bio == NULL)
		goto out_nomem;
	l->leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (l->leaf == NULL) {
		snprintf(err, errlen, "CertPEM is not a certificate");
		goto out_free_bio;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (sk_X509_num(l->chain) >= LEAF_CHAIN_MAX) {
			X509_free(x);
			snprintf(err, errlen, "CertPEM holds more than %d certificates",
				 LEAF_CHAIN_MAX + 1);
			goto out_free_bio;
		}
		if (sk_X509_push(l->chain, x) == 0) {
			X509_free(x);
			goto out_nomem;
		}
	}
	BIO_free(bio);
	bio = BIO_new_mem_buf(parsed->key_pem, (int)parsed->key_len);
	if (bio == NULL)
		goto out_nomem;
	l->key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
	if (l->key == NULL) {
		snprintf(err, errlen, "PrivateKeyPEM is not a private key");
		goto out_free_bio;
	}
	if (X509_check_private_key(l->leaf, l->key) != 1) {
		snprintf(err, errlen, "the private key does not match the certificate");
		goto out_free_bio;
	}
	e = MN_OK;
out_free_bio:
	BIO_free(bio);
	ERR_clear_error();
	return e;

out_nomem:
	BIO_free(bio);
	ERR_clear_error();
	snprintf(err, errlen, "out of memory converting the leaf");
	return MN_NOMEM;
}

static bool roots_same(const struct roots_part *a, const struct roots_part *b)
{
	if (a->parsed.n != b->parsed.n ||
	    strcmp(a->parsed.trust_domain, b->parsed.trust_domain) != 0 ||
	    strcmp(a->parsed.active_root_id, b->parsed.active_root_id) != 0)
		return false;
	for (size_t i = 0; i < a->parsed.n; i++) {
		if (strcmp(a->parsed.roots[i].id, b->parsed.roots[i].id) != 0 ||
		    strcmp(a->parsed.roots[i].cert_pem, b->parsed.roots[i].cert_pem) != 0)
			return false;
	}
	return true;
}

static bool leaf_same(const struct leaf_part *a, const struct leaf_part *b)
{
	return strcmp(a->serial, b->serial) == 0 && strcmp(a->cert_pem, b->cert_pem) == 0;
}

static bool asn1_ms(const ASN1_TIME *t, int64_t *ms)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return false;
	*ms = (int64_t)timegm(&tm) * 1000;
	return true;
}

static struct connect_snapshot *snapshot_make(const struct roots_part *r, const struct leaf_part *l,
					      uint64_t generation)
{
	struct connect_snapshot *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	atomic_init(&s->refs, 1);
	s->generation = generation;
	snprintf(s->trust_domain, sizeof(s->trust_domain), "%s", r->parsed.trust_domain);
	s->roots_index = r->index;
	s->leaf_index = l->index;
	s->leaf_id = l->id;
	s->root_ids = calloc(r->parsed.n, sizeof(*s->root_ids));
	if (s->root_ids == NULL)
		goto out_free;
	for (size_t i = 0; i < r->parsed.n; i++, s->n_roots++) {
		s->root_ids[i] = strdup(r->parsed.roots[i].id);
		if (s->root_ids[i] == NULL)
			goto out_free;
	}
	s->active_root_id = strdup(r->parsed.active_root_id);
	s->leaf_serial = strdup(l->serial);
	if (s->active_root_id == NULL || s->leaf_serial == NULL)
		goto out_free;
	if (!asn1_ms(X509_get0_notBefore(l->leaf), &s->leaf_valid_after_ms) ||
	    !asn1_ms(X509_get0_notAfter(l->leaf), &s->leaf_valid_before_ms))
		goto out_free;
	s->roots = X509_chain_up_ref(r->certs);
	s->chain = X509_chain_up_ref(l->chain);
	if (s->roots == NULL || s->chain == NULL)
		goto out_free;
	if (X509_STORE_up_ref(r->store) != 1)
		goto out_free;
	s->store = r->store;
	if (X509_up_ref(l->leaf) != 1)
		goto out_free;
	s->leaf = l->leaf;
	if (EVP_PKEY_up_ref(l->key) != 1)
		goto out_free;
	s->key = l->key;
	return s;

out_free:
	ERR_clear_error();
	snapshot_free(s);
	return NULL;
}

/* ---- pairing and publishing (feed_lock held) -------------------------- */

static void set_roots_cand(struct connect_identity *id, struct roots_part *r)
{
	struct roots_part *old = id->roots_cand;

	id->roots_cand = r;
	if (old != NULL && old != r && old != id->roots_pub)
		roots_part_free(old);
}

static void set_leaf_cand(struct connect_identity *id, struct leaf_part *l)
{
	struct leaf_part *old = id->leaf_cand;

	id->leaf_cand = l;
	if (old != NULL && old != l && old != id->leaf_pub)
		leaf_part_free(old);
}

static enum mn_err publish(struct connect_identity *id, struct roots_part *r, struct leaf_part *l,
			   char *err, size_t errlen)
{
	struct connect_snapshot *s = snapshot_make(r, l, id->generation + 1), *old;
	struct roots_part *old_r = id->roots_pub;
	struct leaf_part *old_l = id->leaf_pub;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory building the snapshot");
		return MN_NOMEM;
	}
	id->generation++;
	id->roots_pub = r;
	id->leaf_pub = l;
	if (old_r != NULL && old_r != r && old_r != id->roots_cand)
		roots_part_free(old_r);
	if (old_l != NULL && old_l != l && old_l != id->leaf_cand)
		leaf_part_free(old_l);

	pthread_mutex_lock(&id->snap_lock);
	old = id->snap;
	id->snap = s;
	pthread_cond_broadcast(&id->ready);
	pthread_mutex_unlock(&id->snap_lock);
	connect_snapshot_release(old);

	log_info(COMPONENT,
		 "identity %" PRIu64 ": leaf '%s' serial %s, %zu root(s), active '%s', trust "
		 "domain '%s'",
		 s->generation, s->leaf_id.service, s->leaf_serial, s->n_roots, s->active_root_id,
		 s->trust_domain);
	if (id->renewal_started)
		worker_wake(&id->renewal);
	if (id->on_change != NULL)
		id->on_change(id->ctx, s);
	return MN_OK;
}

/* Whether leaf 'l' may be published with roots 'r': it chains to them
 * and is this service's identity in their trust domain. */
static bool pair_ok(struct connect_identity *id, const struct roots_part *r,
		    const struct leaf_part *l, char *err, size_t errlen)
{
	enum connect_verify_result v;

	v = connect_verify(
		r->parsed.trust_domain, r->store, l->leaf, l->chain,
		&(struct connect_verify_opts){.ignore_time = true, .service = id->service}, NULL);
	if (v == CONNECT_VERIFY_OK)
		return true;
	snprintf(err, errlen, "leaf serial %s against roots at index %" PRIu64 ": %s", l->serial,
		 r->index, connect_verify_reason(v));
	return false;
}

/* Publishes the first pair that fits among the latest answers and the
 * published ones: (new roots, new leaf), (new roots, published leaf),
 * (published roots, new leaf). */
static enum mn_err attempt(struct connect_identity *id, bool *changed, char *err, size_t errlen)
{
	struct roots_part *rs[3] = {id->roots_cand, id->roots_cand, id->roots_pub};
	struct leaf_part *ls[3] = {id->leaf_cand, id->leaf_pub, id->leaf_cand};
	bool tried = false;

	for (int i = 0; i < 3; i++) {
		char why[256];

		if (rs[i] == NULL || ls[i] == NULL ||
		    (rs[i] == id->roots_pub && ls[i] == id->leaf_pub))
			continue;
		if (pair_ok(id, rs[i], ls[i], why, sizeof(why))) {
			enum mn_err e = publish(id, rs[i], ls[i], err, errlen);

			*changed = e == MN_OK;
			return e;
		}
		if (!tried)
			snprintf(err, errlen, "%s", why);
		tried = true;
	}
	return tried ? MN_INVALID : MN_OK;
}

/* ---- feeding ---------------------------------------------------------- */

enum mn_err connect_identity_feed_roots(struct connect_identity *id, const char *body, size_t len,
					uint64_t index, bool *changed, char *err, size_t errlen)
{
	char detail[512] = "";
	struct roots_part *r;
	bool dummy;
	enum mn_err e;

	if (changed == NULL)
		changed = &dummy;
	*changed = false;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(detail, sizeof(detail), "out of memory");
		e = MN_NOMEM;
		goto out_log;
	}
	r->index = index;
	e = connect_roots_parse(body, len, &r->parsed, detail, sizeof(detail));
	if (e == MN_OK)
		e = roots_convert(r, detail, sizeof(detail));
	if (e != MN_OK) {
		roots_part_free(r);
		goto out_log;
	}
	pthread_mutex_lock(&id->feed_lock);
	if (id->roots_pub != NULL && roots_same(r, id->roots_pub)) {
		/* an index or a field of no account moved: not a change */
		roots_part_free(r);
		set_roots_cand(id, id->roots_pub);
		pthread_mutex_unlock(&id->feed_lock);
		return MN_OK;
	}
	set_roots_cand(id, r);
	e = attempt(id, changed, detail, sizeof(detail));
	pthread_mutex_unlock(&id->feed_lock);
	if (e == MN_OK)
		return MN_OK;
out_log:
	log_warn(COMPONENT, "roots at index %" PRIu64 " not taken: %s", index, detail);
	snprintf(err, errlen, "%s", detail);
	return e;
}

enum mn_err connect_identity_feed_leaf(struct connect_identity *id, const char *body, size_t len,
				       uint64_t index, bool *changed, char *err, size_t errlen)
{
	struct connect_leaf parsed;
	char detail[512] = "";
	struct leaf_part *l;
	bool dummy;
	enum mn_err e;

	if (changed == NULL)
		changed = &dummy;
	*changed = false;
	e = connect_leaf_parse(body, len, &parsed, detail, sizeof(detail));
	if (e != MN_OK)
		goto out_log;
	if (strcmp(parsed.service, id->service) != 0) {
		snprintf(detail, sizeof(detail), "a leaf of service '%s', not '%s'", parsed.service,
			 id->service);
		e = MN_INVALID;
		goto out_release;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		e = MN_NOMEM;
		snprintf(detail, sizeof(detail), "out of memory");
		goto out_release;
	}
	l->index = index;
	l->id = parsed.id;
	l->serial = strdup(parsed.serial);
	l->cert_pem = strdup(parsed.cert_pem);
	if (l->serial == NULL || l->cert_pem == NULL) {
		e = MN_NOMEM;
		snprintf(detail, sizeof(detail), "out of memory");
	} else {
		e = leaf_convert(l, &parsed, detail, sizeof(detail));
	}
	connect_leaf_release(&parsed);
	if (e != MN_OK) {
		leaf_part_free(l);
		goto out_log;
	}
	pthread_mutex_lock(&id->feed_lock);
	if (id->leaf_pub != NULL && leaf_same(l, id->leaf_pub)) {
		leaf_part_free(l);
		set_leaf_cand(id, id->leaf_pub);
		pthread_mutex_unlock(&id->feed_lock);
		return MN_OK;
	}
	set_leaf_cand(id, l);
	e = attempt(id, changed, detail, sizeof(detail));
	pthread_mutex_unlock(&id->feed_lock);
	if (e == MN_OK)
		return MN_OK;
	goto out_log;

out_release:
	connect_leaf_release(&parsed);
out_log:
	log_warn(COMPONENT, "leaf of '%s' at index %" PRIu64 " not taken: %s", id->service, index,
		 detail);
	snprintf(err, errlen, "%s", detail);
	return e;
}

/* ---- the identity ----------------------------------------------------- */

static int64_t wall_now(struct connect_identity *id)
{
	return id->wall_ms != NULL ? id->wall_ms(id->wall_ctx) : clock_wall_ms();
}

struct connect_snapshot *connect_identity_get(struct connect_identity *id)
{
	struct connect_snapshot *s;

	pthread_mutex_lock(&id->snap_lock);
	s = connect_snapshot_ref(id->snap);
	pthread_mutex_unlock(&id->snap_lock);
	return s;
}

enum mn_err connect_identity_wait_ready(struct connect_identity *id, uint64_t ms)
{
	struct timespec deadline = clock_deadline_ms(ms);
	enum mn_err e = MN_OK;

	pthread_mutex_lock(&id->snap_lock);
	while (id->snap == NULL) {
		if (pthread_cond_timedwait(&id->ready, &id->snap_lock, &deadline) != 0 &&
		    id->snap == NULL) {
			e = MN_TIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&id->snap_lock);
	return e;
}

bool connect_identity_check_renewal(struct connect_identity *id, int64_t now_ms)
{
	struct connect_snapshot *s = connect_identity_get(id);
	bool warn = false;

	if (s == NULL)
		return false;
	if (connect_snapshot_renewal_overdue(s, now_ms)) {
		pthread_mutex_lock(&id->snap_lock);
		warn = strcmp(id->warned_serial, s->leaf_serial) != 0;
		if (warn)
			snprintf(id->warned_serial, sizeof(id->warned_serial), "%s",
				 s->leaf_serial);
		pthread_mutex_unlock(&id->snap_lock);
	}
	if (warn) {
		char before[32];

		rfc3339(before, sizeof(before), s->leaf_valid_before_ms);
		log_warn(COMPONENT,
			 "leaf of '%s' serial %s is past %d%% of its validity and not renewed: it "
			 "expires at %s (in %.0f s); is the agent reaching its servers?",
			 s->leaf_id.service, s->leaf_serial, CONNECT_RENEW_OVERDUE_PERMILLE / 10,
			 before, connect_snapshot_expires_in(s, now_ms));
	}
	connect_snapshot_release(s);
	return warn;
}

static void *renewal_main(void *arg)
{
	struct connect_identity *id = arg;
	struct worker *w = &id->renewal;

	pthread_mutex_lock(w->lock);
	while (!worker_stopping(w)) {
		struct connect_snapshot *s;
		uint64_t delay = RENEWAL_RECHECK_MS;
		int64_t now;

		pthread_mutex_unlock(w->lock);
		now = wall_now(id);
		connect_identity_check_renewal(id, now);
		s = connect_identity_get(id);
		if (s != NULL && !connect_snapshot_renewal_overdue(s, now)) {
			int64_t due = renewal_due_ms(s) - now;

			if (due >= 0 && (uint64_t)due < delay)
				delay = (uint64_t)due + 1;
		}
		connect_snapshot_release(s);
		pthread_mutex_lock(w->lock);
		worker_wait_locked(w, delay, NULL, NULL);
	}
	pthread_mutex_unlock(w->lock);
	return NULL;
}

static void on_roots(void *ctx, const char *body, size_t len, uint64_t index, bool not_found)
{
	char err[512];

	if (not_found) {
		log_warn(COMPONENT, "the agent has no Connect roots (404): is Connect enabled?");
		return;
	}
	(void)connect_identity_feed_roots(ctx, body, len, index, NULL, err, sizeof(err));
}

static void on_leaf(void *ctx, const char *body, size_t len, uint64_t index, bool not_found)
{
	struct connect_identity *id = ctx;
	char err[512];

	if (not_found) {
		log_warn(COMPONENT, "the agent has no leaf for '%s' (404)", id->service);
		return;
	}
	(void)connect_identity_feed_leaf(id, body, len, index, NULL, err, sizeof(err));
}

static void on_watch_error(void *ctx, enum mn_err err, const char *msg)
{
	(void)ctx;
	if (err == MN_TOO_LARGE)
		log_warn(COMPONENT, "a Connect answer over %u bytes was not read: %s",
			 CONNECT_ANSWER_MAX, msg);
}

struct connect_identity *connect_identity_start(const struct connect_identity_opts *opts, char *err,
						size_t errlen)
{
	struct connect_identity *id;
	char path[64 + SPIFFE_SERVICE_MAX];

	if (opts->service == NULL || spiffe_service_problem(opts->service, strlen(opts->service)) != NULL) {
		snprintf(err, errlen, "cannot follow the leaf of '%s': not a service name",
			 opts->service ? opts->service : "");
		return NULL;
	}
	id = calloc(1, sizeof(*id));
	if (id == NULL)
		goto out_nomem;
	snprintf(id->service, sizeof(id->service), "%s", opts->service);
	id->on_change = opts->on_change;
	id->ctx = opts->ctx;
	id->wall_ms = opts->wall_ms;
	id->wall_ctx = opts->wall_ctx;
	if (pthread_mutex_init(&id->feed_lock, NULL) != 0)
		goto out_free_id;
	if (pthread_mutex_init(&id->snap_lock, NULL) != 0)
		goto out_free_feed_lock;
	if (clock_cond_init(&id->ready) != 0)
		goto out_free_snap_lock;
	if (worker_init(&id->renewal, NULL, NULL) != MN_OK)
		goto out_free_ready;
	if (opts->consul == NULL)
		return id;

	if (worker_start(&id->renewal, renewal_main, id) != MN_OK)
		goto out_free_worker;
	id->renewal_started = true;
	id->roots_watch = watch_start(&(struct watch_opts){
		.consul = opts->consul,
		.op = "connect_roots",
		.path = "/v1/agent/connect/ca/roots",
		.wait_ms = opts->wait_ms,
		.backoff_cap_ms = opts->backoff_cap_ms,
		.max_response = CONNECT_ANSWER_MAX,
		.on_change = on_roots,
		.on_error = on_watch_error,
		.ctx = id,
	});
	snprintf(path, sizeof(path), "/v1/agent/connect/ca/leaf/%s", id->service);
	id->leaf_watch = watch_start(&(struct watch_opts){
		.consul = opts->consul,
		.op = "connect_leaf",
		.path = path,
		.wait_ms = opts->wait_ms,
		.backoff_cap_ms = opts->backoff_cap_ms,
		.max_response = CONNECT_ANSWER_MAX,
		.on_change = on_leaf,
		.on_error = on_watch_error,
		.ctx = id,
	});
	if (id->roots_watch == NULL || id->leaf_watch == NULL) {
		connect_identity_destroy(id);
		goto out_nomem;
	}
	return id;

out_free_worker:
	worker_release(&id->renewal);
out_free_ready:
	pthread_cond_destroy(&id->ready);
out_free_snap_lock:
	pthread_mutex_destroy(&id->snap_lock);
out_free_feed_lock:
	pthread_mutex_destroy(&id->feed_lock);
out_free_id:
	free(id);
out_nomem:
	snprintf(err, errlen, "cannot follow the identity of '%s': out of memory or threads",
		 opts->service);
	return NULL;
}

void connect_identity_stop(struct connect_identity *id)
{
	if (id == NULL)
		return;
	watch_stop(id->roots_watch);
	id->roots_watch = NULL;
	watch_stop(id->leaf_watch);
	id->leaf_watch = NULL;
	worker_stop(&id->renewal);
	if (id->renewal_started)
		worker_join(&id->renewal, -1);
}

void connect_identity_destroy(struct connect_identity *id)
{
	if (id == NULL)
		return;
	connect_identity_stop(id);
	worker_release(&id->renewal);
	set_roots_cand(id, NULL);
	set_leaf_cand(id, NULL);
	roots_part_free(id->roots_pub);
	leaf_part_free(id->leaf_pub);
	connect_snapshot_release(id->snap);
	pthread_cond_destroy(&id->ready);
	pthread_mutex_destroy(&id->snap_lock);
	pthread_mutex_destroy(&id->feed_lock);
	free(id);
}
