/* Allocation failures in the parsers of Consul's answers: health (the
 * instances), KV listings and DNS SRV answers, over the inputs of their
 * unit tests' fixtures and fuzz seeds. */
#include <jansson.h>

#include "consul/dns.h"
#include "consul/health.h"
#include "consul/kv.h"
#include "torture.h"

static enum mn_err health(const void *input, size_t len, struct torture_out *out)
{
	struct consul_instance *v = (struct consul_instance *)&v;
	char err[256] = "";
	struct buf rejected;
	size_t n = 42;
	enum mn_err e;

	buf_init(&rejected, 1u << 20);
	input = torture_http_body(input, &len);
	e = consul_health_parse(input, len, &v, &n, &rejected, err, sizeof(err));
	if (e != MN_OK) {
		TORTURE_CHECK(v == NULL && n == 0 && err[0] != '\0');
		buf_release(&rejected);
		torture_outf(out, "%s: %s\n", mn_strerror(e), err);
		return e;
	}
	/* 'rejected' is not compared: its lines are for the log, written
	 * best effort (a line that cannot be added is dropped, by design) */
	for (size_t i = 0; i < n; i++) {
		char *tags = TORTURE_PAUSED(json_dumps(v[i].tags, JSON_SORT_KEYS));
		char *meta = TORTURE_PAUSED(json_dumps(v[i].meta, JSON_SORT_KEYS));

		torture_outf(out, "%s %s %s:%d %s %s %d\n", v[i].id, v[i].node, v[i].address,
			     v[i].port, tags, meta, (int)v[i].passing);
		free(tags);
		free(meta);
	}
	consul_instances_free(v, n);
	buf_release(&rejected);
	return MN_OK;
}

static enum mn_err kv(const void *input, size_t len, struct torture_out *out)
{
	struct consul_kv *pairs = (struct consul_kv *)&pairs;
	char err[256] = "";
	size_t n = 42;
	enum mn_err e;

	input = torture_http_body(input, &len);
	e = consul_kv_parse(input, len, &pairs, &n, err, sizeof(err));
	if (e != MN_OK) {
		TORTURE_CHECK(pairs == NULL && n == 0 && err[0] != '\0');
		torture_outf(out, "%s: %s\n", mn_strerror(e), err);
		return e;
	}
	for (size_t i = 0; i < n; i++)
		torture_outf(out, "%s=%s\n", pairs[i].key,
			     pairs[i].value ? pairs[i].value : "(null)");
	consul_kv_free(pairs, n);
	return MN_OK;
}

static enum mn_err dns(const void *input, size_t len, struct torture_out *out)
{
	const unsigned char *data = input;
	struct consul_instance *v = (struct consul_instance *)&v;
	uint16_t id = len >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
	char err[256] = "";
	size_t n = 42;
	struct consul_dns_answer a;
	enum mn_err e;

	e = consul_dns_parse(data, len, id, &v, &n, &a, err, sizeof(err));
	if (e != MN_OK) {
		TORTURE_CHECK(v == NULL && n == 0 && err[0] != '\0');
		torture_outf(out, "%s: %s\n", mn_strerror(e), err);
		return e;
	}
	for (size_t i = 0; i < n; i++)
		torture_outf(out, "%s %s %s:%d\n", v[i].id, v[i].node, v[i].address, v[i].port);
	consul_instances_free(v, n);
	return MN_OK;
}

int main(void)
{
	torture_quiet_logs();
	torture_files("tests/fuzz/corpus/fuzz_consul_health", NULL, health, 5);
	torture_files("tests/fixtures/consul/health", ".http", health, 3);
	torture_files("tests/fixtures/consul/peers", ".http", health, 18);
	torture_files("tests/fuzz/corpus/fuzz_consul_kv", NULL, kv, 6);
	torture_files("tests/fixtures/consul", ".json", kv, 1);
	torture_files("tests/fixtures/consul/watch", ".http", kv, 5);
	torture_files("tests/fuzz/corpus/fuzz_consul_dns", NULL, dns, 4);
	torture_files("tests/fixtures/consul/dns", ".bin", dns, 6);
	return torture_report("alloc_consul");
}
