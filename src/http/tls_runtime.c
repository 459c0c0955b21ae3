#include "http/tls_runtime.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What civetweb 1.15, built as Debian builds it (OPENSSL_API_1_1), looks
 * up in each handle and cannot do without (its ssl_sw[] and crypto_sw[]
 * entries marked TLS_Mandatory, src/openssl_dl.inl): one missing and its
 * TLS is off. The shim's own function comes first. */
static const char *const ssl_functions[] = {
	"SSL_get_peer_certificate",
	"SSL_free",
	"SSL_accept",
	"SSL_connect",
	"SSL_read",
	"SSL_write",
	"SSL_get_error",
	"SSL_set_fd",
	"SSL_new",
	"SSL_CTX_new",
	"TLS_server_method",
	"OPENSSL_init_ssl",
	"SSL_CTX_use_PrivateKey_file",
	"SSL_CTX_use_certificate_file",
	"SSL_CTX_set_default_passwd_cb",
	"SSL_CTX_free",
	"SSL_CTX_use_certificate_chain_file",
	"TLS_client_method",
	"SSL_pending",
	"SSL_CTX_set_verify",
	"SSL_shutdown",
	"SSL_CTX_load_verify_locations",
	"SSL_CTX_set_default_verify_paths",
	"SSL_CTX_set_verify_depth",
	"SSL_get_version",
	"SSL_get_current_cipher",
	"SSL_CIPHER_get_name",
	"SSL_CTX_check_private_key",
	"SSL_CTX_set_session_id_context",
	"SSL_CTX_ctrl",
	"SSL_CTX_set_cipher_list",
	"SSL_CTX_set_options",
	"SSL_CTX_set_info_callback",
	"SSL_get_ex_data",
	"SSL_set_ex_data",
	"SSL_CTX_callback_ctrl",
	"SSL_get_servername",
	"SSL_set_SSL_CTX",
	"SSL_ctrl",
	"SSL_CTX_set_timeout",
};

static const char *const crypto_functions[] = {
	"ERR_get_error",
	"ERR_error_string",
	"CONF_modules_unload",
	"X509_free",
	"X509_get_subject_name",
	"X509_get_issuer_name",
	"X509_NAME_oneline",
	"X509_get_serialNumber",
	"EVP_get_digestbyname",
	"EVP_Digest",
	"i2d_X509",
	"BN_bn2hex",
	"ASN1_INTEGER_to_BN",
	"BN_free",
	"CRYPTO_free",
	"ERR_clear_error",
};

/* One shim: the bare name civetweb opens, the file it is in, and the
 * functions civetweb finds through it. */
struct shim {
	const char *name;
	const char *const *functions;
	size_t nfunctions;
};

static const struct shim shims[] = {
	/* libcrypto first: the libssl shim's libssl.so.3 needs it anyway, and
	 * civetweb opens it first too. */
	{"libcrypto.so", crypto_functions, sizeof(crypto_functions) / sizeof(crypto_functions[0])},
	{"libssl.so", ssl_functions, sizeof(ssl_functions) / sizeof(ssl_functions[0])},
};

#define NSHIMS (sizeof(shims) / sizeof(shims[0]))

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool loaded;
/* The shims' handles, kept (never closed) once loading succeeded. */
static void *handles[NSHIMS];

enum mn_err tls_runtime_shim_dir(const char *compiled_dir, char *out, size_t outlen, char *err,
				 size_t errlen)
{
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;
	int len;

	if (outlen == 0)
		return mn_error(err, errlen, MN_TOO_LARGE,
				"tls runtime: no room for the shim directory");
	if (compiled_dir && compiled_dir[0]) {
		len = snprintf(out, outlen, "%s", compiled_dir);
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0)
			return mn_error(err, errlen, MN_IO,
					"tls runtime: cannot read '/proc/self/exe': %s",
					strerror(errno));
		if ((size_t)n >= sizeof(exe) - 1)
			return mn_error(
				err, errlen, MN_TOO_LARGE,
				"tls runtime: the executable's path is longer than %zu bytes",
				sizeof(exe) - 2);
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash == NULL)
			return mn_error(err, errlen, MN_IO,
					"tls runtime: the executable's path '%s' is not absolute",
					exe);
		*slash = '\0';
		len = snprintf(out, outlen, "%s/tls", exe);
	}
	if (len < 0 || (size_t)len >= outlen || len > TLS_RUNTIME_DIR_MAX)
		return mn_error(err, errlen, MN_TOO_LARGE,
				"tls runtime: the shim directory's path is longer than %zu bytes",
				outlen - 1 < TLS_RUNTIME_DIR_MAX ? outlen - 1
								 : (size_t)TLS_RUNTIME_DIR_MAX);
	return MN_OK;
}

/* Loads one shim from 'path' and checks it is what civetweb's bare-name
 * dlopen will return, with every function civetweb needs. */
static enum mn_err shim_load(const struct shim *shim, const char *path, void **handle, char *err,
			     size_t errlen)
{
	void *h, *found;
	const char *why;

	h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL) {
		why = dlerror();
		return mn_error(err, errlen, MN_IO, "tls runtime: cannot load '%s': %s", path,
				why ? why : "unknown dlopen error");
	}
	/* Asking for the bare name when no object of that SONAME is loaded
	 * would search the disk, find libssl-dev's link to OpenSSL 3 itself
	 * and bind the name to it for the rest of the process: only a shim
	 * is asked about. */
	if (dlsym(h, "meshnode_tls_shim") == NULL) {
		dlclose(h);
		return mn_error(err, errlen, MN_IO, "tls runtime: '%s' is not meshnode's %s shim",
				path, shim->name);
	}
	/* What civetweb's dlopen(name) will get: glibc answers a bare name
	 * with the first object loaded under that SONAME, or that an earlier
	 * dlopen of the name found on disk (libssl-dev's link). */
	found = dlopen(shim->name, RTLD_NOW | RTLD_NOLOAD);
	if (found != h) {
		if (found)
			dlclose(found);
		dlclose(h);
		return mn_error(err, errlen, MN_IO,
				"tls runtime: dlopen(\"%s\") does not answer with '%s' (another "
				"object answers that name: loaded or looked up before the shims)",
				shim->name, path);
	}
	dlclose(found);
	for (size_t i = 0; i < shim->nfunctions; i++) {
		dlerror();
		if (dlsym(h, shim->functions[i]) == NULL) {
			dlclose(h);
			return mn_error(
				err, errlen, MN_IO,
				"tls runtime: '%s' (%s) lacks '%s', which civetweb needs for TLS",
				path, shim->name, shim->functions[i]);
		}
	}
	*handle = h;
	return MN_OK;
}

enum mn_err tls_runtime_load(const char *dir, char *err, size_t errlen)
{
	char path[TLS_RUNTIME_DIR_MAX + 32];
	void *opened[NSHIMS] = {NULL};
	enum mn_err e = MN_OK;
	size_t i;

	if (atomic_load(&loaded))
		return MN_OK;
	if (dir == NULL || dir[0] != '/')
		return mn_error(err, errlen, MN_INVALID,
				"tls runtime: the shim directory '%s' is not an absolute path",
				dir ? dir : "");
	if (strlen(dir) > TLS_RUNTIME_DIR_MAX)
		return mn_error(err, errlen, MN_TOO_LARGE,
				"tls runtime: the shim directory's path is longer than %d bytes",
				TLS_RUNTIME_DIR_MAX);

	pthread_mutex_lock(&load_lock);
	if (atomic_load(&loaded))
		goto out_unlock;
	for (i = 0; i < NSHIMS; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, shims[i].name);
		e = shim_load(&shims[i], path, &opened[i], err, errlen);
		if (e != MN_OK)
			goto out_close_opened;
	}
	memcpy(handles, opened, sizeof(handles));
	atomic_store(&loaded, true);
	goto out_unlock;

out_close_opened:
	/* Nothing stays behind: a later call with the right directory must not
	 * find a copy of this one answering the bare names. */
	while (i-- > 0)
		dlclose(opened[i]);
out_unlock:
	pthread_mutex_unlock(&load_lock);
	return e;
}

bool tls_runtime_loaded(void)
{
	return atomic_load(&loaded);
}
