/* Allocation failures in the request-body parsers of the users and orders
 * services (users_validate(), orders_validate()), over their fuzz seeds. */
#include "orders/order.h"
#include "orders/orders_service.h"
#include "torture.h"
#include "users/users_service.h"

static enum mn_err user_body(const void *input, size_t len, struct torture_out *out)
{
	char *name = (char *)&name, *email = (char *)&email, err[512] = "";
	enum mn_err e = users_validate(input, len, &name, &email, err, sizeof(err));

	if (e != MN_OK) {
		TORTURE_CHECK(name == NULL && email == NULL && err[0] != '\0');
		torture_outf(out, "%s: %s\n", mn_strerror(e), err);
		return e;
	}
	torture_outf(out, "name %s email %s\n", name, email ? email : "(none)");
	free(name);
	free(email);
	return MN_OK;
}

static enum mn_err order_body(const void *input, size_t len, struct torture_out *out)
{
	char err[512] = "";
	struct order o;
	enum mn_err e = orders_validate(input, len, &o, err, sizeof(err));

	if (e != MN_OK) {
		TORTURE_CHECK(o.product == NULL && err[0] != '\0');
		torture_outf(out, "%s: %s\n", mn_strerror(e), err);
		return e;
	}
	torture_outf(out, "user %lld product %s quantity %lld\n", (long long)o.user_id, o.product,
		     (long long)o.quantity);
	order_release(&o);
	return MN_OK;
}

int main(void)
{
	torture_quiet_logs();
	torture_files("tests/fuzz/corpus/fuzz_users_body", NULL, user_body, 10);
	torture_files("tests/fuzz/corpus/fuzz_orders_body", NULL, order_body, 9);
	return torture_report("alloc_bodies");
}
