/* What every libFuzzer target shares: the entry points' prototypes, an
 * invariant check that aborts (libFuzzer saves the input that did it), and
 * exact-size copies of the input so ASan sees any read past the end.
 * Header-only, for the programs under tests/fuzz/. */
#ifndef MESHNODE_TESTS_FUZZ_H
#define MESHNODE_TESTS_FUZZ_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A NUL-terminated copy of data[0..size) in a block of exactly size + 1
 * bytes (free with free()). An embedded NUL ends the string early, as it
 * would for the C string the production code receives. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Records go nowhere: a target runs millions of inputs, and what the code
 * logs is not what is checked. */
static inline void fuzz_quiet_logs(void)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (fd >= 0)
		log_set_fd(fd);
	log_set_level(MN_LOG_ERROR);
}

#endif
