#include "config/store.h"

#include <pthread.h>
#include <stdlib.h>

/* One published config and the readers holding it. */
struct snapshot {
	struct config *cfg;
	unsigned refs; /* readers, plus one while it is the config in force */
	struct snapshot *next;
};

struct config_store {
	pthread_mutex_t lock;
	struct snapshot *current;
	struct snapshot *retired; /* replaced, still referenced */
};

static struct snapshot *snapshot_new(struct config *cfg)
{
	struct snapshot *snap = calloc(1, sizeof(*snap));

	if (snap == NULL)
		return NULL;
	snap->cfg = cfg;
	snap->refs = 1;
	return snap;
}

struct config_store *config_store_create(struct config *initial)
{
	struct config_store *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->current = snapshot_new(initial)) == NULL) {
		free(s);
		config_destroy(initial);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void config_store_destroy(struct config_store *s)
{
	if (s == NULL)
		return;
	while (s->retired) {
		struct snapshot *next = s->retired->next;

		config_destroy(s->retired->cfg);
		free(s->retired);
		s->retired = next;
	}
	config_destroy(s->current->cfg);
	free(s->current);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const struct config *config_store_get(struct config_store *s)
{
	const struct config *cfg;

	pthread_mutex_lock(&s->lock);
	s->current->refs++;
	cfg = s->current->cfg;
	pthread_mutex_unlock(&s->lock);
	return cfg;
}

/* Drops one reference; frees a retired snapshot nobody holds. Lock held. */
static void snapshot_unref(struct config_store *s, struct snapshot *snap)
{
	struct snapshot **pp;

	if (--snap->refs > 0)
		return;
	for (pp = &s->retired; *pp && *pp != snap; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = snap->next;
	config_destroy(snap->cfg);
	free(snap);
}

void config_store_put(struct config_store *s, const struct config *cfg)
{
	struct snapshot *snap;

	pthread_mutex_lock(&s->lock);
	if (s->current->cfg == cfg) {
		snap = s->current;
	} else {
		for (snap = s->retired; snap && snap->cfg != cfg; snap = snap->next)
			;
	}
	if (snap)
		snapshot_unref(s, snap);
	pthread_mutex_unlock(&s->lock);
}

void config_store_publish(struct config_store *s, struct config *next)
{
	struct snapshot *snap = snapshot_new(next), *old;

	if (snap == NULL) {
		/* Out of memory: the config in force stays. */
		config_destroy(next);
		return;
	}
	pthread_mutex_lock(&s->lock);
	old = s->current;
	s->current = snap;
	old->next = s->retired;
	s->retired = old;
	snapshot_unref(s, old);
	pthread_mutex_unlock(&s->lock);
}
