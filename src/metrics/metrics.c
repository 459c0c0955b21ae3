#include "metrics/metrics.h"
#include "core/array.h"
#include "core/hash.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

const double metrics_http_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t metrics_http_buckets_count =
	sizeof(metrics_http_buckets) / sizeof(metrics_http_buckets[0]);

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

static const char *const metric_type_names[] = {"counter", "gauge", "histogram"};

enum metric_op { OP_ADD, OP_SET, OP_RAISE, OP_OBSERVE };

/* One label set of a family, allocated with its bucket counts, value
 * pointers and value strings in the same block. Render reads the label values
 * without the family lock, so a removed series is not freed at once: it moves
 * to its family's retired list, freed under the render lock (family_reap()). */
struct series {
	uint64_t hash;
	double value;	   /* counter or gauge value, histogram sum */
	uint64_t count;	   /* histogram observations */
	uint64_t gen;	   /* the family's sweep generation at the last update */
	uint64_t *buckets; /* histogram: nbounds + 1 non-cumulative counts */
	char **values;	   /* nlabels strings */
	struct series *retired_next;
};

struct metric_family {
	struct metric_family *next;
	struct metrics *owner;
	enum metric_type type;
	char *name;
	char *help;
	size_t nlabels;
	char **label_names;
	double *bounds;
	size_t nbounds;

	pthread_mutex_t lock;  /* everything below, and every series' numbers */
	struct series *only;   /* the series of a label-less family */
	struct series **slots; /* open addressing, power-of-two size */
	size_t nslots;
	struct series **list; /* first-seen order */
	size_t nseries;
	size_t list_alloc;
	uint64_t gen;		/* bumped by metric_sweep_begin() */
	bool sweeping;		/* between metric_sweep_begin() and _end() */
	struct series *retired; /* removed, maybe still read by a render */
};

struct collector {
	struct collector *next;
	metrics_collect_fn fn;
	void *ctx;
};

struct process_metrics {
	struct metric_family *cpu;
	struct metric_family *rss;
	struct metric_family *vsize;
	struct metric_family *open_fds;
	struct metric_family *max_fds;
	struct metric_family *start_time;
	struct metric_family *threads;
};

struct metrics {
	pthread_mutex_t lock; /* the two lists */
	struct metric_family *families;
	struct metric_family **families_tail;
	struct collector *collectors;
	struct collector **collectors_tail;
	size_t ncollectors;
	pthread_mutex_t render_lock; /* one render (and collect) at a time */
	struct metric_family *dropped;
	struct process_metrics proc;
};

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
 * so ("ab","c") and ("a","bc") differ. */
static uint64_t values_hash(size_t n, const char *const *values)
{
	uint64_t h = HASH_START;

	for (size_t i = 0; i < n; i++)
		h = hash_byte(hash_str(h, label_value(values, i)), 0xff);
	return h;
}

static bool series_matches(const struct metric_family *f, const struct series *s, uint64_t h,
			   const char *const *values)
{
	if (s->hash != h)
		return false;
	for (size_t i = 0; i < f->nlabels; i++)
		if (strcmp(s->values[i], label_value(values, i)) != 0)
			return false;
	return true;
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

/* Puts 's' into a slot table of 'nslots' entries (power of two). */
static void slots_insert(struct series **slots, size_t nslots, struct series *s)
{
	size_t mask = nslots - 1;
	size_t i = (size_t)s->hash & mask;

	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = s;
}

/* Empties slot 'i' and puts the rest of its cluster back where a lookup
 * will find it: an entry past the hole may have probed over it. Linear
 * probing needs no tombstones this way, and a table at most half full
 * always has an empty slot to end the walk. */
static void slots_delete(struct series **slots, size_t nslots, size_t i)
{
	size_t mask = nslots - 1;

	slots[i] = NULL;
	for (i = (i + 1) & mask; slots[i]; i = (i + 1) & mask) {
		struct series *s = slots[i];

		slots[i] = NULL;
		slots_insert(slots, nslots, s);
	}
}

/* Makes room for one more series (load factor at most 1/2). */
static bool family_reserve(struct metric_family *f)
{
	if (!array_reserve(&f->list, &f->list_alloc, f->nseries, sizeof(*f->list), 16))
		return false;
	if ((f->nseries + 1) * 2 > f->nslots) {
		size_t nslots = f->nslots ? f->nslots * 2 : 32;
		struct series **slots = calloc(nslots, sizeof(*slots));

		if (slots == NULL)
			return false;
		for (size_t i = 0; i < f->nseries; i++)
			slots_insert(slots, nslots, f->list[i]);
		free(f->slots);
		f->slots = slots;
		f->nslots = nslots;
	}
	return true;
}

/* The series of 'values' in a labelled family and its slot in *slot, or
 * NULL. Called with f->lock held. */
static struct series *family_find(const struct metric_family *f, uint64_t h,
				  const char *const *values, size_t *slot)
{
	struct series *s;
	size_t mask;

	if (f->nslots == 0)
		return NULL;
	mask = f->nslots - 1;
	for (size_t i = (size_t)h & mask; (s = f->slots[i]) != NULL; i = (i + 1) & mask) {
		if (series_matches(f, s, h, values)) {
			*slot = i;
			return s;
		}
	}
	return NULL;
}

/* The series of 'values', created if new. NULL when the label set must be
 * dropped (*dropped set) or memory runs out. Called with f->lock held. */
static struct series *family_series(struct metric_family *f, uint64_t h, const char *const *values,
				    bool *dropped)
{
	struct series *s;
	size_t i;

	if (f->nlabels == 0)
		return f->only;
	s = family_find(f, h, values, &i);
	if (s)
		return s;

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
	slots_insert(f->slots, f->nslots, s);
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

static void family_update(struct metric_family *f, const char *const *values, enum metric_op op,
			  double v)
{
	struct series *s;
	uint64_t h = f->nlabels ? values_hash(f->nlabels, values) : 0;
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

		family_update(f->owner->dropped, &name, OP_ADD, 1);
	}
}

void metric_inc(struct metric_family *f, const char *const *label_values)
{
	if (f && f->type != METRIC_HISTOGRAM)
		family_update(f, label_values, OP_ADD, 1);
}

void metric_add(struct metric_family *f, const char *const *label_values, double v)
{
	if (f == NULL || f->type == METRIC_HISTOGRAM)
		return;
	if (f->type == METRIC_COUNTER && !(v >= 0))
		return;
	family_update(f, label_values, OP_ADD, v);
}

void metric_set(struct metric_family *f, const char *const *label_values, double v)
{
	if (f && f->type == METRIC_GAUGE)
		family_update(f, label_values, OP_SET, v);
}

void metric_set_counter(struct metric_family *f, const char *const *label_values, double v)
{
	if (f && f->type == METRIC_COUNTER)
		family_update(f, label_values, OP_RAISE, v);
}

void metric_observe(struct metric_family *f, const char *const *label_values, double v)
{
	if (f && f->type == METRIC_HISTOGRAM)
		family_update(f, label_values, OP_OBSERVE, v);
}

/* ---- removal -------------------------------------------------------------- */

/* Where 's', which is in the table, sits in f->slots. */
static size_t family_slot_of(const struct metric_family *f, const struct series *s)
{
	size_t mask = f->nslots - 1;
	size_t i = (size_t)s->hash & mask;

	while (f->slots[i] != s)
		i = (i + 1) & mask;
	return i;
}

/* Takes 's' out of the table (it sits in 'slot') and onto the retired list;
 * taking it out of f->list is the caller's part. Called with f->lock held. */
static void family_retire(struct metric_family *f, struct series *s, size_t slot)
{
	slots_delete(f->slots, f->nslots, slot);
	s->retired_next = f->retired;
	f->retired = s;
}

/* Frees the series retired from 'f'. Only a render reads series outside
 * f->lock, and only while it holds the render lock, so the caller holds the
 * render lock and has no render snapshot of its own alive. */
static void family_reap(struct metric_family *f)
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
	family_reap(f);
	pthread_mutex_unlock(&m->render_lock);
}

void metric_remove(struct metric_family *f, const char *const *label_values)
{
	struct series *s;
	uint64_t h;
	size_t slot, i;

	if (f == NULL || f->nlabels == 0)
		return;
	h = values_hash(f->nlabels, label_values);
	pthread_mutex_lock(&f->lock);
	s = family_find(f, h, label_values, &slot);
	if (s) {
		family_retire(f, s, slot);
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
				family_retire(f, s, family_slot_of(f, s));
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
	free(f->slots);
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
static bool name_taken(const struct metrics *m, const char *name)
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
	if (name_taken(m, name)) {
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

/* ---- rendering ------------------------------------------------------------ */

/* A buf writer whose first error sticks: once buf has failed (and freed its
 * content) nothing more is appended. */
struct writer {
	struct buf *out;
	enum mn_err err;
};

static void w_put(struct writer *w, const char *s, size_t len)
{
	if (w->err == MN_OK && len)
		w->err = buf_append(w->out, s, len);
}

static void w_puts(struct writer *w, const char *s)
{
	w_put(w, s, strlen(s));
}

/* Appends 's' with '\\' and '\n' escaped, and '"' too when 'quote'. */
static void w_escaped(struct writer *w, const char *s, bool quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (esc) {
			w_put(w, run, (size_t)(s - run));
			w_put(w, esc, 2);
			run = s + 1;
		}
	}
	w_put(w, run, (size_t)(s - run));
}

/* The shortest %g form that reads back as 'v' (Go's FormatFloat 'g', -1). */
static void fmt_shortest(char *out, size_t len, double v)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

static void fmt_special(char *out, size_t len, double v)
{
	snprintf(out, len, "%s", isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
}

/* A sample value: integers without exponent or decimals, else shortest. */
static void fmt_value(char *out, size_t len, double v)
{
	if (!isfinite(v))
		fmt_special(out, len, v);
	else if (v == 0)
		snprintf(out, len, "0"); /* not "-0" */
	else if (v == trunc(v) && fabs(v) < 1e15)
		snprintf(out, len, "%.0f", v);
	else
		fmt_shortest(out, len, v);
}

static void fmt_le(char *out, size_t len, double v)
{
	if (!isfinite(v))
		fmt_special(out, len, v);
	else
		fmt_shortest(out, len, v);
}

/* name{l1="v1",...[,le="x"]} value\n */
static void w_sample(struct writer *w, const struct metric_family *f, const char *suffix,
		     const struct series *s, const char *le, const char *value)
{
	w_puts(w, f->name);
	w_puts(w, suffix);
	if (f->nlabels || le) {
		w_put(w, "{", 1);
		for (size_t i = 0; i < f->nlabels; i++) {
			if (i)
				w_put(w, ",", 1);
			w_puts(w, f->label_names[i]);
			w_put(w, "=\"", 2);
			w_escaped(w, s->values[i], true);
			w_put(w, "\"", 1);
		}
		if (le) {
			w_puts(w, f->nlabels ? ",le=\"" : "le=\"");
			w_puts(w, le);
			w_put(w, "\"", 1);
		}
		w_put(w, "}", 1);
	}
	w_put(w, " ", 1);
	w_puts(w, value);
	w_put(w, "\n", 1);
}

/* What render copies under the family lock. */
struct sample {
	const struct series *s;
	double value;
	uint64_t count;
};

static void family_render(struct writer *w, struct metric_family *f)
{
	size_t nb = f->type == METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
	struct sample *snap = NULL;
	uint64_t *buckets = NULL;
	size_t n;
	char num[64], le[64];

	if (w->err != MN_OK)
		return;
	w_puts(w, "# HELP ");
	w_puts(w, f->name);
	w_put(w, " ", 1);
	w_escaped(w, f->help, false);
	w_puts(w, "\n# TYPE ");
	w_puts(w, f->name);
	w_put(w, " ", 1);
	w_puts(w, metric_type_names[f->type]);
	w_put(w, "\n", 1);

	/* Allocate outside the lock, copy the numbers inside it. Series may
	 * come and go in between: take the first of those there are then, as
	 * many as were allocated for. A series removed after the copy stays
	 * readable: it is retired, and freed only once this render is over. */
	pthread_mutex_lock(&f->lock);
	n = f->only ? 1 : f->nseries;
	pthread_mutex_unlock(&f->lock);
	if (n == 0)
		return;
	snap = calloc(n, sizeof(*snap));
	if (nb)
		buckets = calloc(n * nb, sizeof(*buckets));
	if (snap == NULL || (nb && buckets == NULL)) {
		w->err = MN_NOMEM;
		goto out_free;
	}
	pthread_mutex_lock(&f->lock);
	if (!f->only && f->nseries < n)
		n = f->nseries;
	for (size_t i = 0; i < n; i++) {
		const struct series *s = f->only ? f->only : f->list[i];

		snap[i].s = s;
		snap[i].value = s->value;
		snap[i].count = s->count;
		if (nb)
			memcpy(buckets + i * nb, s->buckets, nb * sizeof(*buckets));
	}
	pthread_mutex_unlock(&f->lock);

	for (size_t i = 0; i < n && w->err == MN_OK; i++) {
		const struct series *s = snap[i].s;
		uint64_t cum = 0;

		if (f->type != METRIC_HISTOGRAM) {
			fmt_value(num, sizeof(num), snap[i].value);
			w_sample(w, f, "", s, NULL, num);
			continue;
		}
		for (size_t b = 0; b < nb; b++) {
			cum += buckets[i * nb + b];
			if (b < f->nbounds)
				fmt_le(le, sizeof(le), f->bounds[b]);
			else
				snprintf(le, sizeof(le), "+Inf");
			snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
			w_sample(w, f, "_bucket", s, le, num);
		}
		fmt_value(num, sizeof(num), snap[i].value);
		w_sample(w, f, "_sum", s, NULL, num);
		snprintf(num, sizeof(num), "%llu", (unsigned long long)snap[i].count);
		w_sample(w, f, "_count", s, NULL, num);
	}

out_free:
	free(buckets);
	free(snap);
}

static void metrics_collect(struct metrics *m)
{
	struct collector *c;
	size_t n;

	/* Collectors are only appended and never freed before the registry,
	 * so the first n can be walked without the lock, which the callbacks
	 * may need to register families. */
	pthread_mutex_lock(&m->lock);
	c = m->collectors;
	n = m->ncollectors;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n && c; i++, c = c->next)
		c->fn(m, c->ctx);
}

enum mn_err metrics_render(struct metrics *m, struct buf *out)
{
	struct writer w = {out, MN_OK};

	if (m == NULL || out == NULL)
		return MN_INVALID;
	pthread_mutex_lock(&m->render_lock);
	metrics_collect(m);
	pthread_mutex_lock(&m->lock);
	for (struct metric_family *f = m->families; f; f = f->next)
		family_render(&w, f);
	family_render(&w, m->dropped);
	/* no snapshot of this render is left: what was removed so far may go */
	for (struct metric_family *f = m->families; f; f = f->next)
		family_reap(f);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->render_lock);
	return w.err;
}

/* ---- process metrics ------------------------------------------------------ */

struct proc_stat {
	unsigned long utime, stime; /* clock ticks */
	long threads;
	unsigned long long starttime; /* clock ticks after boot */
	unsigned long vsize;	      /* bytes */
	long rss;		      /* pages */
};

static bool proc_read_stat(struct proc_stat *st)
{
	char line[1024];
	const char *p;
	FILE *fp;
	int n;

	fp = fopen("/proc/self/stat", "r");
	if (fp == NULL)
		return false;
	p = fgets(line, sizeof(line), fp);
	fclose(fp);
	if (p == NULL)
		return false;
	/* the command name may hold spaces and parentheses: skip to the last ')' */
	p = strrchr(line, ')');
	if (p == NULL)
		return false;
	n = sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld %*d "
		   "%llu %lu %ld",
		   &st->utime, &st->stime, &st->threads, &st->starttime, &st->vsize, &st->rss);
	return n == 6;
}

static bool proc_boot_time(double *out)
{
	char line[256];
	FILE *fp;
	bool found = false;
	unsigned long long btime;

	fp = fopen("/proc/stat", "r");
	if (fp == NULL)
		return false;
	while (fgets(line, sizeof(line), fp)) {
		if (sscanf(line, "btime %llu", &btime) == 1) {
			*out = (double)btime;
			found = true;
			break;
		}
	}
	fclose(fp);
	return found;
}

static long proc_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

static void proc_set(struct metric_family *f, double v)
{
	family_update(f, NULL, OP_SET, v);
}

static void process_collect(struct metrics *m, void *ctx)
{
	struct process_metrics *pm = ctx;
	struct proc_stat st;
	struct rlimit rl;
	long fds;
	double ticks = (double)sysconf(_SC_CLK_TCK);

	(void)m;
	if (proc_read_stat(&st)) {
		proc_set(pm->cpu, (double)(st.utime + st.stime) / ticks);
		proc_set(pm->rss, (double)st.rss * (double)sysconf(_SC_PAGESIZE));
		proc_set(pm->vsize, (double)st.vsize);
		proc_set(pm->threads, (double)st.threads);
	}
	fds = proc_open_fds();
	if (fds >= 0)
		proc_set(pm->open_fds, (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		proc_set(pm->max_fds,
			 rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

enum mn_err metrics_register_process(struct metrics *m)
{
	struct process_metrics *pm;
	struct proc_stat st;
	double boot;
	bool taken;

	if (m == NULL)
		return MN_INVALID;
	pm = &m->proc;
	pthread_mutex_lock(&m->lock);
	taken = name_taken(m, "process_cpu_seconds_total");
	pthread_mutex_unlock(&m->lock);
	if (taken)
		return MN_CONFLICT;
	if (!proc_read_stat(&st) || !proc_boot_time(&boot))
		return MN_IO;

	pm->cpu = metrics_counter(m, "process_cpu_seconds_total",
				  "Total user and system CPU time spent in seconds.", 0, NULL);
	if (pm->cpu == NULL)
		return MN_NOMEM;
	pm->rss = metrics_gauge(m, "process_resident_memory_bytes",
				"Resident memory size in bytes.", 0, NULL);
	pm->vsize = metrics_gauge(m, "process_virtual_memory_bytes",
				  "Virtual memory size in bytes.", 0, NULL);
	pm->open_fds =
		metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", 0, NULL);
	pm->max_fds = metrics_gauge(m, "process_max_fds",
				    "Maximum number of open file descriptors.", 0, NULL);
	pm->start_time =
		metrics_gauge(m, "process_start_time_seconds",
			      "Start time of the process since unix epoch in seconds.", 0, NULL);
	pm->threads = metrics_gauge(m, "process_threads", "Number of OS threads in the process.", 0,
				    NULL);
	if (!pm->rss || !pm->vsize || !pm->open_fds || !pm->max_fds || !pm->start_time ||
	    !pm->threads)
		return MN_NOMEM; /* the registered ones stay, harmless zeros */

	proc_set(pm->start_time, boot + (double)st.starttime / (double)sysconf(_SC_CLK_TCK));
	return metrics_on_collect(m, process_collect, pm);
}
