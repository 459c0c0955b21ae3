/* The libssl.so shim (docs/connect.md, "TLS runtime"): a shared object
 * whose SONAME is "libssl.so", with libssl.so.3 as its one library.
 *
 * Debian 12's civetweb 1.15 loads OpenSSL at run time with
 * dlopen("libssl.so") and looks every function up in that handle, among
 * them SSL_get_peer_certificate, which OpenSSL 3 no longer exports (it is
 * a macro for SSL_get1_peer_certificate). Loaded by absolute path before
 * civetweb initializes TLS, this object is what that dlopen returns
 * (glibc matches an already loaded object by SONAME), and dlsym on it
 * finds the function below first and everything else in libssl.so.3, its
 * dependency. No libssl-dev (the unversioned libssl.so link) is needed
 * at run time.
 *
 * Built outside libmeshnode.a (the Makefile's SHIM rules), never linked
 * into the binary. */
#include <openssl/ssl.h>

/* Says to tls_runtime.c that the object answering "libssl.so" is this one. */
extern const char meshnode_tls_shim[];
const char meshnode_tls_shim[] = "meshnode libssl.so shim";

#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *ssl);

/* OpenSSL 1.1's SSL_get_peer_certificate and 3's SSL_get1_peer_certificate
 * have the same contract: a new reference, which the caller frees
 * (civetweb does, with X509_free, when the connection ends). */
X509 *SSL_get_peer_certificate(const SSL *ssl)
{
	return SSL_get1_peer_certificate(ssl);
}
