#include "consul/registrar.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"

struct registrar {
	struct consul *consul;
	const struct consul_service *svc;
	struct backoff backoff;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* signalled on stop and on registration */
	bool stopping;
	bool registered;
	char last_error[256];
};

/* Waits on the condition until 'ms' passed or the registrar stops.
 * Called with the lock held; CLOCK_MONOTONIC so wall-clock jumps do not
 * stretch a backoff. */
static void wait_locked(struct registrar *r, uint64_t ms)
{
	struct timespec ts = clock_deadline_ms(ms);

	while (!r->stopping)
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
			break;
}

static void *registrar_main(void *arg)
{
	struct registrar *r = arg;
	struct httpc *h = httpc_create();
	char err[256];
	enum mn_err last = MN_OK;

	if (h == NULL) {
		log_error("consul", "cannot create an HTTP client for registration");
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	while (!r->stopping && !r->registered) {
		pthread_mutex_unlock(&r->lock);
		enum mn_err e = consul_agent_register(r->consul, h, r->svc, err, sizeof(err));
		pthread_mutex_lock(&r->lock);
		if (e == MN_OK) {
			r->registered = true;
			r->last_error[0] = '\0';
			pthread_cond_broadcast(&r->cond);
			log_info("consul", "registered service '%s' as '%s' with the agent at %s",
				 r->svc->name, r->svc->id, consul_address(r->consul));
			break;
		}
		snprintf(r->last_error, sizeof(r->last_error), "%s", err);
		uint64_t delay = backoff_next(&r->backoff);
		/* One line per distinct failure, then quiet while it repeats:
		 * a node waiting for its agent should not flood the log. */
		if (e != last)
			log_warn("consul", "cannot register with the agent at %s: %s; retrying with backoff",
				 consul_address(r->consul), err);
		else
			log_debug("consul", "registration retry in %llu ms: %s",
				  (unsigned long long)delay, err);
		last = e;
		wait_locked(r, delay);
	}
	pthread_mutex_unlock(&r->lock);
	httpc_destroy(h);
	return NULL;
}

struct registrar *registrar_start(struct consul *c, const struct consul_service *svc,
				  uint64_t backoff_base_ms, uint64_t backoff_cap_ms)
{
	struct registrar *r = calloc(1, sizeof(*r));
	pthread_condattr_t attr;

	if (r == NULL)
		return NULL;
	r->consul = c;
	r->svc = svc;
	backoff_init(&r->backoff, backoff_base_ms, backoff_cap_ms, 0);
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&r->thread, NULL, registrar_main, r) != 0) {
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	return r;
}

void registrar_stop(struct registrar *r)
{
	char err[256];
	struct httpc *h;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);

	if (r->registered) {
		h = httpc_create();
		if (h && consul_agent_deregister(r->consul, h, r->svc->id, err, sizeof(err)) == MN_OK)
			log_info("consul", "deregistered '%s'", r->svc->id);
		else
			log_warn("consul", "cannot deregister '%s': %s", r->svc->id,
				 h ? err : "out of memory");
		httpc_destroy(h);
	}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

bool registrar_registered(struct registrar *r)
{
	bool v;

	pthread_mutex_lock(&r->lock);
	v = r->registered;
	pthread_mutex_unlock(&r->lock);
	return v;
}

bool registrar_wait(struct registrar *r, uint64_t timeout_ms)
{
	struct timespec ts = clock_deadline_ms(timeout_ms);
	bool v;

	pthread_mutex_lock(&r->lock);
	while (!r->registered && !r->stopping)
		if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
			break;
	v = r->registered;
	pthread_mutex_unlock(&r->lock);
	return v;
}

void registrar_last_error(struct registrar *r, char *out, size_t outlen)
{
	pthread_mutex_lock(&r->lock);
	snprintf(out, outlen, "%s", r->last_error);
	pthread_mutex_unlock(&r->lock);
}
