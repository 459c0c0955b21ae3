#include "orders/orders_service.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/json_depth.h"
#include "core/json_load.h"
#include "core/log.h"
#include "core/text.h"

struct orders_service {
	struct orders_repo *repo;
	const struct users_peer *users;
	struct orders_events events; /* enabled NULL: no events */
};

struct orders_service *orders_service_create(struct orders_repo *repo,
					     const struct users_peer *users)
{
	struct orders_service *svc = calloc(1, sizeof(*svc));

	if (svc) {
		svc->repo = repo;
		svc->users = users;
	}
	return svc;
}

void orders_service_destroy(struct orders_service *svc)
{
	free(svc);
}

void orders_service_set_events(struct orders_service *svc, const struct orders_events *ev)
{
	svc->events = *ev;
}

/* A random (version 4) UUID: an event's id, its message_id for consumers
 * to deduplicate by. false when the kernel has no randomness to give. */
static bool event_id_new(char out[37])
{
	unsigned char r[16];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return false;
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
		 r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
		 r[14], r[15]);
	return true;
}

/* Reads an integer field in [min, max]; MN_INVALID naming it otherwise. */
static enum mn_err int_field(json_t *root, const char *name, json_int_t min, json_int_t max,
			     int64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(root, name);

	if (v == NULL || json_is_null(v))
		return mn_error(err, errlen, MN_INVALID, "'%s' is required", name);
	/* jansson reads 3.0 and 3e0 as reals and "3" is a string: none of
	 * them is accepted as an integer. */
	if (!json_is_integer(v))
		return mn_error(err, errlen, MN_INVALID, "'%s' must be an integer", name);
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		if (max == INT64_MAX)
			return mn_error(err, errlen, MN_INVALID, "'%s' must be at least %lld", name,
					(long long)min);
		return mn_error(err, errlen, MN_INVALID, "'%s' must be from %lld to %lld", name,
				(long long)min, (long long)max);
	}
	*out = (int64_t)json_integer_value(v);
	return MN_OK;
}

/* The trimmed product as a new string; MN_INVALID naming it otherwise. */
static enum mn_err product_field(json_t *root, char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(root, "product");
	const char *s;
	size_t len;
	unsigned cp;
	ssize_t at;

	if (v == NULL || json_is_null(v))
		return mn_error(err, errlen, MN_INVALID, "'product' is required");
	if (!json_is_string(v))
		return mn_error(err, errlen, MN_INVALID, "'product' must be a string");
	/* jansson has checked the UTF-8 and refuses \u0000 unless told
	 * otherwise; the other escapes (\n, \u001b, \u0085) arrive here and
	 * are refused wherever they are, never trimmed away. */
	s = json_string_value(v);
	len = json_string_length(v);
	at = text_find_control(s, len, &cp);
	if (at >= 0)
		return mn_error(
			err, errlen, MN_INVALID,
			"'product' must not contain control characters (U+%04X at byte %zd)", cp,
			at);
	text_trim(&s, &len);
	if (len == 0 || len > ORDER_PRODUCT_MAX)
		return mn_error(err, errlen, MN_INVALID,
				"'product' must be 1 to %d bytes of text, not only spaces",
				ORDER_PRODUCT_MAX);
	*out = strndup(s, len);
	if (*out == NULL)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	return MN_OK;
}

enum mn_err orders_validate(const char *body, size_t len, struct order *out, char *err,
			    size_t errlen)
{
	json_error_t jerr;
	bool nomem;
	json_t *root;
	enum mn_err ret;

	order_init(out);
	/* before jansson, whose recursion a deep body would turn against
	 * the worker's small stack */
	ret = json_depth_check(body, len, err, errlen);
	if (ret != MN_OK)
		return ret;
	root = json_load_checked(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr,
				 &nomem);
	if (root == NULL && nomem)
		return mn_error(err, errlen, MN_NOMEM, "out of memory");
	if (root == NULL)
		return mn_error(err, errlen, MN_INVALID, "invalid JSON: %s at line %d column %d",
				jerr.text, jerr.line, jerr.column);
	if (!json_is_object(root)) {
		ret = mn_error(err, errlen, MN_INVALID, "the body must be a JSON object");
		goto out;
	}
	ret = int_field(root, "user_id", 1, INT64_MAX, &out->user_id, err, errlen);
	if (ret == MN_OK)
		ret = product_field(root, &out->product, err, errlen);
	if (ret == MN_OK)
		ret = int_field(root, "quantity", 1, ORDER_QUANTITY_MAX, &out->quantity, err,
				errlen);
	if (ret != MN_OK)
		order_release(out);
out:
	json_decref(root);
	return ret;
}

enum mn_err orders_service_create_order(struct orders_service *svc, const char *body, size_t len,
					const struct users_peer_trace *trace, struct order *out,
					unsigned *retry_after_s, char *err, size_t errlen)
{
	char peer_err[256] = "";
	unsigned retry = 0;
	struct order o;
	enum mn_err ret;

	*retry_after_s = 0;
	ret = orders_validate(body, len, &o, err, errlen);
	if (ret != MN_OK)
		return ret;
	ret = svc->users->user_exists(svc->users->ctx, o.user_id, trace, &retry, peer_err,
				      sizeof(peer_err));
	switch (ret) {
	case MN_OK: break;
	case MN_NOT_FOUND:
		ret = mn_error(err, errlen, MN_UNPROCESSABLE, "user %lld does not exist",
			       (long long)o.user_id);
		goto out_release;
	case MN_UNAVAILABLE:
		/* The peer promises at least 1; a Retry-After of 0 would
		 * invite an immediate retry storm, and 0 here means the
		 * store. */
		*retry_after_s = retry ? retry : 1;
		ret = mn_error(err, errlen, MN_UNAVAILABLE, "cannot check user %lld: %s",
			       (long long)o.user_id, peer_err);
		goto out_release;
	default:
		log_error("orders", "request %s: cannot check user %lld: %s: %s",
			  trace && trace->request_id ? trace->request_id : "-",
			  (long long)o.user_id, mn_strerror(ret), peer_err);
		ret = mn_error(err, errlen, MN_INTERNAL, "cannot check user %lld: %s: %s",
			       (long long)o.user_id, mn_strerror(ret), peer_err);
		goto out_release;
	}
	/* err keeps the store's words for MN_UNAVAILABLE ("the store cannot
	 * write: disk full"), which are for the client. */
	if (svc->events.enabled && svc->events.enabled(svc->events.ctx)) {
		char event_id[37];

		if (!event_id_new(event_id)) {
			ret = mn_error(err, errlen, MN_INTERNAL, "no randomness for an event id");
			goto out_release;
		}
		/* the order and its event in one transaction: an order is
		 * never stored without the event that tells of it */
		ret = orders_repo_create_order_event(svc->repo, o.user_id, o.product, o.quantity,
						     event_id, out, err, errlen);
		if (ret == MN_OK && svc->events.stored)
			svc->events.stored(svc->events.ctx);
	} else {
		ret = orders_repo_create_order(svc->repo, o.user_id, o.product, o.quantity, out,
					       err, errlen);
	}
	if (ret != MN_OK && ret != MN_UNAVAILABLE)
		mn_error(err, errlen, ret, "cannot store the order: %s", mn_strerror(ret));
out_release:
	order_release(&o);
	return ret;
}

enum mn_err orders_service_get(struct orders_service *svc, int64_t id, struct order *out)
{
	return orders_repo_get(svc->repo, id, out);
}

enum mn_err orders_service_list(struct orders_service *svc, size_t limit, size_t offset,
				struct order **out, size_t *n)
{
	return orders_repo_list(svc->repo, limit, offset, out, n);
}
