/* sse.c -- Server-Sent Events.
 *
 * The stream is a plain text/event-stream that a bare EventSource reads:
 *   message   "id: <cursors>\n" + [event: NAME] + data: lines; the event/data
 *             part is encoded once per message and shared by reference; the
 *             id line is per client, because it carries the client's cursor
 *             in every channel it reads ("news,9d41b7a0:17 chat,0c3e...:4"),
 *             so the browser's automatic Last-Event-ID resumes all of them.
 *   control   an event named "ferry" whose data is the same JSON the
 *             WebSocket sends (open, subscribed, reset, heartbeat, reconnect).
 * The response headers wait until every subscription has answered, so a
 * reset can also be announced in a Ferry-Reset header.
 * Streams end with the connection (no chunking): Connection: close. */
#include "sse.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "auth.h"
#include "clients.h"
#include "container.h"
#include "cursor.h"
#include "ferry.h"
#include "flush.h"
#include "http.h"
#include "httpconn.h"
#include "linger.h"
#include "log.h"
#include "base64.h"
#include "message.h"
#include "origin.h"
#include "protocol.h"
#include "session.h"
#include "sse_format.h"
#include "transport.h"
#include "xmalloc.h"

#define SSE_PADDING  2048
#define SSE_RETRY_MS 2000

enum sse_state { SSE_STARTING, SSE_OPEN, SSE_DEAD };

struct sse_conn {
	struct client client;
	struct ferry *f;
	struct bufferevent *bev;
	struct session *session;
	enum sse_state state;
	struct evbuffer *early; /* output before the headers are written */
	int awaiting;		/* subscriptions not answered yet */
	int padded;		/* an XHR reader: recycle after a byte budget */
	int json;		/* format=json: data is the protocol envelope */
	size_t sent;
	struct evbuffer *resets;      /* the Ferry-Reset header's value, until it is written */
	char cors[HTTPCONN_CORS_MAX]; /* the CORS header lines, or "" */
	struct cursor *cursors;
	int ncursors;
	struct event *start_ev; /* writes the headers once every channel answered */
	/* Output is written at the end of the loop turn, straight to the socket
	 * (flush.c): a bufferevent would arm and disarm its write event (two
	 * epoll_ctl calls) around every message. */
	struct flush_entry flush;
	char peer[64];
};

static struct evbuffer *out(struct sse_conn *s)
{
	return s->state == SSE_STARTING ? s->early : bufferevent_get_output(s->bev);
}

/* Output was queued: write it at the end of this loop turn. */
static void account(struct sse_conn *s, size_t n)
{
	s->sent += n;
	s->f->metrics.bytes_out += n;
	if (s->state == SSE_OPEN && s->bev)
		flush_mark(s->f, &s->flush);
}

static void sse_flush(void *arg)
{
	struct sse_conn *s = arg;
	if (s->bev)
		flush_bufferevent(s->bev);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	flush_written(bev);
}

static void send_control(struct sse_conn *s, const char *json, size_t len)
{
	size_t n;
	char *ev = sse_event("ferry", json, len, &n);
	evbuffer_add(out(s), ev, n);
	account(s, n);
	free(ev);
}

static void send_event_json(struct sse_conn *s, const struct proto_event *ev)
{
	size_t len;
	char *json = proto_event_json(ev, &len);
	send_control(s, json, len);
	free(json);
}

/* The stream is over: freed when no callback of its own runs (clients.h),
 * never under the feet of someone else's (the hub's fan-out). */
static void mark_dead(struct sse_conn *s)
{
	s->state = SSE_DEAD;
	client_close(s->f, &s->client);
}

/* Hand the socket to a lingering close, which writes what is queued. */
static void finish(struct sse_conn *s)
{
	if (s->state == SSE_DEAD)
		return;
	struct bufferevent *bev = s->bev;
	s->bev = NULL;
	flush_cancel(s->f, &s->flush);
	if (bev)
		linger_close(s->f, bev); /* it writes what is queued */
	mark_dead(s);
}

static void write_headers(struct sse_conn *s)
{
	struct evbuffer *o = bufferevent_get_output(s->bev);
	evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nServer: ferry\r\n"
			       "Content-Type: text/event-stream; charset=utf-8\r\n"
			       "Cache-Control: no-store, no-cache, no-transform\r\n"
			       "X-Accel-Buffering: no\r\nConnection: close\r\n");
	if (evbuffer_get_length(s->resets)) {
		evbuffer_add(o, "Ferry-Reset: ", 13);
		evbuffer_add_buffer(o, s->resets);
		evbuffer_add(o, "\r\n", 2);
	}
	evbuffer_free(s->resets);
	s->resets = NULL;
	evbuffer_add(o, s->cors, strlen(s->cors));
	evbuffer_add(o, "\r\n", 2);
	evbuffer_add_buffer(o, s->early);
	evbuffer_free(s->early);
	s->early = NULL;
	s->state = SSE_OPEN;
	flush_mark(s->f, &s->flush);
}

/* The last subscription answered: its reset and replay follow within the
 * same call, so the headers (with Ferry-Reset) go out one loop turn later. */
static void subscription_answered(struct sse_conn *s)
{
	if (s->state == SSE_STARTING && --s->awaiting == 0)
		event_active(s->start_ev, EV_TIMEOUT, 0);
}

static void start_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sse_conn *s = arg;
	if (s->state == SSE_STARTING)
		write_headers(s);
}

/* transport_ops */

/* A bare EventSource reads text: binary data goes as its base64, JSON as
 * its (compact, one-line) text. */
static char *plain_event(const struct message *m, size_t *len)
{
	if (m->kind != MSG_BINARY)
		return sse_event(m->event, m->data, m->data_len, len);
	size_t blen;
	char *b64 = base64_encode(m->data, m->data_len, &blen);
	char *enc = sse_event(m->event, b64, blen, len);
	free(b64);
	return enc;
}

static void t_send_message(void *t, struct message *m)
{
	struct sse_conn *s = t;
	if (s->state == SSE_DEAD)
		return;
	struct cursor *c = cursor_find(s->cursors, s->ncursors, m->channel);
	if (c)
		cursor_set_id(c, m->id); /* too long: it stays, a resume repeats */
	char idline[PROTO_MAX_CHANNEL * 2 + 16];
	size_t cap = (size_t)s->ncursors * (PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 2) + 8;
	char *ids = cap <= sizeof(idline) ? idline : xmalloc(cap);
	memcpy(ids, "id: ", 4);
	size_t n = 4 + cursor_format_list(s->cursors, s->ncursors, ids + 4, cap - 6);
	ids[n++] = '\n';
	evbuffer_add(out(s), ids, n);
	if (ids != idline)
		free(ids);

	size_t len;
	enum wire w = s->json ? WIRE_SSE_JSON : WIRE_SSE;
	const char *bytes = message_wire(m, w, &len);
	if (!bytes) { /* first such subscriber to see this message: encode it once */
		char *enc;
		if (s->json) {
			size_t jlen;
			char *json = proto_message(m->channel, m->id, m->event, m->kind, m->data,
						   m->data_len, &jlen);
			if (!json)
				return; /* not encodable (not UTF-8): skipped */
			enc = sse_event(NULL, json, jlen, &len);
			free(json);
		} else {
			enc = plain_event(m, &len);
		}
		message_set_wire(m, w, enc, len);
		bytes = enc;
	}
	message_queue(out(s), m, bytes, len);
	account(s, n + len);
	/* A padded stream read by XHR keeps every byte: end it in time. */
	if (s->state == SSE_OPEN && s->padded && s->sent > s->f->cfg->sse_recycle_bytes) {
		send_control(s, "{\"type\":\"recycle\"}", 18);
		finish(s);
	}
}

static void t_send_event(void *t, const struct proto_event *ev)
{
	struct sse_conn *s = t;
	if (s->state == SSE_DEAD)
		return;
	if (ev->type == PEV_SUBSCRIBED) {
		struct cursor *c = cursor_find(s->cursors, s->ncursors, ev->channel);
		/* a fresh client starts at the newest message; a resuming one keeps its
		 * cursor until the replay moves it */
		if (c && !c->id[0] && ev->cursor)
			cursor_set_id(c, ev->cursor);
	} else if (ev->type == PEV_RESET && s->resets) {
		/* every channel's reset, up to --max-subscriptions of them: the
		 * header grows to its size rather than being cut off */
		evbuffer_add_printf(s->resets, "%s%s=%s",
				    evbuffer_get_length(s->resets) ? ", " : "", ev->channel,
				    ev->reason);
	}
	send_event_json(s, ev);
	if (ev->type == PEV_SUBSCRIBED ||
	    (ev->type == PEV_ERROR && ev->code && strcmp(ev->code, "unavailable") == 0))
		subscription_answered(s);
}

static size_t t_queued(void *t)
{
	struct sse_conn *s = t;
	return s->state == SSE_OPEN ? evbuffer_get_length(bufferevent_get_output(s->bev)) : 0;
}

/* Draining: say when to come back, in the stream's own terms (retry:) and
 * in ferry's, then end the stream. Anything else (a slow consumer, a
 * token) is cut at once: the browser reconnects with Last-Event-ID. */
static void t_close(void *t, enum transport_close why, const char *reason, int retry)
{
	struct sse_conn *s = t;
	if (s->state != SSE_OPEN)
		return;
	if (why == TRANSPORT_CLOSE_RESTART) {
		evbuffer_add_printf(out(s), "retry: %d\n\n", retry); /* (finish writes it) */
		char json[80];
		size_t n = xsnprintf(json, sizeof(json), "{\"type\":\"reconnect\",\"retry\":%d}",
				     retry);
		send_control(s, json, (size_t)n);
		finish(s);
	} else {
		flush_cancel(s->f, &s->flush);
		bufferevent_free(s->bev);
		s->bev = NULL;
		mark_dead(s);
	}
}

static const struct transport_ops sse_transport = {
	.name = "sse",
	.send_message = t_send_message,
	.send_event = t_send_event,
	.queued = t_queued,
	.close = t_close,
};

static void sse_destroy(struct sse_conn *s)
{
	struct ferry *f = s->f;
	if (s->session)
		session_free(s->session);
	flush_cancel(f, &s->flush);
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->early)
		evbuffer_free(s->early);
	if (s->resets)
		evbuffer_free(s->resets);
	event_free(s->start_ev);
	client_remove(f, &s->client);
	free(s->cursors);
	free(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	/* An SSE client has nothing to say; what it sends is dropped. */
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sse_conn *s = arg;
	client_enter(&s->client);
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && s->state == SSE_OPEN) {
		/* The read timeout is the heartbeat tick: clients never write. An
		 * event, not a comment: some proxies swallow comment-only traffic. */
		send_control(s, "{\"type\":\"heartbeat\"}", 20);
		bufferevent_enable(bev, EV_READ);
	} else {
		mark_dead(s);
	}
	client_leave(s->f, &s->client);
}

static void drain_cb(struct client *link, int retry_ms)
{
	struct sse_conn *s = container_of(link, struct sse_conn, client);
	client_enter(&s->client);
	t_close(s, TRANSPORT_CLOSE_RESTART, "draining", retry_ms);
	client_leave(s->f, &s->client);
}

static void destroy_cb(struct client *link)
{
	sse_destroy(container_of(link, struct sse_conn, client));
}

static const struct client_ops sse_client_ops = { .drain = drain_cb, .destroy = destroy_cb };

/* Apply each "NAME,ID" of a Last-Event-ID list to the channel it names (one
 * the request does not subscribe to is ignored). Returns 0, or -1 if an
 * entry is not a cursor. */
static int resume_from(const char *list, struct cursor *cursors, int n)
{
	for (const char *p = list;;) {
		p += strspn(p, " ");
		if (!*p)
			return 0;
		size_t len = strcspn(p, " ");
		struct cursor seen;
		if (cursor_parse(p, len, &seen) < 0)
			return -1;
		struct cursor *cur = cursor_find(cursors, n, seen.channel);
		if (cur)
			memcpy(cur->id, seen.id, sizeof(cur->id));
		p += len;
	}
}

void sse_start(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	const struct config *cfg = f->cfg;
	struct cursor *cursors;
	struct identity id = { 0 };
	int n;
	if (admission_check(c, req) < 0 || (n = admission_channels(c, req, &cursors, &id)) < 0)
		return;
	/* Last-Event-ID (the browser's reconnect) overrides the URL's cursors;
	 * event-source-polyfill sends it as a query parameter instead. It names
	 * up to --max-subscriptions cursors: all of them are read, or the
	 * request is refused (a cursor skipped would lose what it missed). */
	const char *last = http_request_header(req, "Last-Event-ID");
	char *last_param = NULL;
	if (!last) {
		size_t lpos = 0, lsz = strlen(req->query) + 1; /* a value fits in its query */
		last_param = xmalloc(lsz);
		if (http_query_next(req->query, "lastEventId", &lpos, last_param, lsz) > 0)
			last = last_param;
	}
	int bad_last = last && resume_from(last, cursors, n) < 0;
	free(last_param);
	if (bad_last) {
		free(cursors);
		identity_clear(&id);
		httpconn_error(c, 400,
			       "invalid Last-Event-ID (NAME,ID entries separated by spaces)");
		return;
	}
	char pad[8];
	size_t ppos = 0;
	int padded = http_query_next(req->query, "pad", &ppos, pad, sizeof(pad)) > 0 &&
		     strcmp(pad, "0") != 0;
	ppos = 0;
	int json = http_query_next(req->query, "format", &ppos, pad, sizeof(pad)) > 0 &&
		   strcmp(pad, "json") == 0;

	struct sse_conn *s = xcalloc(1, sizeof(*s));
	s->f = f;
	s->cursors = cursors;
	s->ncursors = n;
	s->padded = padded;
	s->json = json;
	s->early = evbuffer_new();
	s->resets = evbuffer_new();
	s->awaiting = n;
	s->start_ev = event_new(f->base, -1, 0, start_cb, s);
	httpconn_cors_headers(c, s->cors, sizeof(s->cors));
	xsnprintf(s->peer, sizeof(s->peer), "%s", httpconn_peer(c));
	httpconn_set_status(c, 200); /* (for the access log: the stream starts here) */
	s->bev = httpconn_detach(c); /* req is gone from here on */

	client_add(f, &s->client, &sse_client_ops, TRANSPORT_SSE, 1, s->peer);
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_set_timeouts(s->bev, f->tv_heartbeat, NULL);
	/* writes go through flush.c, which arms EV_WRITE only when blocked */
	bufferevent_disable(s->bev, EV_WRITE);
	bufferevent_enable(s->bev, EV_READ);
	s->flush.cb = sse_flush;
	s->flush.arg = s;

	client_enter(&s->client);
	if (padded) {
		char *p = sse_padding(SSE_PADDING);
		evbuffer_add(s->early, p, SSE_PADDING);
		free(p);
	}
	evbuffer_add_printf(s->early, "retry: %d\n\n", SSE_RETRY_MS);
	s->session = session_new(f, &sse_transport, s);
	session_set_identity(s->session, &id);		  /* the session owns it now */
	session_set_client(s->session, NULL, s->peer, 1); /* the app was asked (admission.c) */
	session_open(s->session, cfg->heartbeat_ms);	  /* the first event: the stream flows */
	for (int i = 0; i < n && s->state != SSE_DEAD; i++)
		session_subscribe(s->session, cursors[i].channel,
				  cursors[i].id[0] ? cursors[i].id : NULL, NULL);
	log_debug("sse %s: open, %d channels%s", s->peer, n, padded ? ", padded" : "");
	client_leave(s->f, &s->client);
}
