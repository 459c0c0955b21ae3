/* An orders create body (POST /orders) as a client sends it, through
 * orders_validate() and the service over a memory store and a users peer
 * whose answer depends on the user id. What validates is within the
 * documented limits; the peer is asked only about valid orders, and its
 * answer decides the outcome. */
#include <ctype.h>
#include <jansson.h>

#include "fuzz.h"
#include "store/drivers.h"
#include "orders/orders_service.h"
#include "orders/orders_repo.h"

struct peer {
	int calls;
};

/* user_id % 4: 0 exists, 1 does not, 2 no instance answers, 3 fails */
static enum mn_err user_exists(void *ctx, int64_t id, const struct users_peer_trace *trace,
			       unsigned *retry_after_s, char *err, size_t errlen)
{
	struct peer *p = ctx;

	(void)trace;
	p->calls++;
	switch (id % 4) {
	case 0: return MN_OK;
	case 1: return mn_error(err, errlen, MN_NOT_FOUND, "no user %lld", (long long)id);
	case 2:
		*retry_after_s = (unsigned)(id % 3);
		return mn_error(err, errlen, MN_UNAVAILABLE, "down");
	default: return mn_error(err, errlen, MN_IO, "reset");
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct users_peer_trace trace = {.request_id = "fuzz", .traceparent = NULL};
	struct peer p = {0};
	struct users_peer users = {user_exists, &p};
	char err[512] = "";
	struct orders_repo *repo;
	struct orders_service *svc;
	struct order o, stored;
	unsigned retry = 99;
	enum mn_err e, want;
	size_t plen;

	/* the body is not NUL-terminated: the parser must keep to 'size' */
	e = orders_validate(body, size, &o, err, sizeof(err));
	FUZZ_CHECK(e == MN_OK || e == MN_INVALID);
	if (e != MN_OK) {
		FUZZ_CHECK(o.product == NULL && err[0] != '\0');
		want = e;
	} else {
		plen = strlen(o.product);
		FUZZ_CHECK(o.id == 0 && o.user_id >= 1);
		FUZZ_CHECK(o.quantity >= 1 && o.quantity <= ORDER_QUANTITY_MAX);
		FUZZ_CHECK(plen >= 1 && plen <= ORDER_PRODUCT_MAX);
		FUZZ_CHECK(!isspace((unsigned char)o.product[0]) &&
			   !isspace((unsigned char)o.product[plen - 1]));
		want = (enum mn_err[]){MN_OK, MN_UNPROCESSABLE, MN_UNAVAILABLE,
				       MN_INTERNAL}[o.user_id % 4];
	}

	repo = orders_repo_memory_create(NULL);
	svc = orders_service_create(repo, &users);
	FUZZ_CHECK(repo && svc);
	order_init(&stored);
	FUZZ_CHECK(orders_service_create_order(svc, body, size, &trace, &stored, &retry, err,
					       sizeof(err)) == want);
	FUZZ_CHECK(p.calls == (e == MN_OK));
	FUZZ_CHECK(want == MN_UNAVAILABLE ? retry >= 1 : retry == 0);
	if (want == MN_OK) {
		FUZZ_CHECK(stored.id == 1 && stored.user_id == o.user_id &&
			   stored.quantity == o.quantity && strcmp(stored.product, o.product) == 0);
		order_release(&stored);
		order_init(&stored);
		FUZZ_CHECK(orders_service_get(svc, 1, &stored) == MN_OK);
		FUZZ_CHECK(strcmp(stored.product, o.product) == 0);
	} else {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(orders_service_get(svc, 1, &stored) == MN_NOT_FOUND);
	}
	order_release(&stored);
	order_release(&o);
	orders_service_destroy(svc);
	orders_repo_destroy(repo);
	return 0;
}
