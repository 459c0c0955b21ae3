/* A growable byte buffer with a hard cap (libcurl's curlx_dyn with `toobig`).
 * Every buffer filled from outside input is one of these: past the cap an
 * append fails with MN_TOO_LARGE and the buffer is freed. The content is
 * always NUL-terminated (the NUL is not counted in len). */
#ifndef MESHNODE_CORE_BUF_H
#define MESHNODE_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/error.h"

struct buf {
	char *data;   /* NULL until the first append */
	size_t len;
	size_t alloc;
	size_t cap;   /* most bytes the buffer may ever hold */
};

/* Initialises an empty buffer that may grow up to 'cap' bytes. */
void buf_init(struct buf *b, size_t cap);

/* Frees the content; the buffer may be reused after buf_init(). */
void buf_release(struct buf *b);

/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);

/* Appends 'len' bytes. MN_TOO_LARGE (content freed) past the cap,
 * MN_NOMEM (content freed) when allocation fails. */
enum mn_err buf_append(struct buf *b, const void *data, size_t len);

/* Room to write up to 'extra' bytes in place (a read straight into the
 * buffer): returns where to write, or NULL with *err MN_TOO_LARGE past the
 * cap or MN_NOMEM (content freed in both cases). buf_commit() then adds the
 * 'n' <= extra bytes written. */
char *buf_reserve(struct buf *b, size_t extra, enum mn_err *err);
void buf_commit(struct buf *b, size_t n);

/* Appends a NUL-terminated string. */
enum mn_err buf_puts(struct buf *b, const char *s);

/* Appends formatted text. */
enum mn_err buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
enum mn_err buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Hands the content to the caller (new allocation, NUL-terminated, never NULL
 * on success) and leaves the buffer empty. NULL when allocation fails. */
char *buf_steal(struct buf *b, size_t *len);

#endif
