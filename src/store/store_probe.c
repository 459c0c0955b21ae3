#include "store/store_probe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct store_probe {
	struct store_probe_opts o;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* stop */
	pthread_t thread;
	bool started, stopping;
	bool probing;		/* a probe in progress ... */
	uint64_t probing_since; /* ... since then */
	enum mn_err result;	/* of the last probe to end */
	char why[256];
	uint64_t at_ms; /* when it ended */
};

static uint64_t now_ms(const struct store_probe *p)
{
	return clock_now(p->o.clock);
}

void store_probe_run(struct store_probe *p)
{
	char why[256] = "unavailable";
	enum mn_err e;
	bool changed;

	pthread_mutex_lock(&p->lock);
	p->probing = true;
	p->probing_since = now_ms(p);
	pthread_mutex_unlock(&p->lock);

	e = p->o.ping(p->o.ctx, why, sizeof(why));

	pthread_mutex_lock(&p->lock);
	changed = (e == MN_OK) != (p->result == MN_OK);
	p->probing = false;
	p->result = e;
	snprintf(p->why, sizeof(p->why), "%s", e == MN_OK ? "ok" : why);
	p->at_ms = now_ms(p);
	pthread_mutex_unlock(&p->lock);
	if (changed && e == MN_OK)
		log_info("store", "store probe: ok again");
	else if (changed)
		log_warn("store", "store probe: %s; /ready answers 503 until it is ok", why);
}

static void *probe_main(void *arg)
{
	struct store_probe *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct timespec ts = clock_deadline_ms((uint64_t)p->o.interval_ms);

		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		if (p->stopping)
			break;
		pthread_mutex_unlock(&p->lock);
		store_probe_run(p);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct store_probe *store_probe_create(const struct store_probe_opts *o)
{
	struct store_probe *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->o = *o;
	if (p->o.clock == NULL)
		p->o.clock = &clock_system;
	pthread_mutex_init(&p->lock, NULL);
	clock_cond_init(&p->wake);
	p->result = MN_UNAVAILABLE; /* so that a first "ok" is not logged */
	store_probe_run(p);
	return p;
}

enum mn_err store_probe_start(struct store_probe *p)
{
	if (pthread_create(&p->thread, NULL, probe_main, p) != 0)
		return MN_NOMEM;
	p->started = true;
	return MN_OK;
}

void store_probe_destroy(struct store_probe *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (p->started)
		pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

bool store_probe_ok(struct store_probe *p, char *why, size_t len, uint64_t *age_ms)
{
	uint64_t now, age, waited = 0;
	bool ok;

	pthread_mutex_lock(&p->lock);
	now = now_ms(p);
	age = now - p->at_ms;
	if (p->probing)
		waited = now - p->probing_since;
	ok = p->result == MN_OK;
	if (waited > (uint64_t)p->o.stale_ms) {
		ok = false;
		snprintf(why, len, "busy: the store probe has had no answer for %llu ms",
			 (unsigned long long)waited);
	} else if (!p->probing && age > (uint64_t)p->o.stale_ms + (uint64_t)p->o.interval_ms) {
		ok = false;
		snprintf(why, len, "the store probe has not run for %llu ms",
			 (unsigned long long)age);
	} else {
		snprintf(why, len, "%s", p->why);
	}
	pthread_mutex_unlock(&p->lock);
	if (age_ms)
		*age_ms = age;
	return ok;
}
