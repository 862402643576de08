/* tls.h -- TLS termination: the only module that knows SSL_CTX. TLS 1.2 and
 * 1.3 only, modern ciphers, ALPN http/1.1, certificates reloaded on SIGHUP. */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

struct config;
struct tls;
struct event_base;
struct bufferevent;

/* Load --tls-cert and --tls-key. NULL (after logging why) on failure. */
struct tls *tls_new(const struct config *cfg);
void tls_free(struct tls *t);

/* Load the files again; on failure keep serving the old certificate.
 * Connections already open keep the context they started with. */
int tls_reload(struct tls *t);

/* A bufferevent that runs the server side of a TLS handshake on fd (taken
 * over). NULL on failure (fd is then closed). */
struct bufferevent *tls_bufferevent(struct tls *t, struct event_base *base, int fd);

/* For a lingering close: 1 if bev is TLS (then there is no half-close to
 * make; the close_notify goes out when it is freed), 0 for plain TCP. */
int tls_is_tls(struct bufferevent *bev);

#endif
