/* The environment as config_load() reads it: one "NAME=value" entry a line.
 * CONSUL_HTTP_TOKEN_FILE names a file: its value here becomes the content
 * of a memfd and the variable points there, so no real file is read. A bad
 * value is an error (the node refuses to start), never a crash, and no
 * token ever reaches an error or a warning. */
#include <sys/mman.h>

#include "config/config.h"
#include "fuzz.h"
#include "fuzz_config.h"

#define ENV_MAX	       64
#define TOKEN_FILE_VAR "CONSUL_HTTP_TOKEN_FILE="

static int token_fd = -1;
static char token_var[80];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_logs();
	token_fd = memfd_create("token", MFD_CLOEXEC);
	FUZZ_CHECK(token_fd >= 0);
	snprintf(token_var, sizeof(token_var), "%s/proc/self/fd/%d", TOKEN_FILE_VAR, token_fd);
	return 0;
}

/* true when 'secret' (long enough not to occur by chance) shows in 'b'
 * without being part of a variable name that is shown on purpose. */
static bool leaked(const struct buf *b, const char *secret, char *const *env)
{
	if (strlen(secret) < 8 || b->data == NULL || !strstr(b->data, secret))
		return false;
	for (char *const *e = env; *e; e++)
		if (memmem(*e, strcspn(*e, "="), secret, strlen(secret)))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), *line = text;
	char *env[ENV_MAX + 1], *secrets[ENV_MAX];
	struct config_sources src = {.environ = env, .hostname = "fuzz-host"};
	struct buf errors, warnings;
	size_t n = 0, n_secrets = 0;

	FUZZ_CHECK(ftruncate(token_fd, 0) == 0);
	while (n < ENV_MAX && *line) {
		char *end = line + strcspn(line, "\n");
		bool last = *end == '\0';

		*end = '\0';
		if (strncmp(line, TOKEN_FILE_VAR, strlen(TOKEN_FILE_VAR)) == 0) {
			const char *content = line + strlen(TOKEN_FILE_VAR);
			size_t len = strlen(content);

			FUZZ_CHECK(ftruncate(token_fd, 0) == 0);
			FUZZ_CHECK(pwrite(token_fd, content, len, 0) == (ssize_t)len);
			secrets[n_secrets++] = line + strlen(TOKEN_FILE_VAR);
			env[n++] = token_var;
		} else {
			if (strncmp(line, "CONSUL_HTTP_TOKEN=", 18) == 0)
				secrets[n_secrets++] = line + 18;
			else if (strncmp(line, "MESHNODE_CONSUL_TOKEN=", 22) == 0)
				secrets[n_secrets++] = line + 22;
			env[n++] = line;
		}
		if (last)
			break;
		line = end + 1;
	}
	env[n] = NULL;

	fuzz_config_load(&src, &errors, &warnings);
	for (size_t i = 0; i < n_secrets; i++) {
		FUZZ_CHECK(!leaked(&errors, secrets[i], env));
		FUZZ_CHECK(!leaked(&warnings, secrets[i], env));
	}
	buf_release(&errors);
	buf_release(&warnings);
	free(text);
	return 0;
}
