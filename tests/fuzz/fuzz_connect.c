/* What Connect takes from the agent, or from anything in its place: the
 * roots, leaf and authorize answers, and the same bytes as a SPIFFE URI
 * (the identity a peer's certificate carries) and as an RFC 3339 time. */
#include "connect/ca.h"
#include "connect/spiffe.h"
#include "fuzz.h"

static void fuzz_roots(const char *data, size_t size)
{
	struct connect_roots r;
	char err[256] = "";
	enum mn_err e = connect_roots_parse(data, size, &r, err, sizeof(err));

	FUZZ_CHECK(e == MN_OK || e == MN_INVALID || e == MN_TOO_LARGE);
	if (e != MN_OK) {
		FUZZ_CHECK(r.roots == NULL && r.n == 0 && r.active_root_id == NULL);
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	FUZZ_CHECK(r.n >= 1 && r.n <= CONNECT_ROOTS_MAX);
	FUZZ_CHECK(connect_roots_find(&r, r.active_root_id) != NULL);
	FUZZ_CHECK(spiffe_trust_domain_problem(r.trust_domain, strlen(r.trust_domain)) == NULL);
	for (size_t i = 0; i < r.n; i++) {
		FUZZ_CHECK(r.roots[i].id[0] != '\0' && strlen(r.roots[i].id) <= CONNECT_FIELD_MAX);
		FUZZ_CHECK(strncmp(r.roots[i].cert_pem, "-----BEGIN CERTIFICATE-----", 27) == 0);
		FUZZ_CHECK(strlen(r.roots[i].cert_pem) <= CONNECT_PEM_MAX);
		FUZZ_CHECK(connect_roots_find(&r, r.roots[i].id) == &r.roots[i]);
	}
	connect_roots_release(&r);
}

static void fuzz_leaf(const char *data, size_t size)
{
	struct connect_leaf l;
	char err[256] = "";
	enum mn_err e = connect_leaf_parse(data, size, &l, err, sizeof(err));

	FUZZ_CHECK(e == MN_OK || e == MN_INVALID || e == MN_TOO_LARGE);
	if (e != MN_OK) {
		FUZZ_CHECK(l.key_pem == NULL && l.cert_pem == NULL && l.serial == NULL);
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	FUZZ_CHECK(l.id.kind == SPIFFE_SERVICE);
	FUZZ_CHECK(strcmp(l.id.service, l.service) == 0);
	FUZZ_CHECK(l.valid_before_ms > l.valid_after_ms && l.valid_after_ms >= 0);
	FUZZ_CHECK(l.key_len == strlen(l.key_pem) && l.key_len <= CONNECT_PEM_MAX);
	connect_leaf_release(&l);
	FUZZ_CHECK(l.key_pem == NULL);
}

static void fuzz_authz(const char *data, size_t size)
{
	struct connect_authz z;
	char err[256] = "";
	enum mn_err e = connect_authz_parse(data, size, &z, err, sizeof(err));

	FUZZ_CHECK(e == MN_OK || e == MN_INVALID || e == MN_TOO_LARGE);
	FUZZ_CHECK(strlen(z.reason) <= CONNECT_REASON_MAX);
	FUZZ_CHECK(e == MN_OK || (!z.authorized && z.reason[0] == '\0' && err[0] != '\0'));
}

/* A service identity in namespace "default" is exactly the URI the
 * builder writes from its parts. */
static void fuzz_spiffe(const char *data, size_t size)
{
	char err[160] = "", uri[SPIFFE_URI_MAX + 1];
	struct spiffe_id id;
	enum mn_err e = spiffe_parse(data, size, &id, err, sizeof(err));

	FUZZ_CHECK(e == MN_OK || e == MN_INVALID);
	if (e != MN_OK) {
		FUZZ_CHECK(err[0] != '\0' && id.kind != SPIFFE_SERVICE);
		return;
	}
	FUZZ_CHECK(id.kind == SPIFFE_SERVICE && size <= SPIFFE_URI_MAX);
	FUZZ_CHECK(spiffe_service_matches(&id, id.trust_domain, id.service) ==
		   (strcmp(id.ns, "default") == 0));
	if (strcmp(id.ns, "default") != 0)
		return;
	FUZZ_CHECK(spiffe_service_uri(uri, sizeof(uri), id.trust_domain, id.dc, id.service, NULL,
				      0) == MN_OK);
	FUZZ_CHECK(strlen(uri) == size && memcmp(uri, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exact-size copies: the parsers must keep to 'size' */
	char *copy = malloc(size ? size : 1);
	int64_t ms;

	if (copy == NULL)
		abort();
	if (size)
		memcpy(copy, data, size);
	fuzz_roots(copy, size);
	fuzz_leaf(copy, size);
	fuzz_authz(copy, size);
	fuzz_spiffe(copy, size);
	if (connect_time_parse(copy, size, &ms))
		FUZZ_CHECK(ms >= 0);
	free(copy);
	return 0;
}
