/* Allocation failures in the parsers of what Connect takes from the agent
 * (the roots, leaf and authorize answers) and SPIFFE URIs, over the
 * captured answers and the fuzz seeds: every input goes through all four,
 * as in tests/fuzz/fuzz_connect.c. */
#include "connect/ca.h"
#include "connect/spiffe.h"
#include "torture.h"

static enum mn_err connect_all(const void *input, size_t len, struct torture_out *out)
{
	struct connect_roots r;
	struct connect_leaf l;
	struct connect_authz z;
	struct spiffe_id id;
	char err[256] = "";
	enum mn_err e;

	input = torture_http_body(input, &len);
	e = connect_roots_parse(input, len, &r, err, sizeof(err));
	if (e == MN_NOMEM) {
		TORTURE_CHECK(r.roots == NULL && r.n == 0 && err[0] != '\0');
		return e;
	}
	if (e != MN_OK)
		torture_outf(out, "roots %s: %s\n", mn_strerror(e), err);
	for (size_t i = 0; e == MN_OK && i < r.n; i++)
		torture_outf(out, "root %s %s %s %zu %s %lld %d active %s\n", r.trust_domain,
			     r.roots[i].id, r.roots[i].name, strlen(r.roots[i].cert_pem),
			     r.roots[i].signing_key_id ? r.roots[i].signing_key_id : "-",
			     (long long)r.roots[i].not_after_ms, (int)r.roots[i].active,
			     r.active_root_id);
	connect_roots_release(&r);

	e = connect_leaf_parse(input, len, &l, err, sizeof(err));
	if (e == MN_NOMEM) {
		TORTURE_CHECK(l.key_pem == NULL && err[0] != '\0');
		return e;
	}
	if (e != MN_OK)
		torture_outf(out, "leaf %s: %s\n", mn_strerror(e), err);
	else
		torture_outf(out, "leaf %s %s %s %zu key %zu %lld %lld %llu\n", l.serial, l.service,
			     l.service_uri, strlen(l.cert_pem), l.key_len,
			     (long long)l.valid_after_ms, (long long)l.valid_before_ms,
			     (unsigned long long)l.modify_index);
	connect_leaf_release(&l);

	e = connect_authz_parse(input, len, &z, err, sizeof(err));
	if (e == MN_NOMEM)
		return e;
	torture_outf(out, "authorize %s: %d %s %s\n", mn_strerror(e), (int)z.authorized, z.reason,
		     e == MN_OK ? "" : err);

	/* no allocation: a case that ends at N = 1 */
	e = spiffe_parse(input, len, &id, err, sizeof(err));
	torture_outf(out, "spiffe %s: %s %s %s %s\n", mn_strerror(e), id.trust_domain, id.dc,
		     id.service, e == MN_OK ? "" : err);
	return MN_OK;
}

int main(void)
{
	torture_quiet_logs();
	torture_files("tests/fuzz/corpus/fuzz_connect", NULL, connect_all, 9);
	torture_files("tests/fixtures/consul/connect", ".http", connect_all, 8);
	return torture_report("alloc_connect");
}
