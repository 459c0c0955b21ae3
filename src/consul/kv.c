#include "consul/kv.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/escape.h"
#include "core/json_depth.h"
#include "core/json_load.h"

#define KV_TIMEOUT_MS 5000
#define KV_RESPONSE_MAX (16u << 20)

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes standard base64 (with padding) into a new NUL-terminated string;
 * NULL with errno EINVAL for bad base64, ENOMEM when out of memory. */
static char *base64_decode(const char *in, size_t len, size_t *outlen)
{
	char *out, *o;
	unsigned acc = 0;
	int bits = 0;
	size_t i;

	if (len % 4 != 0) {
		errno = EINVAL;
		return NULL;
	}
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	o = out;
	for (i = 0; i < len; i++) {
		int v;

		if (in[i] == '=') {
			/* Padding only in the last two places. */
			if (i < len - 2 || (i == len - 2 && in[len - 1] != '='))
				goto out_bad;
			break;
		}
		v = b64val((unsigned char)in[i]);
		if (v < 0)
			goto out_bad;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*o++ = (char)((acc >> bits) & 0xff);
		}
	}
	*o = '\0';
	*outlen = (size_t)(o - out);
	return out;

out_bad:
	free(out);
	errno = EINVAL;
	return NULL;
}

void consul_kv_free(struct consul_kv *pairs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(pairs[i].key);
		free(pairs[i].value);
	}
	free(pairs);
}

enum mn_err consul_kv_parse(const char *json, size_t len, struct consul_kv **pairs, size_t *n,
			    char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *item;
	struct consul_kv *out = NULL;
	size_t count = 0, i;
	enum mn_err ret = MN_OK;
	bool nomem;

	*pairs = NULL;
	*n = 0;
	if (json_depth_check(json, len, jerr.text, sizeof(jerr.text)) != MN_OK)
		return mn_error(err, errlen, MN_INVALID, "cannot parse kv listing: %s", jerr.text);
	root = json_load_checked(json, len, 0, &jerr, &nomem);
	if (root == NULL && nomem)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	if (root == NULL) {
		/* jansson quotes the bytes it stopped at as they are; the
		 * message ends up in a list of one problem per line */
		char text[4 * sizeof(jerr.text)];
		size_t pos = 0;

		escape_append(text, sizeof(text) - 1, &pos, jerr.text, strlen(jerr.text),
			      ESCAPE_TEXT);
		text[pos] = '\0';
		return mn_error(err, errlen, MN_INVALID, "cannot parse kv listing: %s", text);
	}
	if (!json_is_array(root)) {
		ret = mn_error(err, errlen, MN_INVALID, "kv listing is not an array");
		goto out_free_root;
	}
	out = calloc(json_array_size(root) + 1, sizeof(*out));
	if (out == NULL) {
		ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
		goto out_free_root;
	}
	json_array_foreach(root, i, item) {
		json_t *key = json_object_get(item, "Key");
		json_t *value = json_object_get(item, "Value");
		json_t *index = json_object_get(item, "ModifyIndex");
		struct consul_kv *kv = &out[count];
		size_t vlen = 0;

		if (!json_is_string(key)) {
			ret = mn_error(err, errlen, MN_INVALID, "kv entry %zu has no key", i);
			goto out_free_pairs;
		}
		kv->key = strdup(json_string_value(key));
		if (kv->key == NULL) {
			ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
			goto out_free_pairs;
		}
		count++;
		kv->modify_index = json_is_integer(index) ? (uint64_t)json_integer_value(index) : 0;
		if (value == NULL || json_is_null(value))
			continue;
		if (!json_is_string(value) ||
		    json_string_length(value) > (CONSUL_KV_VALUE_MAX / 3 + 1) * 4) {
			ret = mn_error(err, errlen, MN_INVALID, "kv key '%s' has a bad value", kv->key);
			goto out_free_pairs;
		}
		kv->value = base64_decode(json_string_value(value), json_string_length(value), &vlen);
		if (kv->value == NULL && errno == ENOMEM) {
			ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
			goto out_free_pairs;
		}
		if (kv->value == NULL) {
			ret = mn_error(err, errlen, MN_INVALID, "kv key '%s' is not valid base64",
				       kv->key);
			goto out_free_pairs;
		}
		if (strlen(kv->value) != vlen) {
			ret = mn_error(err, errlen, MN_INVALID, "kv key '%s' holds a NUL byte",
				       kv->key);
			goto out_free_pairs;
		}
	}
	*pairs = out;
	*n = count;
	json_decref(root);
	return MN_OK;

out_free_pairs:
	consul_kv_free(out, count);
out_free_root:
	json_decref(root);
	return ret;
}

uint64_t consul_index_parse(const char *s)
{
	unsigned long long v;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return 0;
	return (uint64_t)v;
}

enum mn_err consul_kv_list(struct consul *c, struct httpc *h, const char *prefix,
			   size_t max_response, struct consul_kv **pairs, size_t *n,
			   uint64_t *index, char *err, size_t errlen)
{
	return consul_kv_list_within(c, h, prefix, max_response, KV_TIMEOUT_MS, NULL, pairs, n,
				     index, err, errlen);
}

enum mn_err consul_kv_list_within(struct consul *c, struct httpc *h, const char *prefix,
				  size_t max_response, long timeout_ms, const atomic_bool *cancel,
				  struct consul_kv **pairs, size_t *n, uint64_t *index, char *err,
				  size_t errlen)
{
	struct httpc_response res;
	char path[1024];
	enum mn_err ret;

	*pairs = NULL;
	*n = 0;
	*index = 0;
	/* The prefix is a path of our own configuration (validated names), so
	 * its slashes stay as they are. */
	if ((size_t)snprintf(path, sizeof(path), "/v1/kv/%s?recurse=true", prefix) >= sizeof(path))
		return mn_error(err, errlen, MN_INVALID, "kv prefix too long");
	httpc_response_init(&res);
	ret = consul_call(c, h,
			  &(struct consul_call){.op = "kv_list",
						.method = "GET",
						.path = path,
						.timeout_ms = timeout_ms > 0 ? timeout_ms
									     : KV_TIMEOUT_MS,
						.cancel = cancel,
						.max_response = max_response ? max_response
									     : KV_RESPONSE_MAX},
			  &res, err, errlen);
	*index = consul_index_parse(res.captured);
	if (ret == MN_NOT_FOUND) {
		ret = MN_OK; /* no key under the prefix yet */
		goto out;
	}
	if (ret != MN_OK)
		goto out;
	ret = consul_kv_parse(res.body.data ? res.body.data : "", res.body.len, pairs, n, err,
			      errlen);
out:
	httpc_response_release(&res);
	return ret;
}
