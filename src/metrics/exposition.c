/* The Prometheus text exposition format (0.0.4): a render runs the
 * collect callbacks, then writes every family from a snapshot of its
 * numbers taken under the family's lock. */
#include "metrics_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const metric_type_names[] = {"counter", "gauge", "histogram"};

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
		metrics_family_reap(f);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->render_lock);
	return w.err;
}
