#include "consul/health.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/escape.h"
#include "core/json_depth.h"

static bool host_name_valid(const char *s)
{
	size_t label = 0, len = strlen(s);

	if (len == 0 || len > CONSUL_HOST_MAX)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;

		if (c == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (label == 0 && c == '-')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}

bool consul_host_valid(const char *host)
{
	unsigned char addr[16];

	if (host == NULL || *host == '\0')
		return false;
	if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
		return true;
	return host_name_valid(host);
}

void consul_instances_free(struct consul_instance *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].node);
		free(v[i].address);
		json_decref(v[i].tags);
		json_decref(v[i].meta);
	}
	free(v);
}

/* Adds one line to 'rejected' (may be NULL). The ID and address come from
 * Consul: escaped, a newline in them cannot start a line of its own. */
static void reject(struct buf *rejected, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reject(struct buf *rejected, const char *fmt, ...)
{
	va_list ap;

	if (rejected == NULL)
		return;
	va_start(ap, fmt);
	if (escape_vprintf(rejected, ESCAPE_TEXT, fmt, ap) == MN_OK)
		buf_puts(rejected, "\n");
	va_end(ap);
}

static const char *string_at(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

enum mn_err consul_health_parse(const char *json, size_t len, struct consul_instance **out,
				size_t *n, struct buf *rejected, char *err, size_t errlen)
{
	struct consul_instance *v = NULL;
	json_error_t jerr;
	json_t *root, *entry;
	size_t count = 0, i;
	enum mn_err ret = MN_OK;

	*out = NULL;
	*n = 0;
	if (json_depth_check(json, len, jerr.text, sizeof(jerr.text)) != MN_OK ||
	    (root = json_loadb(json, len, 0, &jerr)) == NULL)
		return mn_error(err, errlen, MN_INVALID, "cannot parse health answer: %s", jerr.text);
	if (!json_is_array(root)) {
		ret = mn_error(err, errlen, MN_INVALID, "health answer is not an array");
		goto out_root;
	}
	v = calloc(json_array_size(root) + 1, sizeof(*v));
	if (v == NULL) {
		ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
		goto out_root;
	}
	json_array_foreach(root, i, entry) {
		json_t *svc = json_object_get(entry, "Service");
		json_t *node = json_object_get(entry, "Node");
		json_t *port = json_object_get(svc, "Port");
		json_t *tags = json_object_get(svc, "Tags");
		json_t *meta = json_object_get(svc, "Meta");
		const char *id = string_at(svc, "ID");
		const char *address = string_at(svc, "Address");
		struct consul_instance *in = &v[count];

		if (address == NULL || *address == '\0')
			address = string_at(node, "Address");
		if (id == NULL || *id == '\0') {
			reject(rejected, "entry %zu has no service ID", i);
			continue;
		}
		if (!consul_host_valid(address)) {
			reject(rejected, "instance '%.100s': invalid address '%.100s'", id,
			       address ? address : "");
			continue;
		}
		if (!json_is_integer(port) || json_integer_value(port) < 1 ||
		    json_integer_value(port) > 65535) {
			reject(rejected, "instance '%.100s': invalid port", id);
			continue;
		}
		in->id = strdup(id);
		in->node = strdup(string_at(node, "Node") ? string_at(node, "Node") : "");
		in->address = strdup(address);
		in->port = (int)json_integer_value(port);
		/* copies: snapshots are read from many threads, the answer is not */
		in->tags = json_is_array(tags) ? json_deep_copy(tags) : json_array();
		in->meta = json_is_object(meta) ? json_deep_copy(meta) : json_object();
		count++;
		if (!in->id || !in->node || !in->address || !in->tags || !in->meta) {
			ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
			consul_instances_free(v, count);
			goto out_root;
		}
	}
	*out = v;
	*n = count;
out_root:
	json_decref(root);
	return ret;
}
