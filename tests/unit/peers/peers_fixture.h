/* What the resolver and peer client tests share: a clock the test moves by
 * hand, the health answers captured from a real consul 1.8.7 -dev agent
 * (tests/fixtures/consul/peers/, made by capture.py there), larger
 * answers built from them, and the log records read back. Header-only;
 * include after <cmocka.h>. */
#ifndef MESHNODE_TESTS_PEERS_FIXTURE_H
#define MESHNODE_TESTS_PEERS_FIXTURE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "fixture.h"
#include "log_capture.h"

/* ---- a hand clock ------------------------------------------------------- */

/* Time stands still until the test moves it. The watch threads space their
 * calls by this clock too: a watch makes its next call only after the test
 * moved the clock past its minimum interval (100 ms plus jitter). */
struct hand_clock {
	atomic_uint_fast64_t ms;
	struct mn_clock clock;
};

#define HAND_CLOCK_START 1000000u
/* Enough for a watch's minimum interval and its jitter (at most 150 ms). */
#define WATCH_INTERVAL_MS 200u

static uint64_t hand_clock_now(void *ctx)
{
	return atomic_load(&((struct hand_clock *)ctx)->ms);
}

static inline void hand_clock_init(struct hand_clock *c)
{
	atomic_init(&c->ms, HAND_CLOCK_START);
	c->clock = (struct mn_clock){hand_clock_now, c};
}

static inline void hand_clock_advance(struct hand_clock *c, uint64_t ms)
{
	atomic_fetch_add(&c->ms, ms);
}

/* For fake_transport.elapse: an answer that takes time on this clock. */
static inline void hand_clock_elapse(void *ctx, uint64_t ms)
{
	hand_clock_advance(ctx, ms);
}

/* ---- captured answers --------------------------------------------------- */

/* tests/fixtures/consul/peers/<name>: status, X-Consul-Index and body. */
static inline void peers_answer_load(struct fixture_answer *a, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "consul/peers/%s", name);
	fixture_answer_load(a, path);
	assert_int_equal(a->status, 200);
}

/* A health answer with the instances 'from' .. 'to' - 1 of a service: copies
 * of the first entry of the captured answer 'name', each with Service.ID
 * "<prefix>-<i>" and Service.Port base_port + i, everything else (node,
 * checks, address) as Consul sent it. Answers of thousands of instances are
 * made this way rather than captured. New allocation (free()). */
static inline char *health_body_range(const char *name, const char *prefix, size_t from, size_t to,
				      int base_port)
{
	/* The entry is dumped once with markers in place of the two values,
	 * then copied around them: thousands of deep copies cost seconds. */
	static const char id_mark[] = "@@ID@@";
	static const json_int_t port_mark = 987654321;
	struct fixture_answer a;
	json_t *all, *entry, *svc;
	json_error_t jerr;
	char *tpl, *id_at, *port_at;
	struct buf out;

	peers_answer_load(&a, name);
	all = json_loads(a.body, 0, &jerr);
	assert_non_null(all);
	entry = json_array_get(all, 0);
	svc = json_object_get(entry, "Service");
	assert_non_null(svc);
	json_object_set_new(svc, "ID", json_string(id_mark));
	json_object_set_new(svc, "Port", json_integer(port_mark));
	tpl = json_dumps(entry, JSON_COMPACT);
	assert_non_null(tpl);
	id_at = strstr(tpl, id_mark);
	port_at = strstr(tpl, "987654321");
	assert_non_null(id_at);
	assert_non_null(port_at);
	assert_true(id_at < port_at); /* Service.ID comes before Service.Port */
	buf_init(&out, (size_t)1 << 30);
	assert_int_equal(buf_puts(&out, "["), MN_OK);
	for (size_t i = from; i < to; i++) {
		assert_int_equal(buf_printf(&out, "%s%.*s%s-%zu%.*s%d%s", i > from ? "," : "",
					    (int)(id_at - tpl), tpl, prefix, i,
					    (int)(port_at - id_at - strlen(id_mark)),
					    id_at + strlen(id_mark), base_port + (int)i,
					    port_at + strlen("987654321")),
				 MN_OK);
	}
	assert_int_equal(buf_puts(&out, "]"), MN_OK);
	free(tpl);
	json_decref(all);
	fixture_answer_free(&a);
	return buf_steal(&out, NULL);
}

/* The port of an instance URL "http://127.0.0.1:9101/users/1"; -1 when the
 * URL has none. */
static inline int url_port(const char *url)
{
	const char *p = strstr(url, "://");

	if (p == NULL || (p = strchr(p + 3, ':')) == NULL)
		return -1;
	return atoi(p + 1);
}

/* Polls 'done' until it is true or 'timeout_ms' of real time passed; the
 * threads under test answer in milliseconds, the bound only keeps a broken
 * build from hanging. */
static inline bool poll_until(bool (*done)(void *ctx), void *ctx, uint64_t timeout_ms)
{
	uint64_t end = clock_monotonic_ms() + timeout_ms;

	for (;;) {
		if (done(ctx))
			return true;
		if (clock_monotonic_ms() >= end)
			return false;
		clock_sleep_ms(2);
	}
}

#define POLL_MS 5000u

/* log records: tests/unit/log_capture.h */

#endif
