/* The OpenSSL runtime civetweb's TLS needs (docs/connect.md, "TLS runtime").
 *
 * Debian 12's civetweb 1.15 finds OpenSSL at run time by dlopen("libssl.so")
 * and dlopen("libcrypto.so"), names only libssl-dev provides, and looks up
 * SSL_get_peer_certificate, which OpenSSL 3 no longer exports; without it
 * TLS does not come up and the first TLS connection jumps to address 0.
 * This module loads the two shims meshnode ships (SONAMEs libssl.so and
 * libcrypto.so, linked to libssl.so.3 and libcrypto.so.3) by absolute
 * path, so that civetweb's dlopen calls return them and its lookups land
 * in OpenSSL 3. It never sees civetweb: http_server_tls_init() (server.h)
 * calls it, then initializes civetweb's TLS. */
#ifndef MESHNODE_HTTP_TLS_RUNTIME_H
#define MESHNODE_HTTP_TLS_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* The longest shim directory accepted (a file name is appended). */
#define TLS_RUNTIME_DIR_MAX 4000

/* The directory this binary's shims are in, into out[outlen]:
 * 'compiled_dir' when it is not empty (the installed binary's
 * $(LIBDIR)/meshnode, compiled in as MESHNODE_TLS_DIR), else "tls" next to
 * the running executable (/proc/self/exe), where the Makefile puts them for
 * build/meshnode. MN_TOO_LARGE when the path does not fit outlen or
 * TLS_RUNTIME_DIR_MAX, MN_IO when the executable's path cannot be read;
 * the reason in err. */
enum mn_err tls_runtime_shim_dir(const char *compiled_dir, char *out, size_t outlen, char *err,
				 size_t errlen);

/* Loads <dir>/libcrypto.so and <dir>/libssl.so (RTLD_NOW | RTLD_GLOBAL),
 * then checks what civetweb will do: dlopen("libssl.so") and
 * dlopen("libcrypto.so") must now return these very objects, and every
 * function civetweb 1.15 requires must resolve in them, the shim's
 * SSL_get_peer_certificate first. MN_OK when all of that holds; the shims
 * then stay loaded for the life of the process, and later calls return
 * MN_OK at once whatever 'dir' they name. Otherwise, with what is missing
 * in err ("tls runtime: cannot load '/usr/lib/meshnode/libssl.so': ..."):
 * MN_INVALID for a relative or empty dir, MN_TOO_LARGE for one over
 * TLS_RUNTIME_DIR_MAX, MN_IO for a shim that does not load, is not the
 * object the bare name finds, or lacks a function; nothing stays loaded,
 * and the call may be made again. Thread-safe. */
enum mn_err tls_runtime_load(const char *dir, char *err, size_t errlen);

/* Whether tls_runtime_load() has succeeded in this process. */
bool tls_runtime_loaded(void);

#endif
