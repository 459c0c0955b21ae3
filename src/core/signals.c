#include "core/signals.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

struct signals {
	pthread_t thread;
	signals_fn fn;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t wake;	    /* a stop or a SIGHUP arrived */
	atomic_bool stop_requested; /* SIGTERM or SIGINT */
	int stop_sig;		    /* which of them, guarded by lock */
	unsigned hups;		    /* SIGHUPs taken, guarded by lock */
	unsigned hups_seen;	    /* by signals_next(), its caller's only */
};

static void *signals_main(void *arg)
{
	struct signals *s = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* cancelled (signals_stop()) in sigwait only: never while it holds
	 * its lock or one the callback takes (the log's) */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	for (;;) {
		int rc;

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		rc = sigwait(&set, &sig);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (rc != 0)
			continue;
		pthread_mutex_lock(&s->lock);
		if (sig == SIGHUP) {
			s->hups++;
		} else {
			s->stop_sig = sig;
			atomic_store(&s->stop_requested, true);
		}
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		if (s->fn)
			s->fn(s->ctx, sig);
		if (sig != SIGHUP)
			return NULL;
	}
}

struct signals *signals_start(signals_fn fn, void *ctx)
{
	struct signals *s;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fn = fn;
	s->ctx = ctx;
	atomic_init(&s->stop_requested, false);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	if (pthread_create(&s->thread, NULL, signals_main, s) != 0) {
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->wake);
		free(s);
		return NULL;
	}
	return s;
}

void signals_stop(struct signals *s)
{
	if (s == NULL)
		return;
	/* sigwait is its only cancellation point; a thread that took its
	 * stop has ended or is about to */
	pthread_cancel(s->thread);
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	free(s);
}

bool signals_stop_requested(const struct signals *s)
{
	return atomic_load(&s->stop_requested);
}

const atomic_bool *signals_stop_flag(const struct signals *s)
{
	return &s->stop_requested;
}

int signals_next(struct signals *s)
{
	int sig;

	pthread_mutex_lock(&s->lock);
	while (!atomic_load(&s->stop_requested) && s->hups == s->hups_seen)
		pthread_cond_wait(&s->wake, &s->lock);
	if (atomic_load(&s->stop_requested)) {
		sig = s->stop_sig;
	} else {
		s->hups_seen = s->hups;
		sig = SIGHUP;
	}
	pthread_mutex_unlock(&s->lock);
	return sig;
}
