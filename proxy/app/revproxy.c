/* revproxy.c -- one client request relayed to the app and its answer back.
 *
 * Nothing is buffered whole: the request body goes on piece by piece as the
 * parser frees it (re-chunked when the client chunked it), the answer comes
 * back the same way, and each side stops reading while the other side's
 * output is over its mark. Headers lose their hop-by-hop fields in both
 * directions (RFC 9110 7.6.1) and the request gains X-Forwarded-*.
 *
 * Failures: the app unreachable -> 502, no answer head within
 * --upstream-timeout -> 504, no descriptor left for a connection to it
 * (clients.h) -> 503 with Retry-After, each with a short body. Once the
 * head is out, a failure can only be told by closing the client
 * connection: a Content-Length body then comes up short and a chunked one
 * never ends, which every client takes as truncation. */
#include "revproxy.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry.h"
#include "grip.h"
#include "http.h"
#include "http_response.h"
#include "httpconn.h"
#include "linger.h"
#include "log.h"
#include "origin.h"
#include "peer.h"
#include "tunnel.h"
#include "upstream.h"
#include "xmalloc.h"

#define UPSTREAM_PAUSE_BYTES (256 * 1024) /* stop reading the client above this */
#define MAX_RESPONSE_HEAD    (64 * 1024)

struct exchange {
	struct ferry *f;
	struct httpconn *c;
	struct bufferevent *up;
	struct http_response_parser *rp;
	struct event *timer;
	struct evbuffer *head; /* the request head, kept to send again on a fresh connection */
	int reused, retried;
	int has_body, req_chunked, req_done;
	int head_request;
	int idempotent;	  /* RFC 9110 9.2.2: may be sent twice */
	int upgrade;	  /* a WebSocket handshake: a 101 turns the exchange into a tunnel */
	int switching;	  /* the app answered 101 */
	int http10;	  /* the client speaks HTTP/1.0: no chunked answers */
	int skip_interim; /* a 1xx answer is being skipped */
	int resp_started; /* any answer bytes came from the app */
	int head_sent;	  /* the answer's head went to the client */
	int resp_chunked, resp_close;
	int up_paused;		   /* not reading the app: the client's output is full */
	int connected;		   /* the connection to the app is (or was) up */
	int ended, end_keep_alive; /* the answer is complete; the app keeps the connection */
	struct grip_hold *grip;	   /* the answer asked to be held (GRIP) */
};

/* Also lets go of the client's stream, so that nothing of the client's
 * reaches x after this (httpconn_stream_ops.gone never comes), and of a
 * GRIP hold not yet started (a failure mid-answer: it holds the client). */
static void exchange_free(struct exchange *x)
{
	if (!httpconn_gone(x->c))
		httpconn_stream(x->c, NULL, NULL);
	if (x->grip)
		grip_hold_free(x->grip);
	if (x->up)
		upstream_close(x->f->upstream, x->up);
	http_response_parser_free(x->rp);
	event_free(x->timer);
	if (x->head)
		evbuffer_free(x->head);
	httpconn_release(x->c);
	free(x);
}

/* ---- headers ---- */

/* The request head as the app gets it. upgrade: keep Connection/Upgrade
 * (a WebSocket tunnel). */
static struct evbuffer *request_head(struct httpconn *c, const struct http_request *req,
				     int upgrade, int chunked)
{
	struct ferry *f = httpconn_ferry(c);
	struct evbuffer *h = evbuffer_new();
	const char *connection = http_request_header(req, "Connection");
	const char *xff = NULL, *host = http_request_header(req, "Host");
	evbuffer_add_printf(h, "%s %s HTTP/1.1\r\n", req->method, req->url);
	for (unsigned i = 0; i < req->nheaders; i++) {
		const char *name = req->headers[i].name, *value = req->headers[i].value;
		if (strcasecmp(name, "X-Forwarded-For") == 0) {
			xff = value; /* the last one wins; ours is appended below */
			continue;
		}
		if (http_hop_by_hop(name, connection) ||
		    strcasecmp(name, "X-Forwarded-Proto") == 0 ||
		    strcasecmp(name, "X-Forwarded-Host") == 0 || strcasecmp(name, "Expect") == 0 ||
		    strncasecmp(name, "Grip-", 5) == 0)
			continue;
		evbuffer_add_printf(h, "%s: %s\r\n", name, value);
	}
	char ip[64], hostbuf[256];
	peer_address(httpconn_socket_peer(c), ip, sizeof(ip));
	/* a --trusted-proxy's X-Forwarded-Proto and -Host say what the browser
	 * used; anyone else's are replaced by what ferry saw */
	const char *proto = http_request_header(req, "X-Forwarded-Proto");
	if (!proto || !origin_peer_trusted(f->cfg, httpconn_socket_peer(c)))
		proto = httpconn_tls(c) ? "https" : "http";
	evbuffer_add_printf(h, "X-Forwarded-For: %s%s%s\r\nX-Forwarded-Proto: %s\r\n",
			    xff ? xff : "", xff ? ", " : "", ip, proto);
	const char *fwd_host =
		origin_request_host(f->cfg, req, httpconn_socket_peer(c), hostbuf, sizeof(hostbuf));
	if (fwd_host)
		evbuffer_add_printf(h, "X-Forwarded-Host: %s\r\n", fwd_host);
	if (!host)
		evbuffer_add_printf(h, "Host: %s\r\n", upstream_authority(f->upstream));
	grip_sign_request(f, h);
	if (upgrade)
		evbuffer_add_printf(h, "Connection: Upgrade\r\nUpgrade: %s\r\n",
				    http_request_header(req, "Upgrade"));
	else if (chunked)
		evbuffer_add_printf(h, "Transfer-Encoding: chunked\r\n");
	else if (req->content_length >= 0)
		evbuffer_add_printf(h, "Content-Length: %lld\r\n", req->content_length);
	evbuffer_add(h, "\r\n", 2);
	return h;
}

/* ---- the end of an exchange ---- */

static void finish(struct exchange *x, int up_reusable, int client_reusable)
{
	struct httpconn *c = x->c;
	if (x->up) {
		upstream_put(x->f->upstream, x->up, up_reusable && x->req_done);
		x->up = NULL;
	}
	httpconn_hold(c);
	exchange_free(x);
	if (!httpconn_gone(c))
		httpconn_stream_done(c, client_reusable);
	httpconn_release(c);
}

/* Before the answer's head: a short error. After: cut the connection. */
static void fail(struct exchange *x, int status, const char *why)
{
	log_info("upstream %s %s: %s", upstream_authority(x->f->upstream), httpconn_peer(x->c),
		 why);
	if (x->head_sent) {
		finish(x, 0, 0);
		return;
	}
	struct httpconn *c = x->c;
	if (x->up) {
		upstream_close(x->f->upstream, x->up);
		x->up = NULL;
	}
	httpconn_hold(c);
	exchange_free(x); /* lets go of the stream first: the error is ferry's */
	if (!httpconn_gone(c))
		httpconn_error(c, status, why);
	httpconn_release(c);
}

/* ---- the answer ---- */

/* The app took the WebSocket handshake: the client gets its 101 with the
 * Connection and Upgrade fields (hop-by-hop, so kept only here), and the
 * exchange becomes a tunnel once the head is through (complete()). */
static int switching_head(struct exchange *x, const struct http_response_head *head)
{
	struct evbuffer *out = httpconn_output(x->c);
	const char *connection = NULL, *upgrade = NULL;
	for (unsigned i = 0; i < head->nheaders; i++) {
		if (strcasecmp(head->headers[i].name, "Connection") == 0)
			connection = head->headers[i].value;
		else if (strcasecmp(head->headers[i].name, "Upgrade") == 0)
			upgrade = head->headers[i].value;
	}
	if (!upgrade)
		return -1; /* a 101 to nothing: malformed (502) */
	event_del(x->timer);
	httpconn_set_status(x->c, 101);
	evbuffer_add_printf(out, "HTTP/1.1 101 %s\r\n",
			    head->reason[0] ? head->reason : http_status_text(101));
	for (unsigned i = 0; i < head->nheaders; i++) {
		const char *name = head->headers[i].name;
		if (http_hop_by_hop(name, connection) || strncasecmp(name, "Grip-", 5) == 0)
			continue;
		evbuffer_add_printf(out, "%s: %s\r\n", name, head->headers[i].value);
	}
	evbuffer_add_printf(out, "Connection: Upgrade\r\nUpgrade: %s\r\n\r\n", upgrade);
	x->switching = 1;
	x->head_sent = 1;
	return 0;
}

static int on_head(void *arg, const struct http_response_head *head)
{
	struct exchange *x = arg;
	if (head->status == 101 && x->upgrade)
		return switching_head(x, head);
	if (head->status >= 100 && head->status < 200) {
		x->skip_interim = 1; /* 100 Continue was ours to give; 103 is advisory */
		return 0;
	}
	event_del(x->timer); /* the app answered: no timeout while its body streams */
	if (grip_wants(head)) {
		if (!x->req_done) {
			log_warn("grip: the app answered %s before its request ended",
				 httpconn_peer(x->c));
			return -1;
		}
		x->grip = grip_hold_new(x->c, head);
		return x->grip ? 0 : -1;
	}
	struct evbuffer *out = httpconn_output(x->c);
	const char *connection = NULL;
	for (unsigned i = 0; i < head->nheaders; i++)
		if (strcasecmp(head->headers[i].name, "Connection") == 0)
			connection = head->headers[i].value;
	httpconn_set_status(x->c, head->status);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", head->status,
			    head->reason[0] ? head->reason : http_status_text(head->status));
	for (unsigned i = 0; i < head->nheaders; i++) {
		const char *name = head->headers[i].name;
		if (http_hop_by_hop(name, connection) || strncasecmp(name, "Grip-", 5) == 0)
			continue;
		evbuffer_add_printf(out, "%s: %s\r\n", name, head->headers[i].value);
	}
	if (!head->has_body) {
		if (head->content_length >= 0 && x->head_request)
			evbuffer_add_printf(out, "Content-Length: %lld\r\n", head->content_length);
	} else if (head->content_length >= 0 && !head->chunked) {
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", head->content_length);
	} else if (!x->http10) {
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
		x->resp_chunked = 1;
	} else {
		x->resp_close = 1; /* an HTTP/1.0 client reads to the close */
	}
	if (x->resp_close || !httpconn_reusable(x->c))
		evbuffer_add_printf(out, "Connection: close\r\n");
	evbuffer_add(out, "\r\n", 2);
	x->head_sent = 1;
	return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
	struct exchange *x = arg;
	if (x->grip)
		return grip_hold_body(x->grip, data, len);
	struct evbuffer *out = httpconn_output(x->c);
	if (!out || x->skip_interim)
		return 0;
	if (x->resp_chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (x->resp_chunked)
		evbuffer_add(out, "\r\n", 2);
	httpconn_ferry(x->c)->metrics.bytes_out += len;
	return 0;
}

static void on_end(void *arg, int keep_alive)
{
	struct exchange *x = arg;
	if (x->skip_interim && !x->switching) {
		x->skip_interim = 0;
		http_response_expect(x->rp, x->head_request);
		return;
	}
	x->ended = 1;
	x->end_keep_alive = keep_alive;
}

static const struct http_response_cbs response_cbs = { on_head, on_body, on_end };

/* After the 101: the client's connection and the app's are handed to a
 * tunnel, each with what it has not yet relayed (the client's bytes after
 * its handshake, the app's after its 101). */
static void to_tunnel(struct exchange *x)
{
	struct ferry *f = x->f;
	struct httpconn *c = x->c;
	struct bufferevent *up = x->up;
	char peer[64];
	x->up = NULL;
	bufferevent_setcb(up, NULL, NULL, NULL, NULL);
	xsnprintf(peer, sizeof(peer), "%s", httpconn_peer(c));
	httpconn_hold(c);
	exchange_free(x);
	struct bufferevent *client = httpconn_detach(c);
	httpconn_release(c);
	tunnel_start(f, client, up, peer);
}

/* The answer is complete (x is freed). */
static void complete(struct exchange *x)
{
	if (x->switching) {
		to_tunnel(x);
		return;
	}
	if (x->grip) {
		/* the held request lives on by itself; the app connection is done */
		struct grip_hold *g = x->grip;
		x->grip = NULL;
		upstream_put(x->f->upstream, x->up, x->end_keep_alive && x->req_done);
		x->up = NULL;
		httpconn_stream(x->c, NULL, NULL); /* the hold answers from now on */
		exchange_free(x);
		grip_hold_start(g);
		return;
	}
	if (x->resp_chunked)
		evbuffer_add(httpconn_output(x->c), "0\r\n\r\n", 5);
	/* Not pooled after HEAD (an app that sends a body anyway would have it
	 * read as the next client's answer) nor after a refused handshake. */
	finish(x, x->end_keep_alive && !x->head_request && !x->upgrade,
	       !x->resp_close && x->req_done);
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
	struct exchange *x = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (!x->up_paused) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		x->resp_started = 1;
		size_t used = 0;
		if (http_response_feed(x->rp, v.iov_base, v.iov_len, &used) < 0) {
			fail(x, 502, "upstream sent a malformed response or invalid GRIP headers");
			return;
		}
		evbuffer_drain(in, used);
		if (x->ended) {
			complete(x); /* bytes after the answer, if any, spoil the connection */
			return;
		}
		if (!x->grip && httpconn_output_full(x->c)) {
			x->up_paused = 1;
			bufferevent_disable(bev, EV_READ);
		}
	}
}

static void send_request(struct exchange *x);

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct exchange *x = arg;
	if (what & BEV_EVENT_CONNECTED) {
		x->connected = 1;
		return;
	}
	if (x->resp_started || x->head_sent) {
		if (http_response_eof(x->rp) && x->ended) {
			x->end_keep_alive = 0;
			complete(x);
			return;
		}
		fail(x, 502, "upstream closed the connection mid-response");
		return;
	}
	if (x->reused && !x->retried && !x->has_body && x->idempotent) {
		/* an idle connection the app had just closed: once more, fresh.
		 * Only a method that may be repeated (RFC 9110 9.2.2): the app
		 * may have acted on the request before it closed. */
		log_debug("upstream: reused connection closed, retrying on a new one");
		upstream_close(x->f->upstream, x->up);
		x->up = NULL;
		x->retried = 1;
		x->reused = 0;
		send_request(x);
		return;
	}
	fail(x, 502,
	     (what & BEV_EVENT_ERROR) && !x->reused && !x->connected
		     ? "upstream unreachable"
		     : "upstream closed the connection without answering");
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
	struct exchange *x = arg;
	httpconn_pause_input(x->c, 0); /* the app took what was queued */
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	fail(arg, 504, "upstream timed out");
}

/* No descriptor for a connection to the app: 503 at once, not logged
 * here (clients.c says it, at most once a minute), and the client's
 * connection stays open, it holds its descriptor already. */
static void refuse_no_descriptor(struct exchange *x)
{
	static const char body[] = "no descriptor free for the app; try again\n";
	struct httpconn *c = x->c;
	httpconn_hold(c);
	exchange_free(x);
	if (!httpconn_gone(c))
		httpconn_text(c, 503, "Retry-After: 1\r\n", body);
	httpconn_release(c);
}

static void send_request(struct exchange *x)
{
	x->up = upstream_get(x->f->upstream, x->has_body, &x->reused);
	if (!x->up) {
		if (errno == EMFILE || errno == ENFILE)
			refuse_no_descriptor(x);
		else
			fail(x, 502, "upstream unreachable");
		return;
	}
	x->connected = x->reused;
	bufferevent_setcb(x->up, up_read_cb, up_write_cb, up_event_cb, x);
	bufferevent_setwatermark(x->up, EV_WRITE, UPSTREAM_PAUSE_BYTES / 4, 0);
	bufferevent_enable(x->up, EV_READ | EV_WRITE);
	/* a copy: the head is kept to send again on a fresh connection */
	evbuffer_add(bufferevent_get_output(x->up), evbuffer_pullup(x->head, -1),
		     evbuffer_get_length(x->head));
}

/* ---- the client side ---- */

static void client_body(void *arg, const char *data, size_t len)
{
	struct exchange *x = arg;
	if (!x->up)
		return;
	struct evbuffer *out = bufferevent_get_output(x->up);
	if (x->req_chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (x->req_chunked)
		evbuffer_add(out, "\r\n", 2);
	if (evbuffer_get_length(out) > UPSTREAM_PAUSE_BYTES)
		httpconn_pause_input(x->c, 1);
}

static void client_body_end(void *arg)
{
	struct exchange *x = arg;
	x->req_done = 1;
	if (x->up && x->req_chunked)
		evbuffer_add(bufferevent_get_output(x->up), "0\r\n\r\n", 5);
}

static void client_writable(void *arg)
{
	struct exchange *x = arg;
	if (x->up_paused && x->up) {
		x->up_paused = 0;
		bufferevent_enable(x->up, EV_READ);
		up_read_cb(x->up, x);
	}
}

static void client_gone(void *arg)
{
	exchange_free(arg); /* the app connection is mid-exchange: closed, not pooled */
}

static const struct httpconn_stream_ops stream_ops = {
	.body = client_body,
	.body_end = client_body_end,
	.writable = client_writable,
	.gone = client_gone,
};

static int is_websocket_upgrade(const struct http_request *req)
{
	const char *up = http_request_header(req, "Upgrade");
	return req->upgrade && strcmp(req->method, "GET") == 0 && up &&
	       strcasecmp(up, "websocket") == 0;
}

static int is_idempotent(const char *method)
{
	static const char *const methods[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE" };
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(method, methods[i]) == 0)
			return 1;
	return 0;
}

void revproxy_start(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	int has_body = req->chunked || req->content_length > 0;
	int upgrade = is_websocket_upgrade(req);
	/* A handshake with a body: after a 101 the body would be read as the
	 * new protocol's bytes, so no one can tell where the request ends. */
	if (upgrade && has_body) {
		httpconn_error(c, 400, "a WebSocket handshake with a body");
		return;
	}
	if (strcmp(req->method, "CONNECT") == 0) {
		httpconn_error(c, 405, "CONNECT is not proxied");
		return;
	}
	struct exchange *x = xcalloc(1, sizeof(*x));
	x->f = f;
	x->c = c;
	httpconn_hold(c);
	x->upgrade = upgrade;
	x->idempotent = is_idempotent(req->method);
	x->has_body = has_body;
	x->req_chunked = req->chunked;
	x->req_done = !x->has_body;
	x->head_request = strcmp(req->method, "HEAD") == 0;
	x->http10 = req->http_major == 1 && req->http_minor == 0;
	x->rp = http_response_parser_new(MAX_RESPONSE_HEAD, &response_cbs, x);
	http_response_expect(x->rp, x->head_request);
	x->timer = evtimer_new(f->base, timeout_cb, x);
	struct timeval tv = { f->cfg->upstream_timeout_ms / 1000,
			      (f->cfg->upstream_timeout_ms % 1000) * 1000 };
	event_add(x->timer, &tv);
	x->head = request_head(c, req, x->upgrade, x->req_chunked);
	const char *expect = http_request_header(req, "Expect");
	if (expect && strcasecmp(expect, "100-continue") == 0 && x->has_body)
		evbuffer_add(httpconn_output(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
	httpconn_stream(c, &stream_ops, x);
	send_request(x);
}
