/* The registry: families and their series (the hot path of updates, the
 * label-set table, removal and sweeps) and registration. The text format is
 * exposition.c's, the process_* readings process.c's. */
#include "metrics_internal.h"
#include "core/array.h"
#include "core/hash.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_http_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t metrics_http_buckets_count =
	sizeof(metrics_http_buckets) / sizeof(metrics_http_buckets[0]);

/* ---- names ---------------------------------------------------------------- */

static bool name_valid(const char *s, bool colon)
{
	if (s == NULL || *s == '\0')
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');

		if (!ok)
			return false;
	}
	return true;
}

static bool label_names_valid(enum metric_type type, size_t nlabels, const char *const *label_names)
{
	if (nlabels == 0)
		return true;
	if (label_names == NULL)
		return false;
	for (size_t i = 0; i < nlabels; i++) {
		if (!name_valid(label_names[i], false) || strncmp(label_names[i], "__", 2) == 0)
			return false;
		if (type == METRIC_HISTOGRAM && strcmp(label_names[i], "le") == 0)
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(label_names[i], label_names[j]) == 0)
				return false;
	}
	return true;
}

/* Label values end up in the exposition, which must be UTF-8; checked once,
 * when a label set is first seen. */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		uint32_t cp;
		int n;

		if (*p < 0x80) {
			p++;
			continue;
		} else if ((*p & 0xe0) == 0xc0) {
			cp = *p & 0x1f;
			n = 1;
		} else if ((*p & 0xf0) == 0xe0) {
			cp = *p & 0x0f;
			n = 2;
		} else if ((*p & 0xf8) == 0xf0) {
			cp = *p & 0x07;
			n = 3;
		} else {
			return false;
		}
		p++;
		for (int i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (*p & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* ---- series lookup (the hot path) ---------------------------------------- */

static inline const char *label_value(const char *const *values, size_t i)
{
	return values && values[i] ? values[i] : "";
}

/* FNV-1a over the values, each followed by 0xff, a byte UTF-8 never holds,
 * so ("ab","c") and ("a","bc") differ; seeded per family. Not passed
 * through hash_mix(): on every request, and as the table was before. */
static uint64_t values_hash(const struct metric_family *f, const char *const *values)
{
	uint64_t h = HASH_START ^ f->index.seed;

	for (size_t i = 0; i < f->nlabels; i++)
		h = hash_byte(hash_str(h, label_value(values, i)), 0xff);
	return h;
}

/* The label values a lookup in f->index compares with (the index has
 * compared the hashes). */
struct series_key {
	const struct metric_family *f;
	const char *const *values;
};

static inline bool series_matches(const void *entry, const void *key)
{
	const struct series *s = *(struct series *const *)entry;
	const struct series_key *k = key;

	for (size_t i = 0; i < k->f->nlabels; i++)
		if (strcmp(s->values[i], label_value(k->values, i)) != 0)
			return false;
	return true;
}

static bool series_is(const void *entry, const void *key)
{
	return *(struct series *const *)entry == key;
}

static struct series *series_new(const struct metric_family *f, uint64_t h,
				 const char *const *values)
{
	size_t nb = f->type == METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
	size_t size = sizeof(struct series) + nb * sizeof(uint64_t) + f->nlabels * sizeof(char *);
	struct series *s;
	char *p;

	for (size_t i = 0; i < f->nlabels; i++)
		size += strlen(label_value(values, i)) + 1;
	s = calloc(1, size);
	if (s == NULL)
		return NULL;
	s->hash = h;
	/* struct series holds 8-byte members, so its size keeps both arrays aligned */
	s->buckets = (uint64_t *)(s + 1);
	s->values = (char **)(s->buckets + nb);
	p = (char *)(s->values + f->nlabels);
	for (size_t i = 0; i < f->nlabels; i++) {
		size_t len = strlen(label_value(values, i)) + 1;

		memcpy(p, label_value(values, i), len);
		s->values[i] = p;
		p += len;
	}
	return s;
}

/* Makes room for one more series (load factor at most 1/2). */
static bool family_reserve(struct metric_family *f)
{
	if (!array_reserve(&f->list, &f->list_alloc, f->nseries, sizeof(*f->list), 16))
		return false;
	return hashmap_reserve(&f->index, f->nseries + 1) == MN_OK;
}

/* The index entry of the series of 'values' in a labelled family, or NULL.
 * Called with f->lock held. */
static struct series **family_find(const struct metric_family *f, uint64_t h,
				   const char *const *values)
{
	struct series_key k = {f, values};

	return hashmap_find(&f->index, h, series_matches, &k);
}

/* The series of 'values', created if new. NULL when the label set must be
 * dropped (*dropped set) or memory runs out. Called with f->lock held. */
static struct series *family_series(struct metric_family *f, uint64_t h, const char *const *values,
				    bool *dropped)
{
	struct series **e, *s;
	size_t i;

	if (f->nlabels == 0)
		return f->only;
	e = family_find(f, h, values);
	if (e)
		return *e;

	if (f->nseries >= METRICS_MAX_SERIES) {
		*dropped = true;
		return NULL;
	}
	for (i = 0; i < f->nlabels; i++) {
		if (!utf8_valid(label_value(values, i))) {
			*dropped = true;
			return NULL;
		}
	}
	if (!family_reserve(f))
		return NULL;
	s = series_new(f, h, values);
	if (s == NULL)
		return NULL;
	/* cannot fail: family_reserve() made room */
	*(struct series **)hashmap_insert(&f->index, h) = s;
	f->list[f->nseries++] = s;
	return s;
}

static size_t bucket_index(const struct metric_family *f, double v)
{
	size_t lo = 0, hi = f->nbounds;

	/* first bound >= v; NaN compares false everywhere and lands in +Inf */
	if (isnan(v))
		return f->nbounds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->bounds[mid] >= v)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void metrics_family_update(struct metric_family *f, const char *const *values, enum metric_op op,
			   double v)
{
	struct series *s;
	uint64_t h = f->nlabels ? values_hash(f, values) : 0;
	size_t b = op == OP_OBSERVE ? bucket_index(f, v) : 0;
	bool dropped = false;

	pthread_mutex_lock(&f->lock);
	s = family_series(f, h, values, &dropped);
	if (s) {
		switch (op) {
		case OP_ADD: s->value += v; break;
		case OP_SET: s->value = v; break;
		case OP_RAISE:
			if (v > s->value)
				s->value = v;
			break;
		case OP_OBSERVE:
			s->buckets[b]++;
			s->count++;
			s->value += v;
			break;
		}
		s->gen = f->gen;
	}
	pthread_mutex_unlock(&f->lock);

	/* counted outside f->lock so the two family locks never nest */
	if (dropped && f != f->owner->dropped) {
		const char *name = f->name;

		metrics_family_update(f->owner->dropped, &name, OP_ADD, 1);
	}
}

void metric_inc(struct metric_family *f, const char *const *label_values)
{
	if (f && f->type != METRIC_HISTOGRAM)
		metrics_family_update(f, label_values, OP_ADD, 1);
}

void metric_add(struct metric_family *f, const char *const *label_values, double v)
{
	if (f == NULL || f->type == METRIC_HISTOGRAM)
		return;
	if (f->type == METRIC_COUNTER && !(v >= 0))
		return;
	metrics_family_update(f, label_values, OP_ADD, v);
}

void metric_set(struct metric_family *f, const char *const *label_values, double v)
{
	if (f && f->type == METRIC_GAUGE)
		metrics_family_update(f, label_values, OP_SET, v);
}

void metric_set_counter(struct metric_family *f, const char *const *label_values, double v)
{
	if (f && f->type == METRIC_COUNTER)
		metrics_family_update(f, label_values, OP_RAISE, v);
}

void metric_observe(struct metric_family *f, const char *const *label_values, double v)
{
	if (f && f->type == METRIC_HISTOGRAM)
		metrics_family_update(f, label_values, OP_OBSERVE, v);
}

/* ---- removal -------------------------------------------------------------- */

/* Takes 's' out of the index and onto the retired list; taking it out of
 * f->list is the caller's part. Called with f->lock held. */
static void family_retire(struct metric_family *f, struct series *s)
{
	hashmap_remove(&f->index, hashmap_find(&f->index, s->hash, series_is, s));
	s->retired_next = f->retired;
	f->retired = s;
}

/* Frees the series retired from 'f'. Only a render reads series outside
 * f->lock, and only while it holds the render lock, so the caller holds the
 * render lock and has no render snapshot of its own alive. */
void metrics_family_reap(struct metric_family *f)
{
	struct series *s, *next;

	pthread_mutex_lock(&f->lock);
	s = f->retired;
	f->retired = NULL;
	pthread_mutex_unlock(&f->lock);
	for (; s; s = next) {
		next = s->retired_next;
		free(s);
	}
}

/* Reaps 'f' now unless a render is running, perhaps our own caller's (a
 * removal from a collect callback). That render reaps when it ends, or the
 * next one does if this one has already reaped: the retired list holds no
 * more than what was removed while about one render ran. */
static void family_reap_if_idle(struct metric_family *f)
{
	struct metrics *m = f->owner;

	if (pthread_mutex_trylock(&m->render_lock) != 0)
		return;
	metrics_family_reap(f);
	pthread_mutex_unlock(&m->render_lock);
}

void metric_remove(struct metric_family *f, const char *const *label_values)
{
	struct series **e, *s = NULL;
	uint64_t h;
	size_t i;

	if (f == NULL || f->nlabels == 0)
		return;
	h = values_hash(f, label_values);
	pthread_mutex_lock(&f->lock);
	e = family_find(f, h, label_values);
	if (e) {
		s = *e;
		hashmap_remove(&f->index, e);
		s->retired_next = f->retired;
		f->retired = s;
		for (i = 0; f->list[i] != s; i++)
			;
		memmove(&f->list[i], &f->list[i + 1], (f->nseries - i - 1) * sizeof(*f->list));
		f->nseries--;
	}
	pthread_mutex_unlock(&f->lock);
	if (s)
		family_reap_if_idle(f);
}

void metric_sweep_begin(struct metric_family *f)
{
	if (f == NULL || f->nlabels == 0)
		return;
	pthread_mutex_lock(&f->lock);
	f->gen++;
	f->sweeping = true;
	pthread_mutex_unlock(&f->lock);
}

void metric_sweep_end(struct metric_family *f)
{
	size_t kept = 0;
	bool removed = false;

	if (f == NULL || f->nlabels == 0)
		return;
	pthread_mutex_lock(&f->lock);
	if (f->sweeping) {
		for (size_t i = 0; i < f->nseries; i++) {
			struct series *s = f->list[i];

			if (s->gen == f->gen)
				f->list[kept++] = s;
			else
				family_retire(f, s);
		}
		removed = kept < f->nseries;
		f->nseries = kept;
		f->sweeping = false;
	}
	pthread_mutex_unlock(&f->lock);
	if (removed)
		family_reap_if_idle(f);
}

/* ---- registration --------------------------------------------------------- */

static void family_free(struct metric_family *f)
{
	struct series *s, *next;

	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nseries; i++)
		free(f->list[i]);
	for (s = f->retired; s; s = next) {
		next = s->retired_next;
		free(s);
	}
	free(f->only);
	free(f->list);
	hashmap_release(&f->index);
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->label_names[i]);
	free(f->label_names);
	free(f->bounds);
	free(f->help);
	free(f->name);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static struct metric_family *family_new(enum metric_type type, const char *name, const char *help,
					size_t nlabels, const char *const *label_names,
					const double *bounds, size_t nbounds)
{
	struct metric_family *f;

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		return NULL;
	}
	hashmap_init(&f->index, sizeof(struct series *));
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (f->name == NULL || f->help == NULL)
		goto out_free;
	if (nlabels) {
		f->label_names = calloc(nlabels, sizeof(char *));
		if (f->label_names == NULL)
			goto out_free;
		f->nlabels = nlabels;
		for (size_t i = 0; i < nlabels; i++) {
			f->label_names[i] = strdup(label_names[i]);
			if (f->label_names[i] == NULL)
				goto out_free;
		}
	}
	if (nbounds) {
		f->bounds = malloc(nbounds * sizeof(double));
		if (f->bounds == NULL)
			goto out_free;
		memcpy(f->bounds, bounds, nbounds * sizeof(double));
		f->nbounds = nbounds;
	}
	/* a label-less family has its one series from the start, so it renders */
	if (nlabels == 0) {
		f->only = series_new(f, 0, NULL);
		if (f->only == NULL)
			goto out_free;
	}
	return f;

out_free:
	family_free(f);
	return NULL;
}

/* Called with m->lock held. */
bool metrics_name_taken(const struct metrics *m, const char *name)
{
	if (m->dropped && strcmp(m->dropped->name, name) == 0)
		return true;
	for (const struct metric_family *f = m->families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return true;
	return false;
}

static struct metric_family *metrics_register(struct metrics *m, enum metric_type type,
					      const char *name, const char *help, size_t nlabels,
					      const char *const *label_names, const double *bounds,
					      size_t nbounds)
{
	struct metric_family *f;

	if (m == NULL || !name_valid(name, true) || !label_names_valid(type, nlabels, label_names))
		return NULL;
	if (nbounds && bounds == NULL)
		return NULL;
	if (nbounds && isinf(bounds[nbounds - 1]) && bounds[nbounds - 1] > 0)
		nbounds--; /* +Inf is always there */
	for (size_t i = 0; i < nbounds; i++)
		if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
			return NULL;

	f = family_new(type, name, help, nlabels, label_names, bounds, nbounds);
	if (f == NULL)
		return NULL;
	f->owner = m;

	pthread_mutex_lock(&m->lock);
	if (metrics_name_taken(m, name)) {
		pthread_mutex_unlock(&m->lock);
		family_free(f);
		return NULL;
	}
	*m->families_tail = f;
	m->families_tail = &f->next;
	pthread_mutex_unlock(&m->lock);
	return f;
}

struct metric_family *metrics_counter(struct metrics *m, const char *name, const char *help,
				      size_t nlabels, const char *const *label_names)
{
	return metrics_register(m, METRIC_COUNTER, name, help, nlabels, label_names, NULL, 0);
}

struct metric_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
				    size_t nlabels, const char *const *label_names)
{
	return metrics_register(m, METRIC_GAUGE, name, help, nlabels, label_names, NULL, 0);
}

struct metric_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
					size_t nlabels, const char *const *label_names,
					const double *bounds, size_t nbounds)
{
	return metrics_register(m, METRIC_HISTOGRAM, name, help, nlabels, label_names, bounds,
				nbounds);
}

struct metrics *metrics_create(void)
{
	static const char *const family_label[] = {"family"};
	struct metrics *m;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	if (pthread_mutex_init(&m->lock, NULL) != 0)
		goto out_free;
	if (pthread_mutex_init(&m->render_lock, NULL) != 0)
		goto out_destroy_lock;
	m->families_tail = &m->families;
	m->collectors_tail = &m->collectors;
	/* kept off the family list: it is rendered last */
	m->dropped = family_new(METRIC_COUNTER, METRICS_DROPPED_NAME,
				"Label sets dropped because their family reached the series "
				"limit or a label value was not valid UTF-8.",
				1, family_label, NULL, 0);
	if (m->dropped == NULL)
		goto out_destroy_render_lock;
	m->dropped->owner = m;
	return m;

out_destroy_render_lock:
	pthread_mutex_destroy(&m->render_lock);
out_destroy_lock:
	pthread_mutex_destroy(&m->lock);
out_free:
	free(m);
	return NULL;
}

void metrics_destroy(struct metrics *m)
{
	struct metric_family *f, *fnext;
	struct collector *c, *cnext;

	if (m == NULL)
		return;
	for (f = m->families; f; f = fnext) {
		fnext = f->next;
		family_free(f);
	}
	family_free(m->dropped);
	for (c = m->collectors; c; c = cnext) {
		cnext = c->next;
		free(c);
	}
	pthread_mutex_destroy(&m->render_lock);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

enum mn_err metrics_on_collect(struct metrics *m, metrics_collect_fn fn, void *ctx)
{
	struct collector *c;

	if (m == NULL || fn == NULL)
		return MN_INVALID;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return MN_NOMEM;
	c->fn = fn;
	c->ctx = ctx;
	pthread_mutex_lock(&m->lock);
	*m->collectors_tail = c;
	m->collectors_tail = &c->next;
	m->ncollectors++;
	pthread_mutex_unlock(&m->lock);
	return MN_OK;
}
