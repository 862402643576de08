/* redis_conn.c -- a Redis connection on ferry's own bufferevent: hiredis for
 * RESP only (the formatter and the reader), libevent (and libevent_openssl)
 * for the bytes. hiredis 0.14's async context asserts on a push it has no
 * callback for (an smessage), has no TLS and no timeouts; this has none of
 * those limits and about the size of the part of async.c it replaces. */
#include "redis_conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xmalloc.h"

/* A reply not yet complete may hold at most this much unparsed input: more
 * is a server (or a man in the middle) gone wrong, and the connection is
 * dropped rather than grow without bound. Redis's own proto-max-bulk-len
 * is 512 MB; ferry's largest reply (a history read of --history-max
 * entries) is far below this. */
#define RCONN_MAX_UNPARSED (256u << 20)

struct pending {
	rconn_reply_fn *fn;
	void *priv;
	struct pending *next;
};

struct rconn {
	struct bufferevent *bev;
	redisReader *reader;
	const struct rconn_events *events;
	void *arg;
	struct pending *head, *tail;
	long npending;
	int connected;
	int push_mode;
	int depth; /* callbacks of ours running: the free waits for them */
	int dead;  /* closing: nothing more is sent or delivered */
	int tls;
	int starting; /* inside rconn_connect: a failure is returned, not reported */
	char why[256];
};

static void destroy(struct rconn *rc)
{
	if (rc->bev)
		bufferevent_free(rc->bev); /* the SSL goes with it (BEV_OPT_CLOSE_ON_FREE) */
	redisReaderFree(rc->reader);
	free(rc);
}

/* Leave a callback section; frees rc if it was closed meanwhile. Returns 1
 * if rc is gone. */
static int leave(struct rconn *rc)
{
	if (--rc->depth == 0 && rc->dead) {
		destroy(rc);
		return 1;
	}
	return 0;
}

static void fail_pending(struct rconn *rc)
{
	while (rc->head) {
		struct pending *p = rc->head;
		rc->head = p->next;
		rc->npending--;
		if (p->fn)
			p->fn(rc, NULL, p->priv);
		free(p);
	}
	rc->tail = NULL;
}

/* The connection broke: every pending command hears of it, then the owner. */
static void fail(struct rconn *rc, const char *why)
{
	if (rc->dead)
		return;
	rc->dead = 1;
	if (rc->bev)
		bufferevent_disable(rc->bev, EV_READ | EV_WRITE);
	rc->depth++;
	fail_pending(rc);
	if (rc->events->lost && !rc->starting)
		rc->events->lost(rc, why, rc->arg);
	leave(rc);
}

void rconn_free(struct rconn *rc)
{
	if (!rc || rc->dead)
		return;
	rc->dead = 1;
	if (rc->bev)
		bufferevent_disable(rc->bev, EV_READ | EV_WRITE);
	rc->depth++;
	fail_pending(rc);
	leave(rc);
}

static int push_shaped(const redisReply *r)
{
	static const char *const kinds[] = { "message",	    "smessage",	    "pmessage",
					     "subscribe",   "ssubscribe",   "psubscribe",
					     "unsubscribe", "sunsubscribe", "punsubscribe",
					     "pong" };
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcasecmp(r->element[0]->str, kinds[i]) == 0)
			return 1;
	return 0;
}

static void dispatch(struct rconn *rc, const redisReply *r)
{
	if (!rc->head || (rc->push_mode && push_shaped(r))) {
		if (rc->events->push)
			rc->events->push(rc, r, rc->arg);
		return;
	}
	struct pending *p = rc->head;
	rc->head = p->next;
	if (!rc->head)
		rc->tail = NULL;
	rc->npending--;
	if (p->fn)
		p->fn(rc, r, p->priv);
	free(p);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct rconn *rc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	rc->depth++;
	while (!rc->dead && evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_contiguous_space(in);
		if (redisReaderFeed(rc->reader, (const char *)evbuffer_pullup(in, (ev_ssize_t)n),
				    n) != REDIS_OK) {
			fail(rc, "out of memory reading a reply");
			break;
		}
		evbuffer_drain(in, n);
		while (!rc->dead) {
			void *reply = NULL;
			if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
				snprintf(rc->why, sizeof(rc->why), "protocol error: %s",
					 rc->reader->errstr);
				fail(rc, rc->why);
				break;
			}
			if (!reply)
				break;
			dispatch(rc, reply);
			freeReplyObject(reply);
		}
		if (!rc->dead && rc->reader->len - rc->reader->pos > RCONN_MAX_UNPARSED)
			fail(rc, "a reply larger than 256 MB");
	}
	leave(rc);
}

/* Why a TLS connection failed, in words an operator can act on. */
static const char *tls_reason(struct rconn *rc)
{
	SSL *ssl = bufferevent_openssl_get_ssl(rc->bev);
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e = bufferevent_get_openssl_error(rc->bev);
	if (v != X509_V_OK && (e || !rc->connected)) {
		snprintf(rc->why, sizeof(rc->why), "TLS: certificate verify failed: %s",
			 X509_verify_cert_error_string(v));
		return rc->why;
	}
	if (e) {
		char buf[200];
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(rc->why, sizeof(rc->why), "TLS: %s", buf);
		return rc->why;
	}
	return NULL;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rconn *rc = arg;
	if (what & BEV_EVENT_CONNECTED) {
		rc->connected = 1;
		rc->depth++;
		if (!rc->dead && rc->events->connected)
			rc->events->connected(rc, rc->arg);
		leave(rc);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	const char *why = rc->tls ? tls_reason(rc) : NULL;
	int dns = bufferevent_socket_get_dns_error(bev);
	int err = EVUTIL_SOCKET_ERROR();
	if (!why && dns) {
		snprintf(rc->why, sizeof(rc->why), "cannot resolve: %s", evutil_gai_strerror(dns));
		why = rc->why;
	}
	if (!why && (what & BEV_EVENT_EOF))
		why = rc->connected ? "closed by the server" : "closed while connecting";
	if (!why) {
		snprintf(rc->why, sizeof(rc->why), "%s", evutil_socket_error_to_string(err));
		why = rc->why;
	}
	fail(rc, why);
}

struct rconn *rconn_connect(struct event_base *base, const char *host, int port, SSL_CTX *tls,
			    const char *server_name, const struct rconn_events *events, void *arg,
			    const char **err)
{
	struct rconn *rc = xcalloc(1, sizeof(*rc));
	rc->events = events;
	rc->arg = arg;
	rc->reader = redisReaderCreate();
	if (!rc->reader)
		abort(); /* allocation failure aborts, as xmalloc does */
	if (tls) {
		SSL *ssl = SSL_new(tls);
		if (!ssl) {
			*err = "cannot create a TLS session";
			goto fail;
		}
		const char *name = server_name ? server_name : host;
		SSL_set_tlsext_host_name(ssl, name);
		/* the certificate must name the server: a DNS name, or an IP address */
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1)
			X509_VERIFY_PARAM_set1_host(param, name, 0);
		rc->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
							 BEV_OPT_CLOSE_ON_FREE);
		if (!rc->bev) {
			SSL_free(ssl);
			*err = "cannot create a TLS connection";
			goto fail;
		}
		rc->tls = 1;
	} else {
		rc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
		if (!rc->bev) {
			*err = "cannot create a socket";
			goto fail;
		}
	}
	bufferevent_setcb(rc->bev, read_cb, NULL, event_cb, rc);
	bufferevent_enable(rc->bev, EV_READ | EV_WRITE);
	/* Resolution is blocking (no evdns base here), as with hiredis before:
	 * fine for an address or /etc/hosts; the deadline runs from here. */
	rc->depth++;
	rc->starting = 1;
	if (bufferevent_socket_connect_hostname(rc->bev, NULL, AF_UNSPEC, host, port) < 0 &&
	    !rc->dead) {
		snprintf(rc->why, sizeof(rc->why), "cannot connect");
		fail(rc, rc->why);
	}
	rc->starting = 0;
	rc->depth--;
	if (rc->dead) { /* failed at once (event_cb may have said why) */
		static _Thread_local char why[256];
		snprintf(why, sizeof(why), "%s", rc->why[0] ? rc->why : "cannot connect");
		*err = why;
		destroy(rc);
		return NULL;
	}
	return rc;
fail:
	destroy(rc);
	return NULL;
}

static int send_command(struct rconn *rc, int want_reply, rconn_reply_fn *fn, void *priv, int argc,
			const char **argv, const size_t *lens)
{
	if (!rc || rc->dead)
		return -1;
	char *cmd;
	int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (len < 0)
		abort(); /* only allocation fails here */
	bufferevent_write(rc->bev, cmd, (size_t)len);
	redisFreeCommand(cmd);
	if (!want_reply)
		return 0;
	struct pending *p = xcalloc(1, sizeof(*p));
	p->fn = fn;
	p->priv = priv;
	if (rc->tail)
		rc->tail->next = p;
	else
		rc->head = p;
	rc->tail = p;
	rc->npending++;
	return 0;
}

int rconn_command(struct rconn *rc, rconn_reply_fn *fn, void *priv, int argc, const char **argv,
		  const size_t *lens)
{
	return send_command(rc, 1, fn, priv, argc, argv, lens);
}

int rconn_send_no_reply(struct rconn *rc, int argc, const char **argv, const size_t *lens)
{
	return send_command(rc, 0, NULL, NULL, argc, argv, lens);
}

void rconn_push_mode(struct rconn *rc)
{
	rc->push_mode = 1;
}

long rconn_pending(const struct rconn *rc)
{
	return rc ? rc->npending : 0;
}

int rconn_is_connected(const struct rconn *rc)
{
	return rc && rc->connected && !rc->dead;
}
