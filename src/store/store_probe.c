#include "store/store_probe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/worker.h"

struct store_probe {
	struct store_probe_opts o;
	pthread_mutex_t lock;
	struct worker worker; /* the probe's thread, under 'lock' */
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
	while (worker_wait_locked(&p->worker, (uint64_t)p->o.interval_ms, NULL, NULL) !=
	       WORKER_STOPPING) {
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
	if (worker_init(&p->worker, &p->lock, NULL) != MN_OK) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	p->result = MN_UNAVAILABLE; /* so that a first "ok" is not logged */
	store_probe_run(p);
	return p;
}

enum mn_err store_probe_start(struct store_probe *p)
{
	return worker_start(&p->worker, probe_main, p) == MN_OK ? MN_OK : MN_NOMEM;
}

void store_probe_destroy(struct store_probe *p)
{
	if (p == NULL)
		return;
	worker_stop(&p->worker);
	worker_join(&p->worker, -1);
	worker_release(&p->worker);
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
