/* Consul KV reads: a recursive listing of a prefix, values base64-decoded. */
#ifndef MESHNODE_CONSUL_KV_H
#define MESHNODE_CONSUL_KV_H

#include <stdint.h>

#include "consul/client.h"

struct consul_kv {
	char *key;
	char *value;          /* decoded, NUL-terminated; NULL for a folder key */
	uint64_t modify_index;
};

/* KV values larger than this are refused (Consul's own limit is 512 KiB). */
#define CONSUL_KV_VALUE_MAX (512u * 1024u)

/* Parses the JSON array of GET /v1/kv/<prefix>?recurse into *pairs (new
 * array of *n entries; free with consul_kv_free()). MN_INVALID for a body
 * that is not such an array or holds bad base64, with detail in err. */
enum mn_err consul_kv_parse(const char *json, size_t len, struct consul_kv **pairs, size_t *n,
			    char *err, size_t errlen);

void consul_kv_free(struct consul_kv *pairs, size_t n);

/* Lists every key under 'prefix'. A prefix with no keys is MN_OK with
 * *n == 0. *index receives X-Consul-Index (0 when absent), on failure too.
 * A response body larger than 'max_response' bytes (0: 16 MiB) is not read
 * further: MN_TOO_LARGE, no pairs, and *index still set, so the caller can
 * go on from that index without reading the listing again. */
enum mn_err consul_kv_list(struct consul *c, struct httpc *h, const char *prefix,
			   size_t max_response, struct consul_kv **pairs, size_t *n,
			   uint64_t *index, char *err, size_t errlen);

/* consul_kv_list() within 'timeout_ms' (0: the default, 5 s), connecting
 * included, and aborted (MN_IO, "cancelled") as soon as 'cancel' (may be
 * NULL) turns true. */
enum mn_err consul_kv_list_within(struct consul *c, struct httpc *h, const char *prefix,
				  size_t max_response, long timeout_ms, const atomic_bool *cancel,
				  struct consul_kv **pairs, size_t *n, uint64_t *index, char *err,
				  size_t errlen);

/* Parses an X-Consul-Index value; 0 when absent or malformed. */
uint64_t consul_index_parse(const char *s);

#endif
