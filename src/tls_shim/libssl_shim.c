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
#include <dlfcn.h>

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

/* The service port reads ahead (connect_tls_setup: SSL_CTX_set_read_ahead):
 * OpenSSL then takes a whole TLS record, or several, in one read() where
 * it would make two (the 5-byte header, then the rest), a system call
 * less for every request on a kept-alive connection. civetweb 1.15 was
 * not written for it: pull_inner() asks SSL_pending() whether to call
 * SSL_read() at once or to poll() the socket first, and SSL_pending()
 * counts only the bytes of a record already decrypted. Bytes read ahead,
 * a whole record among them (a client that writes its headers and its
 * body in two records, sent together), are no longer in the socket, and
 * the poll would wait for them until the request's timeout. So civetweb's
 * SSL_pending (its dlsym finds this one first; every other caller in the
 * process is bound to libssl.so.3's, loaded before this object) also
 * opens the next record when bytes wait in OpenSSL's buffer: SSL_peek
 * decrypts it without a system call when it is whole, and answers "want
 * read" after one read() that finds nothing when it is not, its rest
 * still to come on the socket, which civetweb then polls. A peek that
 * fails otherwise (an alert, a close) answers 1: civetweb's SSL_read
 * meets the same error and ends the connection as it would have. */
static int (*real_pending)(const SSL *);

__attribute__((constructor)) static void pending_resolve(void)
{
	real_pending = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_pending");
}

int SSL_pending(const SSL *ssl)
{
	int n;
	char c;

	if (real_pending == NULL)
		return 0; /* not reached: libssl.so.3 is this object's dependency */
	n = real_pending(ssl);
	if (n > 0 || !SSL_has_pending(ssl))
		return n;
	n = SSL_peek((SSL *)ssl, &c, 1);
	if (n > 0)
		return real_pending(ssl);
	switch (SSL_get_error(ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: return 0;
	default: return 1;
	}
}
