/* The libcrypto.so shim (docs/connect.md, "TLS runtime"): a shared object
 * whose SONAME is "libcrypto.so", with libcrypto.so.3 as its one library.
 *
 * civetweb 1.15 looks its libcrypto functions up with
 * dlopen("libcrypto.so") and dlsym on that handle. Once this object is
 * loaded (by absolute path, before civetweb initializes TLS) that dlopen
 * returns it, and dlsym finds every function in libcrypto.so.3, its
 * dependency, without the libssl-dev link. It defines nothing else.
 *
 * Built outside libmeshnode.a (the Makefile's SHIM rules). */

/* Says to tls_runtime.c that the object answering "libcrypto.so" is this
 * one. */
extern const char meshnode_tls_shim[];
const char meshnode_tls_shim[] = "meshnode libcrypto.so shim";
