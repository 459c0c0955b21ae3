#include "consul/health.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/escape.h"
#include "core/json_depth.h"
#include "core/json_scan.h"

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

const char *consul_host_unusable(const char *host)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	unsigned char a[16];
	const unsigned char *v4 = NULL;

	if (!consul_host_valid(host))
		return "invalid address";
	if (inet_pton(AF_INET, host, a) == 1) {
		v4 = a;
	} else if (inet_pton(AF_INET6, host, a) == 1) {
		if (memcmp(a, mapped, sizeof(mapped)) == 0)
			v4 = a + 12;
		else if (memcmp(a, (const unsigned char[16]){0}, 16) == 0)
			return "unspecified address";
		else if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
			return "link-local address";
	}
	if (v4 && v4[0] == 0 && v4[1] == 0 && v4[2] == 0 && v4[3] == 0)
		return "unspecified address";
	if (v4 && v4[0] == 169 && v4[1] == 254)
		return "link-local address";
	return NULL;
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

/* Longest string taken from an answer: IDs, names and addresses are far
 * shorter (Consul caps a service ID at 256 bytes, a host at 253). */
#define FIELD_MAX (64u * 1024u)
/* Longest member name kept: Consul caps meta keys at 128 bytes. */
#define KEY_MAX 256

/* What one entry of the answer says, as it is read. */
struct entry {
	struct buf id, node, node_address, address, dc;
	long long port;
	bool port_ok, is_object;
	bool failing;        /* a check that is not passing */
	bool maintenance;
	json_t *tags, *meta;
};

static void entry_init(struct entry *e)
{
	buf_init(&e->id, FIELD_MAX);
	buf_init(&e->node, FIELD_MAX);
	buf_init(&e->node_address, FIELD_MAX);
	buf_init(&e->address, FIELD_MAX);
	buf_init(&e->dc, FIELD_MAX);
	e->port = 0;
	e->port_ok = false;
	e->is_object = false;
	e->failing = false;
	e->maintenance = false;
	e->tags = NULL;
	e->meta = NULL;
}

static void entry_release(struct entry *e)
{
	buf_release(&e->id);
	buf_release(&e->node);
	buf_release(&e->node_address);
	buf_release(&e->address);
	buf_release(&e->dc);
	json_decref(e->tags);
	json_decref(e->meta);
}

/* A string member into b, or nothing (b emptied) when it is not a string. */
static bool read_string(struct jscan *s, struct buf *b)
{
	if (jscan_peek(s) != JSCAN_STRING) {
		buf_reset(b);
		return jscan_skip(s);
	}
	return jscan_string(s, b);
}

/* Tags: the strings of an array (anything else in it, or a tags member
 * that is not an array, is left out). */
static bool read_tags(struct jscan *s, struct entry *e, struct buf *scratch)
{
	json_decref(e->tags);
	e->tags = json_array();
	if (e->tags == NULL)
		return false;
	if (jscan_peek(s) != JSCAN_ARRAY)
		return jscan_skip(s);
	if (!jscan_array_begin(s))
		return false;
	while (jscan_array_next(s)) {
		if (jscan_peek(s) != JSCAN_STRING) {
			if (!jscan_skip(s))
				return false;
			continue;
		}
		if (!jscan_string(s, scratch) ||
		    json_array_append_new(e->tags, json_stringn(scratch->data, scratch->len)) != 0)
			return false;
	}
	return !s->failed;
}

/* Meta: the string members of an object. */
static bool read_meta(struct jscan *s, struct entry *e, struct buf *scratch)
{
	char key[KEY_MAX];

	json_decref(e->meta);
	e->meta = json_object();
	if (e->meta == NULL)
		return false;
	if (jscan_peek(s) != JSCAN_OBJECT)
		return jscan_skip(s);
	if (!jscan_object_begin(s))
		return false;
	while (jscan_object_next(s, key, sizeof(key))) {
		if (jscan_peek(s) != JSCAN_STRING) {
			if (!jscan_skip(s))
				return false;
			continue;
		}
		if (!jscan_string(s, scratch) ||
		    json_object_set_new(e->meta, key, json_stringn(scratch->data, scratch->len)) != 0)
			return false;
	}
	return !s->failed;
}

static bool read_node(struct jscan *s, struct entry *e)
{
	char key[KEY_MAX];

	if (jscan_peek(s) != JSCAN_OBJECT) {
		buf_reset(&e->node);
		buf_reset(&e->node_address);
		buf_reset(&e->dc);
		return jscan_skip(s);
	}
	if (!jscan_object_begin(s))
		return false;
	while (jscan_object_next(s, key, sizeof(key))) {
		bool ok = strcmp(key, "Node") == 0	   ? read_string(s, &e->node)
			  : strcmp(key, "Address") == 0	   ? read_string(s, &e->node_address)
			  : strcmp(key, "Datacenter") == 0 ? read_string(s, &e->dc)
							   : jscan_skip(s);
		if (!ok)
			return false;
	}
	return !s->failed;
}

static bool read_service(struct jscan *s, struct entry *e, struct buf *scratch)
{
	char key[KEY_MAX];

	if (jscan_peek(s) != JSCAN_OBJECT) {
		buf_reset(&e->id);
		return jscan_skip(s);
	}
	if (!jscan_object_begin(s))
		return false;
	while (jscan_object_next(s, key, sizeof(key))) {
		bool ok;

		if (strcmp(key, "ID") == 0) {
			ok = read_string(s, &e->id);
		} else if (strcmp(key, "Address") == 0) {
			ok = read_string(s, &e->address);
		} else if (strcmp(key, "Port") == 0) {
			e->port_ok = false;
			ok = jscan_peek(s) == JSCAN_NUMBER ? jscan_integer(s, &e->port, &e->port_ok)
							   : jscan_skip(s);
		} else if (strcmp(key, "Tags") == 0) {
			ok = read_tags(s, e, scratch);
		} else if (strcmp(key, "Meta") == 0) {
			ok = read_meta(s, e, scratch);
		} else {
			ok = jscan_skip(s);
		}
		if (!ok)
			return false;
	}
	return !s->failed;
}

/* The maintenance checks Consul adds: for the node ("_node_maintenance")
 * and for one service ("_service_maintenance:<service ID>"). */
static bool maintenance_check(const struct buf *id)
{
	static const char node[] = "_node_maintenance", service[] = "_service_maintenance:";

	return id->data && (strcmp(id->data, node) == 0 ||
			    strncmp(id->data, service, sizeof(service) - 1) == 0);
}

/* One check: its ID and status. A check with no status or another one
 * than "passing" fails, as ?passing has it. */
static bool read_check(struct jscan *s, struct entry *e, struct buf *check_id, struct buf *status)
{
	char key[KEY_MAX];

	buf_reset(check_id);
	buf_reset(status);
	if (jscan_peek(s) != JSCAN_OBJECT)
		return jscan_skip(s);
	if (!jscan_object_begin(s))
		return false;
	while (jscan_object_next(s, key, sizeof(key))) {
		bool ok = strcmp(key, "CheckID") == 0  ? read_string(s, check_id)
			  : strcmp(key, "Status") == 0 ? read_string(s, status)
						       : jscan_skip(s);
		if (!ok)
			return false;
	}
	if (s->failed)
		return false;
	if (status->data == NULL || strcmp(status->data, "passing") != 0)
		e->failing = true;
	if (maintenance_check(check_id))
		e->maintenance = true;
	return true;
}

/* Checks: the instance's and its node's. */
static bool read_checks(struct jscan *s, struct entry *e)
{
	struct buf check_id, status;
	bool ok = true;

	if (jscan_peek(s) != JSCAN_ARRAY)
		return jscan_skip(s);
	if (!jscan_array_begin(s))
		return false;
	buf_init(&check_id, FIELD_MAX);
	buf_init(&status, FIELD_MAX);
	while (ok && jscan_array_next(s))
		ok = read_check(s, e, &check_id, &status);
	buf_release(&check_id);
	buf_release(&status);
	return ok && !s->failed;
}

/* One entry of the array; false on a parse error or out of memory. */
static bool read_entry(struct jscan *s, struct entry *e, struct buf *scratch)
{
	char key[KEY_MAX];

	if (jscan_peek(s) != JSCAN_OBJECT)
		return jscan_skip(s);
	e->is_object = true;
	if (!jscan_object_begin(s))
		return false;
	while (jscan_object_next(s, key, sizeof(key))) {
		bool ok = strcmp(key, "Node") == 0      ? read_node(s, e)
			  : strcmp(key, "Service") == 0 ? read_service(s, e, scratch)
			  : strcmp(key, "Checks") == 0  ? read_checks(s, e)
							: jscan_skip(s);
		if (!ok)
			return false;
	}
	return !s->failed;
}

/* A datacenter name as Consul allows one, short enough to keep. */
static bool dc_ok(const char *s, size_t len)
{
	if (s == NULL || len == 0 || len > CONSUL_DC_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-' || s[i] == '_'))
			return false;
	return true;
}

/* Keeps a well-formed entry as instance 'in' (its strings and JSON taken)
 * or describes why not in 'rejected'. MN_NOMEM, or MN_OK (kept or not,
 * *kept telling). */
static enum mn_err entry_take(struct entry *e, size_t i, struct consul_instance *in,
			      struct buf *rejected, bool *kept)
{
	const char *id = e->id.data;
	const char *address = e->address.len ? e->address.data : e->node_address.data;
	const char *why;

	*kept = false;
	if (id == NULL || *id == '\0') {
		reject(rejected, "entry %zu has no service ID", i);
		return MN_OK;
	}
	if ((why = consul_host_unusable(address)) != NULL) {
		reject(rejected, "instance '%.100s': %s '%.100s'", id, why, address ? address : "");
		return MN_OK;
	}
	if (!e->port_ok || e->port < 1 || e->port > 65535) {
		reject(rejected, "instance '%.100s': invalid port", id);
		return MN_OK;
	}
	memset(in, 0, sizeof(*in));
	if (dc_ok(e->dc.data, e->dc.len))
		memcpy(in->dc, e->dc.data, e->dc.len + 1);
	in->id = strdup(id);
	in->node = strdup(e->node.data ? e->node.data : "");
	in->address = strdup(address);
	in->port = (int)e->port;
	in->passing = !e->failing;
	in->maintenance = e->maintenance;
	in->tags = e->tags ? e->tags : json_array();
	in->meta = e->meta ? e->meta : json_object();
	e->tags = e->meta = NULL;
	*kept = true;
	if (!in->id || !in->node || !in->address || !in->tags || !in->meta)
		return MN_NOMEM;
	return MN_OK;
}

enum mn_err consul_health_parse(const char *json, size_t len, struct consul_instance **out,
				size_t *n, struct buf *rejected, char *err, size_t errlen)
{
	struct consul_instance *v = NULL;
	size_t count = 0, alloc = 0, i = 0;
	enum mn_err ret = MN_OK;
	struct buf scratch;
	struct jscan s;
	char why[128];

	*out = NULL;
	*n = 0;
	if (json_depth_check(json, len, why, sizeof(why)) != MN_OK)
		return mn_error(err, errlen, MN_INVALID, "cannot parse health answer: %s", why);
	jscan_init(&s, json, len);
	buf_init(&scratch, FIELD_MAX);
	if (jscan_peek(&s) != JSCAN_ARRAY) {
		ret = mn_error(err, errlen, MN_INVALID,
			       s.failed ? "cannot parse health answer: %s"
					: "health answer is not an array%s",
			       jscan_error(&s));
		goto out;
	}
	jscan_array_begin(&s);
	for (; jscan_array_next(&s); i++) {
		struct entry e;
		bool kept = false;

		entry_init(&e);
		if (!read_entry(&s, &e, &scratch)) {
			entry_release(&e);
			if (!s.failed || s.nomem)
				goto out_nomem;
			break;
		}
		if (count == alloc) {
			size_t grown = alloc ? alloc * 2 : 16;
			struct consul_instance *more = realloc(v, grown * sizeof(*v));

			if (more == NULL) {
				entry_release(&e);
				goto out_nomem;
			}
			v = more;
			alloc = grown;
		}
		if (!e.is_object)
			reject(rejected, "entry %zu has no service ID", i);
		else if (entry_take(&e, i, &v[count], rejected, &kept) != MN_OK) {
			count++;
			entry_release(&e);
			goto out_nomem;
		}
		count += kept;
		entry_release(&e);
	}
	if (s.failed || !jscan_end(&s)) {
		ret = mn_error(err, errlen, MN_INVALID, "cannot parse health answer: %s",
			       jscan_error(&s));
		goto out_free;
	}
	if (v == NULL && (v = calloc(1, sizeof(*v))) == NULL)
		goto out_nomem;
	*out = v;
	*n = count;
	goto out;

out_nomem:
	ret = mn_error(err, errlen, MN_NOMEM, "out of memory");
out_free:
	consul_instances_free(v, count);
out:
	buf_release(&scratch);
	return ret;
}
