/* httpconn.c -- HTTP/1.1 connections.
 * Requests are handled one at a time in arrival order: the parser stops after
 * each request, and the next one is parsed only once the current response
 * has been queued. That is all pipelining needs. */
#include "httpconn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accesslog.h"
#include "clients.h"
#include "container.h"
#include "ferry.h"
#include "flush.h"
#include "http.h"
#include "linger.h"
#include "log.h"
#include "origin.h"
#include "xmalloc.h"

/* Stop reading pipelined requests while this much output is waiting. */
#define OUTPUT_PAUSE_BYTES (256 * 1024)

enum phase { PHASE_IDLE, PHASE_HEADERS, PHASE_BODY, PHASE_RESPONDING };

struct httpconn {
	struct client client; /* holders are its callbacks: httpconn_hold() */
	struct ferry *f;
	const struct httpconn_handler *handler;
	struct bufferevent *bev;
	struct http_parser *parser;
	struct event *timer;
	enum phase phase;
	int gone;	/* socket closed or handed on; freed when holders release */
	int keep_alive; /* of the current request */
	int in_handler; /* inside process(): do not recurse or free */
	const struct httpconn_waiter_ops *waiter;
	void *waiter_arg;
	const struct httpconn_stream_ops *stream;
	void *stream_arg;
	int input_paused;
	int after_head; /* feed the parser once more even without input */
	int tls;
	char peer[64];
	char client_peer[64]; /* peer, or the client a --trusted-proxy names */

	/* for --access-log: the request being answered */
	int in_request;
	int status;	   /* of its answer, once known */
	size_t sent, mark; /* bytes queued to the client in all; at its start */
	struct timeval start;
	struct evbuffer_cb_entry *counter;
};

static void process(struct httpconn *c);
static void conn_free(struct httpconn *c);

/* Unanswered input a connection may hold: a request head at its limits. */
static size_t input_bound(const struct config *cfg)
{
	return cfg->max_request_line + cfg->max_header_bytes;
}

static void set_timer(struct httpconn *c, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_add(c->timer, &tv);
}

static void enter_phase(struct httpconn *c, enum phase p)
{
	if (c->phase == p)
		return;
	c->phase = p;
	const struct config *cfg = c->f->cfg;
	switch (p) {
	case PHASE_IDLE:
		set_timer(c, cfg->idle_timeout_ms);
		break;
	case PHASE_HEADERS:
		set_timer(c, cfg->header_timeout_ms);
		break;
	case PHASE_BODY:
		set_timer(c, cfg->body_timeout_ms);
		break;
	case PHASE_RESPONDING:
		event_del(c->timer);
		break;
	}
}

static void tell_waiter_gone(struct httpconn *c)
{
	const struct httpconn_waiter_ops *w = c->waiter;
	const struct httpconn_stream_ops *st = c->stream;
	c->waiter = NULL;
	c->stream = NULL;
	if (w)
		w->gone(c->waiter_arg);
	if (st)
		st->gone(c->stream_arg);
}

static void count_sent(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	((struct httpconn *)arg)->sent += info->n_added;
}

static void request_started(struct httpconn *c)
{
	c->in_request = 1;
	c->status = 0;
	xsnprintf(c->client_peer, sizeof(c->client_peer), "%s", c->peer);
	c->mark = c->sent;
	event_base_gettimeofday_cached(c->f->base, &c->start);
}

/* The request's line in the access log, once. */
static void request_ended(struct httpconn *c)
{
	if (!c->in_request)
		return;
	c->in_request = 0;
	if (!c->f->access_log)
		return;
	struct access_entry e = {
		.peer = c->client_peer,
		.req = http_parser_request(c->parser),
		.status = c->status ? c->status : 499, /* the client left first */
		.bytes = c->sent - c->mark,
		.start = c->start,
	};
	event_base_gettimeofday_cached(c->f->base, &e.end);
	accesslog_write(c->f->access_log, &e);
}

void httpconn_set_status(struct httpconn *c, int status)
{
	c->status = status;
}

/* Close the socket now; the struct lives on while someone holds it. */
static void close_socket(struct httpconn *c)
{
	tell_waiter_gone(c);
	request_ended(c);
	c->gone = 1;
	bufferevent_free(c->bev);
	c->bev = NULL;
	event_del(c->timer);
	client_remove(c->f, &c->client);
}

static void conn_close(struct httpconn *c)
{
	if (c->gone)
		return;
	httpconn_hold(c);
	close_socket(c);
	client_close(c->f, &c->client);
	httpconn_release(c); /* c may be freed here */
}

void httpconn_wait(struct httpconn *c, const struct httpconn_waiter_ops *ops, void *arg)
{
	c->waiter = ops;
	c->waiter_arg = arg;
}

/* The request's Origin, if it is allowed and not the request's own host. */
static const char *cors_origin(const struct httpconn *c)
{
	const struct http_request *req = http_parser_request(c->parser);
	const char *origin = http_request_header(req, "Origin");
	if (!origin || !origin_allowed(c->f->cfg, req, c->peer, origin))
		return NULL;
	return origin_is_own(c->f->cfg, req, c->peer, origin) ? NULL : origin;
}

size_t httpconn_cors_headers(const struct httpconn *c, char *out, size_t outsz)
{
	const char *origin = cors_origin(c);
	/* Retry-After is not a CORS-safelisted header: without the expose,
	 * ferry.js on another origin could not honour a 503's or 429's. */
	int n = origin ? snprintf(out, outsz,
				  "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
				  "Access-Control-Expose-Headers: Retry-After\r\n",
				  origin)
		       : -1;
	if (n < 0 || (size_t)n >= outsz) {
		if (outsz)
			out[0] = '\0';
		return 0;
	}
	return (size_t)n;
}

void httpconn_hold(struct httpconn *c)
{
	client_enter(&c->client);
}

void httpconn_release(struct httpconn *c)
{
	client_leave(c->f, &c->client);
}

int httpconn_gone(const struct httpconn *c)
{
	return c->gone;
}

static void conn_free(struct httpconn *c)
{
	http_parser_free(c->parser);
	event_free(c->timer);
	free(c);
}

const char *httpconn_peer(const struct httpconn *c)
{
	return c->client_peer;
}

const char *httpconn_socket_peer(const struct httpconn *c)
{
	return c->peer;
}

const struct http_request *httpconn_request(const struct httpconn *c)
{
	return http_parser_request(c->parser);
}

int httpconn_tls(const struct httpconn *c)
{
	return c->tls;
}

static void body_sink(void *arg, const char *data, size_t len)
{
	struct httpconn *c = arg;
	if (c->stream)
		c->stream->body(c->stream_arg, data, len);
}

void httpconn_stream(struct httpconn *c, const struct httpconn_stream_ops *ops, void *arg)
{
	c->stream = ops;
	c->stream_arg = arg;
	http_parser_stream_body(c->parser, body_sink, c);
}

void httpconn_pause_input(struct httpconn *c, int paused)
{
	if (c->input_paused == paused)
		return;
	c->input_paused = paused;
	if (c->gone)
		return;
	/* stop the socket too, or its input would pile up in memory */
	if (paused)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
	if (c->phase != PHASE_BODY)
		return;
	/* a client held back by a slow app is not the one being slow */
	if (paused) {
		event_del(c->timer);
		return;
	}
	set_timer(c, c->f->cfg->body_timeout_ms);
	if (!c->in_handler)
		process(c);
}

struct evbuffer *httpconn_output(struct httpconn *c)
{
	return c->bev ? bufferevent_get_output(c->bev) : NULL;
}

int httpconn_output_full(struct httpconn *c)
{
	return c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) > OUTPUT_PAUSE_BYTES;
}

int httpconn_reusable(const struct httpconn *c)
{
	return c->keep_alive && !c->f->draining && !http_parser_in_request(c->parser);
}

/* The connection after an answer: the next request, or a lingering close. */
static void answered(struct httpconn *c, int close_after)
{
	request_ended(c);
	if (close_after) {
		struct ferry *f = c->f;
		linger_close(f, httpconn_detach(c)); /* c may be freed here */
		return;
	}
	/* Answer now rather than after the next wait for events: a publisher
	 * then sends its next message while this turn's fan-out is written,
	 * and the next turn fans out several messages with one write each. */
	flush_now(c->bev);
	http_parser_next(c->parser);
	enter_phase(c, PHASE_IDLE);
	if (!c->in_handler)
		process(c); /* a later answer: pipelined requests may be waiting */
}

void httpconn_stream_done(struct httpconn *c, int reusable)
{
	if (c->gone)
		return;
	c->stream = NULL;
	if (c->input_paused) {
		c->input_paused = 0;
		bufferevent_enable(c->bev, EV_READ);
	}
	answered(c, !reusable || !httpconn_reusable(c));
}

struct ferry *httpconn_ferry(const struct httpconn *c)
{
	return c->f;
}

static void respond(struct httpconn *c, int status, const char *headers, const char *ctype,
		    const void *body, size_t len, struct evbuffer *body_buf)
{
	if (c->gone)
		return;
	c->waiter = NULL;
	/* ferry answers in place of a stream (a refused or timed-out body):
	 * its owner lets go now, so nothing it hears later reaches this client */
	const struct httpconn_stream_ops *st = c->stream;
	c->stream = NULL;
	if (st)
		st->gone(c->stream_arg);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	/* An answer before the request's end (a refused stream) cannot be
	 * followed by another request: the rest of this one is still coming. */
	int close_after = !c->keep_alive || c->f->draining || status == 400 || status == 408 ||
			  status == 413 || status == 414 || status == 431 ||
			  http_parser_in_request(c->parser);
	size_t before = evbuffer_get_length(out);
	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nServer: ferry\r\nContent-Type: %s\r\n"
			    "Content-Length: %zu\r\n%s%s\r\n",
			    status, http_status_text(status), ctype, len,
			    close_after ? "Connection: close\r\n" : "", headers ? headers : "");
	const struct http_request *req = http_parser_request(c->parser);
	if (req->method && strcmp(req->method, "HEAD") == 0)
		len = 0;
	if (body_buf && len)
		evbuffer_add_buffer(out, body_buf);
	else if (len)
		evbuffer_add(out, body, len);
	c->f->metrics.bytes_out += evbuffer_get_length(out) - before;
	c->status = status;
	if (status >= 400)
		c->f->metrics.errors[metrics_http_error(status)]++;
	answered(c, close_after);
}

void httpconn_respond(struct httpconn *c, int status, const char *headers, const char *ctype,
		      const void *body, size_t len)
{
	respond(c, status, headers, ctype, body, len, NULL);
}

void httpconn_respond_buffer(struct httpconn *c, int status, const char *headers, const char *ctype,
			     struct evbuffer *body)
{
	respond(c, status, headers, ctype, NULL, evbuffer_get_length(body), body);
}

void httpconn_error(struct httpconn *c, int status, const char *reason)
{
	size_t len = strlen(reason); /* (a backend's error may be long: never cut) */
	char *body = xmalloc(len + 2);
	memcpy(body, reason, len);
	memcpy(body + len, "\n", 2);
	log_info("http %s: %d %s", c->client_peer, status, reason);
	httpconn_text(c, status, "", body);
	free(body);
}

void httpconn_text(struct httpconn *c, int status, const char *headers, const char *text)
{
	httpconn_respond(c, status, headers, "text/plain; charset=utf-8", text, strlen(text));
}

void httpconn_method_not_allowed(struct httpconn *c, const char *allow)
{
	char hdr[64];
	xsnprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
	httpconn_text(c, 405, hdr, "method not allowed\n");
}

struct bufferevent *httpconn_detach(struct httpconn *c)
{
	struct bufferevent *bev = c->bev;
	tell_waiter_gone(c); /* whoever waited on this request loses it here */
	request_ended(c);
	if (c->counter)
		evbuffer_remove_cb_entry(bufferevent_get_output(bev), c->counter);
	c->bev = NULL;
	c->gone = 1;
	event_del(c->timer);
	client_remove(c->f, &c->client);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_setwatermark(bev, EV_READ, 0, 0); /* the new owner's to set */
	client_close(c->f, &c->client);		      /* process() holds c; freed when it returns */
	return bev;
}

/* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host, an HTTP/1.0 one
 * at most one; the app and ferry's routes must not each pick another. */
static const char *host_error(const struct http_request *req)
{
	unsigned hosts = 0;
	for (unsigned i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, "Host") == 0)
			hosts++;
	if (hosts > 1)
		return "more than one Host header";
	if (!hosts && (req->http_major > 1 || req->http_minor >= 1))
		return "missing Host header";
	return NULL;
}

/* Parse and dispatch whatever input is buffered. */
static void process(struct httpconn *c)
{
	httpconn_hold(c);
	c->in_handler = 1;
	while (!c->gone && !c->input_paused &&
	       (c->phase == PHASE_IDLE || c->phase == PHASE_HEADERS || c->phase == PHASE_BODY)) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > OUTPUT_PAUSE_BYTES)
			break; /* the write callback resumes us */
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
			/* A request without a body ends right after its head,
			 * which the parser stopped at: let it say so. */
			if (!c->after_head)
				break;
			v.iov_base = (void *)"";
			v.iov_len = 0;
		}
		c->after_head = 0;
		if (!c->in_request && v.iov_len)
			request_started(c);
		size_t used = 0;
		enum http_parse_result rc =
			http_parser_feed(c->parser, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		c->f->metrics.bytes_in += used;
		if (rc == HTTP_PARSE_ERROR) {
			c->keep_alive = 0;
			httpconn_error(c, http_parser_status(c->parser),
				       http_parser_error(c->parser));
			break;
		}
		if (rc == HTTP_PARSE_MORE) {
			if (c->stream && c->phase == PHASE_BODY)
				set_timer(c, c->f->cfg->body_timeout_ms); /* streamed: idle time */
			else if (http_parser_in_body(c->parser))
				enter_phase(c, PHASE_BODY);
			else if (http_parser_in_request(c->parser))
				enter_phase(c, PHASE_HEADERS);
			continue;
		}
		const struct http_request *req = http_parser_request(c->parser);
		const char *bad_host = host_error(req);
		if (bad_host) {
			c->keep_alive = 0;
			httpconn_error(c, 400, bad_host);
			break;
		}
		origin_client_peer(c->f->cfg, req, c->peer, c->client_peer, sizeof(c->client_peer));
		if (rc == HTTP_PARSE_HEAD) {
			c->keep_alive = req->keep_alive;
			enter_phase(c, PHASE_BODY);
			c->after_head = 1;
			if (c->handler->head)
				c->handler->head(c, req); /* may take the request as a stream */
			continue;
		}
		if (c->stream) {
			/* a streamed request's end: its answer may still be coming */
			c->keep_alive = req->keep_alive;
			enter_phase(c, PHASE_RESPONDING);
			c->stream->body_end(c->stream_arg);
			continue;
		}
		c->keep_alive = req->keep_alive;
		enter_phase(c, PHASE_RESPONDING);
		c->handler->request(c, req);
	}
	c->in_handler = 0;
	httpconn_release(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct httpconn *c = arg;
	process(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct httpconn *c = arg;
	if (c->stream && c->stream->writable)
		c->stream->writable(c->stream_arg);
	if (!c->gone)
		process(c); /* output drained below the pause mark */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct httpconn *c = arg;
	if (what & BEV_EVENT_CONNECTED)
		return; /* a TLS handshake finished */
	if (what & BEV_EVENT_ERROR)
		log_debug("http %s: socket error", c->peer);
	conn_close(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpconn *c = arg;
	switch (c->phase) {
	case PHASE_HEADERS:
		c->keep_alive = 0;
		httpconn_error(c, 408, "request headers not received in time");
		break;
	case PHASE_BODY:
		c->keep_alive = 0;
		httpconn_error(c, 408, "request body not received in time");
		break;
	case PHASE_IDLE:
	case PHASE_RESPONDING:
		conn_close(c);
		break;
	}
}

static void drain_cb(struct client *link, int retry_ms)
{
	struct httpconn *c = container_of(link, struct httpconn, client);
	/* An idle keep-alive connection just closes; one mid-request is answered
	 * with Connection: close (httpconn_respond checks draining); a held
	 * request is told to answer now. */
	if (c->phase == PHASE_IDLE) {
		conn_close(c);
	} else if (c->waiter) {
		const struct httpconn_waiter_ops *w = c->waiter;
		w->drain(c->waiter_arg, retry_ms);
	}
}

/* Closed and not held (or at exit): free it. At exit a holder (an answer
 * pending from the backend) may remain; then only the socket goes now, and
 * the holder's release frees the struct. */
static void destroy_cb(struct client *link)
{
	struct httpconn *c = container_of(link, struct httpconn, client);
	if (!c->gone)
		close_socket(c);
	if (c->client.in_callback == 0)
		conn_free(c);
	else
		c->client.closed = 1;
}

static const struct client_ops httpconn_client_ops = { .drain = drain_cb, .destroy = destroy_cb };

void httpconn_new(struct ferry *f, const struct httpconn_handler *h, struct bufferevent *bev,
		  const char *peer, int tls)
{
	const struct config *cfg = f->cfg;
	struct httpconn *c = xcalloc(1, sizeof(*c));
	c->f = f;
	c->handler = h;
	c->bev = bev;
	c->tls = tls;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	snprintf(c->client_peer, sizeof(c->client_peer), "%s", peer);
	struct http_limits limits = {
		.max_request_line = cfg->max_request_line,
		.max_header_bytes = cfg->max_header_bytes,
		.max_headers = (unsigned)cfg->max_headers,
		.max_body = cfg->max_body,
		.pause_on_head = cfg->upstream_url != NULL, /* proxied bodies stream */
	};
	c->parser = http_parser_new(&limits);
	c->timer = evtimer_new(f->base, timer_cb, c);
	c->phase = PHASE_RESPONDING; /* so enter_phase(IDLE) arms the timer */
	enter_phase(c, PHASE_IDLE);
	client_add(f, &c->client, &httpconn_client_ops, TRANSPORT_HTTP, 0, peer);
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
	/* Input waits unparsed while a request is answered (a held poll, a
	 * slow app, output over OUTPUT_PAUSE_BYTES): read no further than one
	 * request's head beyond it, and let TCP hold the client back. */
	bufferevent_setwatermark(bev, EV_READ, 0, input_bound(cfg));
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (f->access_log)
		c->counter = evbuffer_add_cb(bufferevent_get_output(bev), count_sent, c);
}
