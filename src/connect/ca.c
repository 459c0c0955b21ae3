#include "connect/ca.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json_depth.h"
#include "core/json_load.h"

static const char cert_begin[] = "-----BEGIN CERTIFICATE-----";
static const char cert_end[] = "-----END CERTIFICATE-----";

/* The answer as a JSON object in *root (new reference). jansson's message
 * is not quoted: it may hold the bytes it stopped at, and in a leaf those
 * can be the private key's; line and column say where. */
static enum mn_err load_object(const char *json, size_t len, const char *what, json_t **root,
			       char *err, size_t errlen)
{
	json_error_t jerr;
	bool nomem;

	*root = NULL;
	if (len > CONNECT_ANSWER_MAX)
		return mn_error(err, errlen, MN_TOO_LARGE, "%s answer larger than %u bytes", what,
				CONNECT_ANSWER_MAX);
	if (json_depth_check(json, len, jerr.text, sizeof(jerr.text)) != MN_OK)
		return mn_error(err, errlen, MN_INVALID, "cannot parse %s answer: %s", what,
				jerr.text);
	/* a member named twice would let one copy pass the checks and
	 * another be used; Consul never sends one */
	*root = json_load_checked(json, len, JSON_REJECT_DUPLICATES, &jerr, &nomem);
	if (*root == NULL && nomem)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	if (*root == NULL)
		return mn_error(err, errlen, MN_INVALID,
				"cannot parse %s answer: %s at line %d column %d", what,
				json_error_code(&jerr) == json_error_duplicate_key
					? "a member named twice"
					: "invalid JSON",
				jerr.line, jerr.column);
	if (!json_is_object(*root)) {
		json_decref(*root);
		*root = NULL;
		return mn_error(err, errlen, MN_INVALID, "%s answer is not an object", what);
	}
	return MN_OK;
}

/* The string member 'key' of 'obj' in *out (borrowed from obj), at most
 * 'max' bytes; absent is fine (*out NULL) unless 'required'. */
static enum mn_err get_string(json_t *obj, const char *what, const char *key, size_t max,
			      bool required, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return MN_OK;
		return mn_error(err, errlen, MN_INVALID, "%s: '%s' is missing", what, key);
	}
	if (!json_is_string(v))
		return mn_error(err, errlen, MN_INVALID, "%s: '%s' is not a string", what, key);
	if (json_string_length(v) > max)
		return mn_error(err, errlen, MN_INVALID, "%s: '%s' is longer than %zu bytes", what,
				key, max);
	if (required && json_string_length(v) == 0)
		return mn_error(err, errlen, MN_INVALID, "%s: '%s' is empty", what, key);
	*out = json_string_value(v);
	return MN_OK;
}

static bool ends_with_line(const char *s, const char *tail)
{
	size_t len = strlen(s), tlen = strlen(tail);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	return len >= tlen && memcmp(s + len - tlen, tail, tlen) == 0;
}

/* A certificate's PEM armour, one certificate or a chain. */
static bool cert_pem_looks_right(const char *s)
{
	return strncmp(s, cert_begin, sizeof(cert_begin) - 1) == 0 && ends_with_line(s, cert_end);
}

/* "-----BEGIN [EC ]PRIVATE KEY-----" ... "-----END [EC ]PRIVATE KEY-----" */
static bool key_pem_looks_right(const char *s)
{
	const char *eol = strchr(s, '\n');

	return strncmp(s, "-----BEGIN ", 11) == 0 && eol != NULL && eol - s >= 27 &&
	       memcmp(eol - 16, "PRIVATE KEY-----", 16) == 0 &&
	       ends_with_line(s, "PRIVATE KEY-----") && strstr(s, "-----END ") != NULL;
}

static bool digits(const char *s, size_t n, int *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

bool connect_time_parse(const char *s, size_t len, int64_t *ms)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, frac = 0, scale = 1000, off = 0;
	size_t i = 19;
	int64_t t;

	*ms = 0;
	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
	    !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    sec > 59)
		return false;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return false;
	if (s[i] == '.') {
		size_t start = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (scale > 1) {
				scale /= 10;
				frac += (s[i] - '0') * scale;
			}
			i++;
		}
		if (i == start || i - start > 9)
			return false;
	}
	if (i < len && s[i] == 'Z') {
		i++;
	} else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
		int oh, om;

		if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			return false;
		off = (oh * 60 + om) * (s[i] == '+' ? 1 : -1);
		i += 6;
	} else {
		return false;
	}
	if (i != len)
		return false;
	t = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi - off) * 60 + sec;
	if (t < 0)
		return false;
	*ms = t * 1000 + frac;
	return true;
}

static enum mn_err get_time(json_t *obj, const char *what, const char *key, bool required,
			    int64_t *ms, char *err, size_t errlen)
{
	const char *s;
	enum mn_err e = get_string(obj, what, key, 64, required, &s, err, errlen);

	*ms = 0;
	if (e != MN_OK || s == NULL)
		return e;
	if (!connect_time_parse(s, strlen(s), ms))
		return mn_error(err, errlen, MN_INVALID, "%s: '%s' is not an RFC 3339 time: '%s'",
				what, key, s);
	return MN_OK;
}

static enum mn_err dup_string(const char *s, char **out, char *err, size_t errlen)
{
	*out = NULL;
	if (s == NULL)
		return MN_OK;
	*out = strdup(s);
	if (*out == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	return MN_OK;
}

/* --- roots --- */

static void root_release(struct connect_root *r)
{
	free(r->id);
	free(r->name);
	free(r->cert_pem);
	free(r->signing_key_id);
}

void connect_roots_release(struct connect_roots *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		root_release(&r->roots[i]);
	free(r->roots);
	free(r->active_root_id);
	memset(r, 0, sizeof(*r));
}

const struct connect_root *connect_roots_find(const struct connect_roots *r, const char *id)
{
	for (size_t i = 0; id != NULL && i < r->n; i++)
		if (strcmp(r->roots[i].id, id) == 0)
			return &r->roots[i];
	return NULL;
}

static enum mn_err read_root(json_t *item, size_t i, struct connect_root *out, char *err,
			     size_t errlen)
{
	const char *id, *name, *pem, *skid;
	json_t *active;
	char what[32];
	enum mn_err e;

	snprintf(what, sizeof(what), "root %zu", i + 1);
	if (!json_is_object(item))
		return mn_error(err, errlen, MN_INVALID, "%s is not an object", what);
	if ((e = get_string(item, what, "ID", CONNECT_FIELD_MAX, true, &id, err, errlen)) ||
	    (e = get_string(item, what, "Name", CONNECT_FIELD_MAX, true, &name, err, errlen)) ||
	    (e = get_string(item, what, "RootCert", CONNECT_PEM_MAX, true, &pem, err, errlen)) ||
	    (e = get_string(item, what, "SigningKeyID", CONNECT_FIELD_MAX, false, &skid, err,
			    errlen)) ||
	    (e = get_time(item, what, "NotAfter", false, &out->not_after_ms, err, errlen)))
		return e;
	if (!cert_pem_looks_right(pem))
		return mn_error(err, errlen, MN_INVALID, "%s: 'RootCert' is not a PEM certificate",
				what);
	active = json_object_get(item, "Active");
	if (!json_is_boolean(active))
		return mn_error(err, errlen, MN_INVALID, "%s: 'Active' is %s", what,
				active ? "not a boolean" : "missing");
	out->active = json_is_true(active);
	if ((e = dup_string(id, &out->id, err, errlen)) ||
	    (e = dup_string(name, &out->name, err, errlen)) ||
	    (e = dup_string(pem, &out->cert_pem, err, errlen)) ||
	    (e = dup_string(skid, &out->signing_key_id, err, errlen)))
		return e;
	return MN_OK;
}

enum mn_err connect_roots_parse(const char *json, size_t len, struct connect_roots *out, char *err,
				size_t errlen)
{
	const char *td, *active_id, *why = NULL;
	json_t *root, *roots, *item;
	enum mn_err e;
	size_t i, n;

	memset(out, 0, sizeof(*out));
	e = load_object(json, len, "roots", &root, err, errlen);
	if (e != MN_OK)
		return e;
	if ((e = get_string(root, "roots", "TrustDomain", SPIFFE_TRUST_DOMAIN_MAX, true, &td, err,
			    errlen)) ||
	    (e = get_string(root, "roots", "ActiveRootID", CONNECT_FIELD_MAX, true, &active_id, err,
			    errlen)))
		goto out_free_json;
	why = spiffe_trust_domain_problem(td, strlen(td));
	if (why) {
		e = mn_error(err, errlen, MN_INVALID, "roots: 'TrustDomain' '%s' %s", td, why);
		goto out_free_json;
	}
	roots = json_object_get(root, "Roots");
	if (!json_is_array(roots)) {
		e = mn_error(err, errlen, MN_INVALID, "roots: 'Roots' is %s",
			     roots && !json_is_null(roots) ? "not an array" : "missing");
		goto out_free_json;
	}
	n = json_array_size(roots);
	if (n == 0 || n > CONNECT_ROOTS_MAX) {
		e = mn_error(err, errlen, MN_INVALID,
			     "roots: 'Roots' has %zu roots (1 to %d taken)", n, CONNECT_ROOTS_MAX);
		goto out_free_json;
	}
	out->roots = calloc(n, sizeof(*out->roots));
	if (out->roots == NULL) {
		e = mn_error(err, errlen, MN_NOMEM, "out of memory");
		goto out_free_json;
	}
	json_array_foreach(roots, i, item)
	{
		e = read_root(item, i, &out->roots[i], err, errlen);
		out->n = i + 1;
		if (e != MN_OK)
			goto out_release;
		if (connect_roots_find(out, out->roots[i].id) != &out->roots[i]) {
			e = mn_error(err, errlen, MN_INVALID, "roots: root ID '%s' appears twice",
				     out->roots[i].id);
			goto out_release;
		}
	}
	if (connect_roots_find(out, active_id) == NULL) {
		e = mn_error(err, errlen, MN_INVALID,
			     "roots: 'ActiveRootID' '%s' is none of the roots", active_id);
		goto out_release;
	}
	if ((e = dup_string(active_id, &out->active_root_id, err, errlen)))
		goto out_release;
	memcpy(out->trust_domain, td, strlen(td) + 1);
	json_decref(root);
	return MN_OK;

out_release:
	connect_roots_release(out);
out_free_json:
	json_decref(root);
	return e;
}

/* --- leaf --- */

void connect_leaf_release(struct connect_leaf *leaf)
{
	if (leaf == NULL)
		return;
	if (leaf->key_pem)
		explicit_bzero(leaf->key_pem, leaf->key_len);
	free(leaf->key_pem);
	free(leaf->serial);
	free(leaf->cert_pem);
	free(leaf->service);
	free(leaf->service_uri);
	memset(leaf, 0, sizeof(*leaf));
}

/* jansson's copy of the key, zeroed before the document is freed. */
static void zero_key(json_t *root)
{
	json_t *key = json_object_get(root, "PrivateKeyPEM");

	if (json_is_string(key))
		explicit_bzero((char *)json_string_value(key), json_string_length(key));
}

enum mn_err connect_leaf_parse(const char *json, size_t len, struct connect_leaf *out, char *err,
			       size_t errlen)
{
	const char *serial, *cert, *key, *service, *uri;
	char uerr[128];
	json_t *root, *index;
	enum mn_err e;

	memset(out, 0, sizeof(*out));
	e = load_object(json, len, "leaf", &root, err, errlen);
	if (e != MN_OK)
		return e;
	if ((e = get_string(root, "leaf", "SerialNumber", CONNECT_FIELD_MAX, true, &serial, err,
			    errlen)) ||
	    (e = get_string(root, "leaf", "CertPEM", CONNECT_PEM_MAX, true, &cert, err, errlen)) ||
	    (e = get_string(root, "leaf", "PrivateKeyPEM", CONNECT_PEM_MAX, true, &key, err,
			    errlen)) ||
	    (e = get_string(root, "leaf", "Service", SPIFFE_SERVICE_MAX, true, &service, err,
			    errlen)) ||
	    (e = get_string(root, "leaf", "ServiceURI", SPIFFE_URI_MAX, true, &uri, err, errlen)) ||
	    (e = get_time(root, "leaf", "ValidAfter", true, &out->valid_after_ms, err, errlen)) ||
	    (e = get_time(root, "leaf", "ValidBefore", true, &out->valid_before_ms, err, errlen)))
		goto out_free_json;
	if (!cert_pem_looks_right(cert)) {
		e = mn_error(err, errlen, MN_INVALID, "leaf: 'CertPEM' is not a PEM certificate");
		goto out_free_json;
	}
	if (!key_pem_looks_right(key)) {
		e = mn_error(err, errlen, MN_INVALID,
			     "leaf: 'PrivateKeyPEM' is not a PEM private key");
		goto out_free_json;
	}
	if (spiffe_parse(uri, strlen(uri), &out->id, uerr, sizeof(uerr)) != MN_OK) {
		e = mn_error(err, errlen, MN_INVALID, "leaf: 'ServiceURI' %s", uerr);
		goto out_free_json;
	}
	if (strcmp(out->id.service, service) != 0) {
		e = mn_error(err, errlen, MN_INVALID,
			     "leaf: 'ServiceURI' names service '%s', not '%s'", out->id.service,
			     service);
		goto out_free_json;
	}
	if (out->valid_before_ms <= out->valid_after_ms) {
		e = mn_error(err, errlen, MN_INVALID,
			     "leaf: 'ValidBefore' is not after 'ValidAfter'");
		goto out_free_json;
	}
	index = json_object_get(root, "ModifyIndex");
	if (!json_is_integer(index) || json_integer_value(index) < 0) {
		e = mn_error(err, errlen, MN_INVALID, "leaf: 'ModifyIndex' is %s",
			     index ? "not a non-negative integer" : "missing");
		goto out_free_json;
	}
	out->modify_index = (uint64_t)json_integer_value(index);
	if ((e = dup_string(serial, &out->serial, err, errlen)) ||
	    (e = dup_string(cert, &out->cert_pem, err, errlen)) ||
	    (e = dup_string(key, &out->key_pem, err, errlen)) ||
	    (e = dup_string(service, &out->service, err, errlen)) ||
	    (e = dup_string(uri, &out->service_uri, err, errlen)))
		goto out_release;
	out->key_len = strlen(out->key_pem);
	zero_key(root);
	json_decref(root);
	return MN_OK;

out_release:
	connect_leaf_release(out);
out_free_json:
	memset(out, 0, sizeof(*out));
	zero_key(root);
	json_decref(root);
	return e;
}

/* --- authorize --- */

enum mn_err connect_authz_parse(const char *json, size_t len, struct connect_authz *out, char *err,
				size_t errlen)
{
	const char *reason;
	json_t *root, *authorized;
	enum mn_err e;

	memset(out, 0, sizeof(*out));
	e = load_object(json, len, "authorize", &root, err, errlen);
	if (e != MN_OK)
		return e;
	authorized = json_object_get(root, "Authorized");
	if (!json_is_boolean(authorized)) {
		e = mn_error(err, errlen, MN_INVALID, "authorize: 'Authorized' is %s",
			     authorized ? "not a boolean" : "missing");
		goto out_free_json;
	}
	e = get_string(root, "authorize", "Reason", CONNECT_REASON_MAX, false, &reason, err,
		       errlen);
	if (e != MN_OK)
		goto out_free_json;
	out->authorized = json_is_true(authorized);
	if (reason)
		memcpy(out->reason, reason, strlen(reason) + 1);
out_free_json:
	json_decref(root);
	return e;
}
