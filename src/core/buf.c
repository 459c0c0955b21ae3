#include "core/buf.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
}

void buf_release(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

/* Makes room for 'extra' more bytes plus the terminating NUL. */
static enum mn_err buf_grow(struct buf *b, size_t extra)
{
	size_t need, alloc;
	char *p;

	if (extra > b->cap || b->len > b->cap - extra) {
		buf_release(b);
		return MN_TOO_LARGE;
	}
	need = b->len + extra + 1;
	if (need <= b->alloc)
		return MN_OK;
	alloc = b->alloc ? b->alloc : 64;
	while (alloc < need)
		alloc *= 2;
	if (b->cap < SIZE_MAX && alloc > b->cap + 1) /* SIZE_MAX: no cap */
		alloc = b->cap + 1;
	p = realloc(b->data, alloc);
	if (p == NULL) {
		buf_release(b);
		return MN_NOMEM;
	}
	b->data = p;
	b->alloc = alloc;
	return MN_OK;
}

enum mn_err buf_append(struct buf *b, const void *data, size_t len)
{
	enum mn_err err = buf_grow(b, len);

	if (err != MN_OK)
		return err;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return MN_OK;
}

char *buf_reserve(struct buf *b, size_t extra, enum mn_err *err)
{
	*err = buf_grow(b, extra);
	return *err == MN_OK ? b->data + b->len : NULL;
}

void buf_commit(struct buf *b, size_t n)
{
	b->len += n;
	b->data[b->len] = '\0';
}

enum mn_err buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

enum mn_err buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	size_t room = b->alloc > b->len ? b->alloc - b->len : 0;
	int n;
	enum mn_err err;

	va_copy(ap2, ap);
	n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return MN_INTERNAL;
	if ((size_t)n < room) {
		if ((size_t)n > b->cap - b->len) {
			buf_release(b);
			return MN_TOO_LARGE;
		}
		b->len += (size_t)n;
		return MN_OK;
	}
	err = buf_grow(b, (size_t)n);
	if (err != MN_OK)
		return err;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return MN_OK;
}

enum mn_err buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	enum mn_err err;

	va_start(ap, fmt);
	err = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return err;
}

char *buf_steal(struct buf *b, size_t *len)
{
	char *p = b->data;

	if (p == NULL)
		p = calloc(1, 1);
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}
