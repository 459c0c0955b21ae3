/* Running a piece of a test on a thread with a small stack, as civetweb
 * gives its workers (100 KiB in Debian's build), so code that recursed on
 * outside input would crash the test instead of passing on the main
 * thread's 8 MiB. Header-only, for the test programs. */
#ifndef MESHNODE_TESTS_SMALL_STACK_H
#define MESHNODE_TESTS_SMALL_STACK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_STACK_BYTES (100u * 1024u)

/* Runs fn(arg) on a new thread with a SMALL_STACK_BYTES stack and waits
 * for it; false when the thread could not be started. */
static inline bool small_stack_run(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	bool ok;

	if (pthread_attr_init(&attr) != 0)
		return false;
	ok = pthread_attr_setstacksize(&attr, SMALL_STACK_BYTES) == 0 &&
	     pthread_create(&t, &attr, fn, arg) == 0;
	pthread_attr_destroy(&attr);
	if (ok)
		pthread_join(t, NULL);
	return ok;
}

/* 'n' bytes of '[' (not NUL-terminated; free with free()). */
static inline char *small_stack_brackets(size_t n)
{
	char *s = malloc(n ? n : 1);

	if (s)
		memset(s, '[', n);
	return s;
}

#endif
