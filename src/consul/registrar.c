#include "consul/registrar.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/client.h"

#define RECONCILE_INTERVAL_MS 1000
#define MAINTENANCE_REASON "maintenance = true in consul kv (meshnode)"
/* How long a stop waits for the agent to deregister a registration it
 * never confirmed (a register call cancelled or timed out). */
#define UNCONFIRMED_DEREGISTER_MS 500

struct registrar {
	struct consul *consul;
	const struct consul_service *svc;
	struct backoff backoff;
	pthread_mutex_t lock;
	struct worker worker;      /* the reconciler thread; its condition is
				      also signalled on registration and
				      maintenance, its cancel flag ends the
				      call in flight on stop */
	bool stopped;              /* registrar_stop has run: deregistered */
	bool registered;           /* the agent is known to hold the service */
	bool ever_registered;
	bool register_sent;        /* a register call went out: it may have reached */
	bool maintenance_wanted;
	bool maintenance_applied;  /* as far as the agent is concerned */
	enum mn_err last;          /* last failure, for log-once */
	char last_error[256];
};

/* Records a failed call and waits out the backoff. Lock held. One log line
 * per kind of failure, then quiet while it repeats, so a node waiting for
 * its agent (or refused by its ACL) does not flood the log. A call ended
 * by the stop (it cancels the call in flight) is no failure: nothing is
 * recorded. */
static void failed_locked(struct registrar *r, const char *what, enum mn_err e, const char *err)
{
	uint64_t delay;

	if (worker_stopping(&r->worker))
		return;
	delay = backoff_next(&r->backoff);
	snprintf(r->last_error, sizeof(r->last_error), "%s", err);
	if (e != r->last)
		log_warn("consul", "%s at %s failed: %s; retrying with backoff", what,
			 consul_address(r->consul), err);
	else
		log_debug("consul", "%s retry in %llu ms: %s", what, (unsigned long long)delay, err);
	r->last = e;
	worker_wait_locked(&r->worker, delay, NULL, NULL);
}

/* GET of the service's own check URL, as the agent will make it (same URL,
 * same timeout): true on a 2xx answer, which Consul counts as passing.
 * Only then does a registration start its check passing; without it the
 * node would be critical, out of ?passing, until the agent's first check
 * (at a random point of the first check interval, 10 s by default). */
static bool check_answers(const struct consul_service *svc, const atomic_bool *cancel, char *why,
			  size_t whylen)
{
	struct httpc *h = httpc_create();
	struct httpc_response res;
	char err[256];
	enum mn_err e;
	bool ok = false;

	if (h == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	httpc_response_init(&res);
	e = httpc_perform(h,
			  &(struct httpc_request){.method = "GET",
						  .url = svc->check_url,
						  .timeout_ms = svc->check_timeout_ms,
						  .connect_timeout_ms = svc->check_timeout_ms,
						  .max_response = 4096,
						  .cancel = cancel},
			  &res, err, sizeof(err));
	if (e != MN_OK)
		snprintf(why, whylen, "%s", err);
	else if (res.status < 200 || res.status > 299)
		snprintf(why, whylen, "status %ld", res.status);
	else
		ok = true;
	httpc_response_release(&res);
	httpc_destroy(h);
	return ok;
}

static void succeeded_locked(struct registrar *r)
{
	backoff_reset(&r->backoff);
	r->last = MN_OK;
	r->last_error[0] = '\0';
}

/* One step of the loop: whatever is most needed now. Lock held on entry and
 * exit, released around the agent call. */
static void reconcile_step(struct registrar *r, struct httpc *h)
{
	char err[256];
	enum mn_err e;

	if (!r->registered) {
		/* After an outage, first look: an agent that kept the service
		 * needs no new registration. */
		bool look = r->ever_registered;
		/* In maintenance the service must never show passing, not even
		 * for the moment before the maintenance call. */
		bool maintenance = r->maintenance_wanted;
		bool passing = false, sent = false;
		char why[256] = "maintenance mode";

		pthread_mutex_unlock(&r->lock);
		e = look ? consul_agent_service_exists(r->consul, h, r->svc->id, &r->worker.cancel,
							      err, sizeof(err))
			 : MN_NOT_FOUND;
		if (e == MN_NOT_FOUND) {
			passing = !maintenance &&
				  check_answers(r->svc, &r->worker.cancel, why, sizeof(why));
			e = consul_agent_register(r->consul, h, r->svc, passing, &r->worker.cancel, err,
						  sizeof(err));
			sent = true;
		} else {
			look = false; /* it was there: nothing was registered */
		}
		pthread_mutex_lock(&r->lock);
		/* answered, failed or cancelled by the stop, it may have reached
		 * the agent; only a connection refused did not */
		if (sent && e != MN_UNAVAILABLE)
			r->register_sent = true;
		if (e != MN_OK) {
			failed_locked(r, "registration", e, err);
			return;
		}
		if (r->ever_registered && look)
			log_warn("consul", "the agent had lost service '%s'; registered it again (check %s)",
				 r->svc->id, passing ? "passing" : "critical until the agent's first check");
		else if (!r->ever_registered && passing)
			log_info("consul", "registered service '%s' as '%s' with the agent at %s, check "
				 "passing (%s answered)", r->svc->name, r->svc->id,
				 consul_address(r->consul), r->svc->check_url);
		else if (!r->ever_registered)
			log_info("consul", "registered service '%s' as '%s' with the agent at %s, check "
				 "critical until the agent's first check (%s: %s)", r->svc->name,
				 r->svc->id, consul_address(r->consul), r->svc->check_url, why);
		if (look)
			r->maintenance_applied = false; /* a new registration has none */
		r->registered = true;
		r->ever_registered = true;
		succeeded_locked(r);
		pthread_cond_broadcast(&r->worker.cond);
		return;
	}
	if (r->maintenance_wanted != r->maintenance_applied) {
		bool on = r->maintenance_wanted;

		pthread_mutex_unlock(&r->lock);
		e = consul_agent_maintenance(r->consul, h, r->svc->id, on, MAINTENANCE_REASON,
					     &r->worker.cancel, err, sizeof(err));
		pthread_mutex_lock(&r->lock);
		if (e == MN_NOT_FOUND) {
			r->registered = false;
		} else if (e != MN_OK) {
			failed_locked(r, "maintenance mode", e, err);
		} else {
			r->maintenance_applied = on;
			log_info("consul", "maintenance mode %s for '%s'", on ? "on" : "off",
				 r->svc->id);
			succeeded_locked(r);
		}
		return;
	}
	worker_wait_locked(&r->worker, RECONCILE_INTERVAL_MS, NULL, NULL);
	if (worker_stopping(&r->worker) || r->maintenance_wanted != r->maintenance_applied)
		return;
	pthread_mutex_unlock(&r->lock);
	e = consul_agent_service_exists(r->consul, h, r->svc->id, &r->worker.cancel, err,
					sizeof(err));
	pthread_mutex_lock(&r->lock);
	if (e == MN_OK) {
		succeeded_locked(r);
	} else if (e == MN_NOT_FOUND) {
		log_warn("consul", "the agent no longer holds service '%s'", r->svc->id);
		r->registered = false;
		r->maintenance_applied = false;
	} else {
		/* The agent is not answering: whether it still holds the
		 * service is unknown until it does. */
		r->registered = false;
		failed_locked(r, "registration check", e, err);
	}
}

static void *registrar_main(void *arg)
{
	struct registrar *r = arg;
	struct httpc *h = consul_conn_create(r->consul);

	if (h == NULL) {
		log_error("consul", "cannot create an HTTP client for registration");
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	while (!worker_stopping(&r->worker))
		reconcile_step(r, h);
	pthread_mutex_unlock(&r->lock);
	consul_conn_destroy(r->consul, h);
	return NULL;
}

struct registrar *registrar_start(struct consul *c, const struct consul_service *svc,
				  bool maintenance, uint64_t backoff_base_ms,
				  uint64_t backoff_cap_ms)
{
	struct registrar *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->consul = c;
	r->svc = svc;
	r->maintenance_wanted = maintenance;
	backoff_init(&r->backoff, backoff_base_ms, backoff_cap_ms, 0);
	pthread_mutex_init(&r->lock, NULL);
	if (worker_init(&r->worker, &r->lock, NULL) != MN_OK) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	if (worker_start(&r->worker, registrar_main, r) != MN_OK) {
		worker_release(&r->worker);
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
	bool was_registered, ever;
	enum mn_err e;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	if (r->stopped) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	/* a call to an agent that does not answer ends now (the cancel
	 * flag), not at its timeout: the stop is not kept waiting */
	worker_stop_locked(&r->worker);
	pthread_mutex_unlock(&r->lock);
	worker_join(&r->worker, -1);

	pthread_mutex_lock(&r->lock);
	r->stopped = true;
	ever = r->ever_registered;
	/* a register call cancelled or failed may still have reached the
	 * agent: deregister then too (an agent without it says not found) */
	was_registered = ever || r->register_sent;
	r->registered = false;
	pthread_mutex_unlock(&r->lock);
	if (was_registered) {
		h = consul_conn_create(r->consul);
		/* A registration the agent never confirmed gets a short
		 * courtesy call: an agent that did not answer the register
		 * (a silent one) must not hold the stop for the usual bound. */
		e = h ? consul_agent_deregister(r->consul, h, r->svc->id,
						ever ? 0 : UNCONFIRMED_DEREGISTER_MS, err, sizeof(err))
		      : MN_NOMEM;
		if (e == MN_OK)
			log_info("consul", "deregistered '%s'", r->svc->id);
		else if (!ever)
			log_debug("consul", "'%s' was never confirmed registered; deregistering: %s",
				  r->svc->id, h ? err : "out of memory");
		else
			log_warn("consul", "cannot deregister '%s': %s", r->svc->id,
				 h ? err : "out of memory");
		consul_conn_destroy(r->consul, h);
	}
}

void registrar_destroy(struct registrar *r)
{
	if (r == NULL)
		return;
	registrar_stop(r);
	worker_release(&r->worker);
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

void registrar_set_maintenance(struct registrar *r, bool on)
{
	pthread_mutex_lock(&r->lock);
	r->maintenance_wanted = on;
	pthread_cond_broadcast(&r->worker.cond);
	pthread_mutex_unlock(&r->lock);
}

bool registrar_wait(struct registrar *r, uint64_t timeout_ms)
{
	struct timespec ts = clock_deadline_ms(timeout_ms);
	bool v;

	pthread_mutex_lock(&r->lock);
	while (!r->registered && !worker_stopping(&r->worker))
		if (pthread_cond_timedwait(&r->worker.cond, &r->lock, &ts) == ETIMEDOUT)
			break;
	v = r->registered;
	pthread_mutex_unlock(&r->lock);
	return v;
}

bool registrar_wait_registered(struct registrar *r, int timeout_ms, const atomic_bool *cancel)
{
	for (int waited = 0; waited < timeout_ms; waited += 100) {
		if ((cancel && atomic_load(cancel)) || registrar_wait(r, 100))
			return true;
	}
	return registrar_registered(r);
}

void registrar_last_error(struct registrar *r, char *out, size_t outlen)
{
	pthread_mutex_lock(&r->lock);
	snprintf(out, outlen, "%s", r->last_error);
	pthread_mutex_unlock(&r->lock);
}
