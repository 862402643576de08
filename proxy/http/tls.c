/* tls.c -- OpenSSL 3 contexts for libevent_openssl bufferevents */
#include "tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "xmalloc.h"

struct tls {
	const struct config *cfg;
	SSL_CTX *ctx;
};

static const char *ssl_error(void)
{
	static char buf[256]; /* only read right after the failing call */
	unsigned long e = ERR_get_error();
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return e ? buf : "unknown error";
}

/* Offer http/1.1 whatever the client lists: ferry speaks nothing else, and
 * a client that wants h2 only must fail the handshake rather than guess. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *context(const struct config *cfg)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		log_error("tls: %s", ssl_error());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* TLS 1.2: forward-secret AEAD suites only (1.3's defaults are all good) */
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
		log_error("tls: cannot load --tls-cert %s: %s", cfg->tls_cert, ssl_error());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		log_error("tls: cannot load --tls-key %s: %s", cfg->tls_key, ssl_error());
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls *tls_new(const struct config *cfg)
{
	if (!cfg->tls_cert || !cfg->tls_key) {
		log_error("tls: --tls-listen needs --tls-cert and --tls-key");
		return NULL;
	}
	SSL_CTX *ctx = context(cfg);
	if (!ctx)
		return NULL;
	struct tls *t = xcalloc(1, sizeof(*t));
	t->cfg = cfg;
	t->ctx = ctx;
	return t;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

int tls_reload(struct tls *t)
{
	SSL_CTX *ctx = context(t->cfg);
	if (!ctx) {
		log_warn("tls: reload failed; still serving the previous certificate");
		return -1;
	}
	SSL_CTX_free(t->ctx); /* open connections hold their own reference */
	t->ctx = ctx;
	log_info("tls: certificate reloaded from %s", t->cfg->tls_cert);
	return 0;
}

struct bufferevent *tls_bufferevent(struct tls *t, struct event_base *base, int fd)
{
	SSL *ssl = SSL_new(t->ctx);
	if (!ssl) {
		evutil_closesocket(fd);
		return NULL;
	}
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return NULL;
	}
	/* browsers often close without close_notify: that is an ordinary EOF */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

int tls_is_tls(struct bufferevent *bev)
{
	return bufferevent_openssl_get_ssl(bev) != NULL;
}
