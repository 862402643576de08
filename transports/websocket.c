/* websocket.c -- WebSocket connections: frame I/O on a bufferevent (the
 * message-level rules of RFC 6455 are ws_message.c's), ping/pong, the
 * close handshake, and ferry's JSON protocol through a session.
 *
 * Lifetime (clients.h): WS_DEAD is client_close(); the connection is freed
 * when its own callback returns, never inside the hub's fan-out or a
 * session call. */
#include "websocket.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "admission.h"
#include "auth.h"
#include "bucket.h"
#include "clients.h"
#include "container.h"
#include "cursor.h"
#include "ferry.h"
#include "flush.h"
#include "http.h"
#include "linger.h"
#include "httpconn.h"
#include "log.h"
#include "message.h"
#include "origin.h"
#include "protocol.h"
#include "session.h"
#include "tls.h"
#include "transport.h"
#include "ws_deflate.h"
#include "ws_encode.h"
#include "ws_frame.h"
#include "ws_handshake.h"
#include "ws_message.h"
#include "xmalloc.h"

/* Output beyond which a ping's answer waits (see ws_conn.pong_due): below
 * it, the peer reads, and every ping gets its own pong. */
#define PONG_BACKLOG (16 * 1024)

/* Channel messages one loop turn may batch for a socket (see ws_conn.batch). */
#define WS_BATCH_MAX 8

enum ws_state {
	WS_OPEN,       /* frames both ways */
	WS_CLOSE_SENT, /* our Close is out; waiting for the peer's (bounded) */
	WS_DEAD,       /* closed (client_close): freed when no callback of its own runs */
};

struct ws_conn {
	/* What a delivery and the write after it touch come first, together:
	 * with 10,000 subscribers each further cache line a delivery touches is
	 * a miss, since the kernel's work for the writes in between evicts it. */
	struct flush_entry flush;
	struct ferry *f;
	enum ws_state state;
	evutil_socket_t fd; /* -1 for TLS: only the bufferevent writes */
	unsigned nbatch;
	/* The evbuffer may hold output (cleared where it is seen empty). With
	 * 10,000 subscribers, asking libevent touched two more structures per
	 * delivery, each a cache miss: 5% of the CPU of a fast fan-out. */
	int buffered;
	/* Channel messages for this loop turn's write, while nothing else is
	 * queued: one send straight from their shared frames. Through the
	 * evbuffer, each delivery allocated a chain and freed it once written,
	 * about half of the instructions a delivery took. Whatever cannot go
	 * this way (a TLS socket, a blocked one, a protocol event, more than
	 * WS_BATCH_MAX messages) goes through the evbuffer, this first. */
	struct message *batch[WS_BATCH_MAX];

	struct client client;
	struct session *session; /* WS_MODE_FERRY only */
	struct bufferevent *bev;
	enum ws_mode mode;
	struct ws_parser parser;
	struct ws_message message; /* fed from parser; reports to ws_message_cb */

	int deflate; /* permessage-deflate negotiated */
	int awaiting_pong;
	/* A ping's answer while over PONG_BACKLOG is queued: sent once the
	 * output is written, and replaced by a later ping's (RFC 6455 5.5.3), so
	 * a client that pings and never reads holds one pong, not one per ping. */
	int pong_due;
	uint8_t pong_len;
	uint8_t pong[125];
	int throttled; /* over --rate-messages: not reading until throttle fires */
	struct bucket rate;
	struct event *throttle; /* made the first time the client goes over */
	char peer[64];
};

static struct ws_conn *ws_of(struct client *c)
{
	return container_of(c, struct ws_conn, client);
}

static void set_dead(struct ws_conn *w)
{
	w->state = WS_DEAD;
	client_close(w->f, &w->client);
}

static const char *const ferry_protocols[] = { "ferry.v1", NULL };

static void rate_limit(struct ws_conn *w);
static void output_written(struct ws_conn *w);
static int over_queue(struct ws_conn *w);

/* Empty the batch: the first `written` bytes of it reached the socket; the
 * rest moves to the evbuffer with its references, ahead of anything newer. */
static void batch_spill(struct ws_conn *w, size_t written)
{
	for (unsigned i = 0; i < w->nbatch; i++) {
		struct message *m = w->batch[i];
		size_t len;
		const char *frame = message_wire(m, w->deflate ? WIRE_WS_DEFLATE : WIRE_WS, &len);
		if (written >= len) {
			written -= len;
			message_unref(m);
			continue;
		}
		/* (only here: the bufferevent is one more cache miss) */
		message_queue(bufferevent_get_output(w->bev), m, frame + written, len - written);
		message_unref(m);
		w->buffered = 1;
		written = 0;
	}
	w->nbatch = 0;
}

static size_t ws_queued(const struct ws_conn *w)
{
	size_t n = w->buffered ? evbuffer_get_length(bufferevent_get_output(w->bev)) : 0;
	for (unsigned i = 0; i < w->nbatch; i++)
		n += w->batch[i]->wire[w->deflate ? WIRE_WS_DEFLATE : WIRE_WS].len;
	return n;
}

/* The end of a loop turn in which this connection got output. */
static void ws_flush(void *arg)
{
	struct ws_conn *w = arg;
	if (w->nbatch == 0) {
		w->buffered = flush_bufferevent(w->bev);
		if (!w->buffered)
			output_written(w); /* (marks this entry again: written next turn) */
		return;
	}
	/* The evbuffer is empty while there is a batch (see ws_conn.batch). */
	struct iovec iov[WS_BATCH_MAX];
	size_t total = 0;
	for (unsigned i = 0; i < w->nbatch; i++) {
		iov[i].iov_base = (void *)message_wire(
			w->batch[i], w->deflate ? WIRE_WS_DEFLATE : WIRE_WS, &iov[i].iov_len);
		total += iov[i].iov_len;
	}
	/* send(), not write(): a socket call skips the VFS layer, a few
	 * percent of the kernel's cost of a small loopback write (bench/sendcost;
	 * bench/ceiling.c does the same); and a single buffer spares the kernel
	 * copying in an iovec array, the usual case below saturation being one
	 * message a turn. */
	ssize_t n;
	if (w->nbatch == 1) {
		n = send(w->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
	} else {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = w->nbatch };
		n = sendmsg(w->fd, &mh, MSG_NOSIGNAL);
	}
	size_t written = n > 0 ? (size_t)n : 0;
	/* On EAGAIN, a short write or an error, the rest goes the bufferevent's
	 * way: it writes when the socket can take more, or reports the error. */
	batch_spill(w, written);
	if (written < total)
		bufferevent_enable(w->bev, EV_WRITE);
	else
		output_written(w);
}

static void ws_send(struct ws_conn *w, enum ws_opcode op, const void *payload, size_t len)
{
	uint8_t hdr[10];
	size_t hlen = ws_frame_header(hdr, op, 1, len);
	struct evbuffer *out = bufferevent_get_output(w->bev);
	batch_spill(w, 0); /* keep the order */
	evbuffer_add(out, hdr, hlen);
	if (len)
		evbuffer_add(out, payload, len);
	w->buffered = 1;
	w->f->metrics.bytes_out += hlen + len;
	flush_mark(w->f, &w->flush);
}

/* The output is written: answer the last ping that waited for it. */
static void output_written(struct ws_conn *w)
{
	if (!w->pong_due || w->state != WS_OPEN)
		return;
	w->pong_due = 0;
	ws_send(w, WS_OP_PONG, w->pong, w->pong_len);
}

static void send_close_frame(struct ws_conn *w, int code, const char *reason)
{
	uint8_t payload[125];
	size_t rlen = strlen(reason);
	if (rlen > sizeof(payload) - 2)
		rlen = sizeof(payload) - 2; /* reasons are ours and short; never cut UTF-8 */
	payload[0] = (uint8_t)(code >> 8);
	payload[1] = (uint8_t)code;
	memcpy(payload + 2, reason, rlen);
	ws_send(w, WS_OP_CLOSE, payload, 2 + rlen);
}

/* Write what is queued, then close the socket (lingering, see linger.h);
 * the connection itself is done. */
static void start_flushing(struct ws_conn *w)
{
	struct bufferevent *bev = w->bev;
	batch_spill(w, 0);
	w->bev = NULL;
	set_dead(w);
	flush_cancel(w->f, &w->flush);
	linger_close(w->f, bev);
}

/* Fail the connection (RFC 6455 7.1.7): Close with a code, then hang up. */
static void ws_fail(struct ws_conn *w, int code, const char *reason, enum metric_error kind)
{
	if (w->state != WS_OPEN && w->state != WS_CLOSE_SENT)
		return;
	log_info("ws %s: closing %d: %s", w->peer, code, reason);
	w->f->metrics.errors[kind]++;
	if (w->state == WS_OPEN)
		send_close_frame(w, code, reason);
	start_flushing(w);
}

/* Start the closing handshake: Close out, wait for the peer's Close. */
static void ws_close(struct ws_conn *w, int code, const char *reason)
{
	if (w->state != WS_OPEN)
		return;
	send_close_frame(w, code, reason);
	w->state = WS_CLOSE_SENT;
	bufferevent_set_timeouts(w->bev, w->f->tv_close, w->f->tv_close);
}

static void ws_destroy(struct ws_conn *w)
{
	struct ferry *f = w->f;
	if (w->session)
		session_free(w->session);
	flush_cancel(f, &w->flush);
	for (unsigned i = 0; i < w->nbatch; i++)
		message_unref(w->batch[i]);
	if (w->bev)
		bufferevent_free(w->bev);
	client_remove(f, &w->client);
	ws_message_release(&w->message);
	if (w->throttle)
		event_free(w->throttle);
	free(w);
}

/* transport_ops for the session */

static void t_send_message(void *t, struct message *m)
{
	struct ws_conn *w = t;
	if (w->state != WS_OPEN)
		return;
	size_t len;
	enum wire wire = w->deflate ? WIRE_WS_DEFLATE : WIRE_WS;
	const char *frame = message_wire(m, wire, &len);
	if (!frame) /* first subscriber to see this message: encode it once */
		frame = w->deflate ? ws_encode_deflated(w->f, m, &len) : ws_encode_message(m, &len);
	if (!frame)
		return;
	if (w->deflate) {
		size_t plain;
		message_wire(m, WIRE_WS, &plain);
		w->f->metrics.ws_deflate_bytes_out += len;
		w->f->metrics.ws_deflate_bytes_plain += plain;
	}
	if (w->fd >= 0 && w->nbatch < WS_BATCH_MAX && !w->buffered) {
		w->batch[w->nbatch++] = message_ref(m);
	} else {
		batch_spill(w, 0);
		message_queue(bufferevent_get_output(w->bev), m, frame, len);
		w->buffered = 1;
	}
	w->f->metrics.bytes_out += len;
	flush_mark(w->f, &w->flush);
}

static void t_send_event(void *t, const struct proto_event *ev)
{
	struct ws_conn *w = t;
	if (w->state != WS_OPEN)
		return;
	size_t len;
	char *json = proto_event_json(ev, &len);
	ws_send(w, WS_OP_TEXT, json, len);
	free(json);
}

static size_t t_queued(void *t)
{
	struct ws_conn *w = t;
	return w->bev ? ws_queued(w) : 0;
}

static void close_restart(struct ws_conn *w, int retry_ms);

static void t_close(void *t, enum transport_close why, const char *reason, int retry_ms)
{
	switch (why) {
	case TRANSPORT_CLOSE_POLICY:
		ws_close(t, WS_CLOSE_POLICY, reason);
		return;
	case TRANSPORT_CLOSE_SLOW_CONSUMER:
		ws_close(t, WS_CLOSE_SLOW_CONSUMER, reason);
		return;
	case TRANSPORT_CLOSE_RESTART:
		close_restart(t, retry_ms);
		return;
	}
}

static const struct transport_ops ws_transport = {
	.name = "websocket",
	.send_message = t_send_message,
	.send_event = t_send_event,
	.queued = t_queued,
	.close = t_close,
};

/* what ws_message makes of the frames */

static void on_message(void *arg, enum ws_opcode opcode, const uint8_t *data, size_t len)
{
	struct ws_conn *w = arg;
	if (w->state != WS_OPEN)
		return; /* after our Close, data is ignored */
	switch (w->mode) {
	case WS_MODE_ECHO:
		/* What is still queued from earlier messages says whether the peer
		 * keeps up; a single large echo is fine. */
		if (evbuffer_get_length(bufferevent_get_output(w->bev)) >
		    w->f->cfg->out_queue_max) {
			w->f->metrics.drops++;
			ws_fail(w, WS_CLOSE_SLOW_CONSUMER, "slow consumer", ERR_SLOW_CONSUMER);
			return;
		}
		ws_send(w, opcode, data, len);
		break;
	case WS_MODE_FERRY:
		if (opcode == WS_OP_BINARY) {
			if (session_handle_binary(w->session, data, len) < 0) {
				ws_fail(w, WS_CLOSE_UNSUPPORTED,
					"a binary message must follow a publish with encoding binary",
					ERR_WS_BAD_FRAME);
				return;
			}
		} else {
			session_handle(w->session, (const char *)data, len);
		}
		rate_limit(w);
		break;
	}
}

static void on_ping(void *arg, const uint8_t *payload, size_t len)
{
	struct ws_conn *w = arg;
	if (w->state != WS_OPEN)
		return;
	if (!w->pong_due && ws_queued(w) < PONG_BACKLOG) {
		ws_send(w, WS_OP_PONG, payload, len);
		return;
	}
	/* (a control frame's payload is at most 125 bytes: ws_frame.c) */
	w->pong_due = 1;
	w->pong_len = (uint8_t)len;
	memcpy(w->pong, payload, len);
}

static void on_pong(void *arg, const uint8_t *payload, size_t len)
{
	/* liveness is any input (see read_cb) */
}

static void on_close(void *arg, unsigned code, const uint8_t *reason, size_t len)
{
	struct ws_conn *w = arg;
	if (w->state == WS_OPEN) {
		/* Echo the code (RFC 6455 5.5.1); then the server hangs up first. */
		if (code == WS_CLOSE_NO_STATUS)
			ws_send(w, WS_OP_CLOSE, NULL, 0);
		else
			send_close_frame(w, (int)code, "");
	}
	start_flushing(w);
}

static void on_error(void *arg, int code, const char *reason)
{
	enum metric_error kind;
	switch (code) {
	case WS_CLOSE_TOO_BIG:
		kind = ERR_WS_TOO_BIG;
		break;
	case WS_CLOSE_BAD_DATA:
		kind = ERR_WS_BAD_DATA;
		break;
	default: /* WS_CLOSE_PROTOCOL */
		kind = ERR_WS_PROTOCOL;
		break;
	}
	ws_fail(arg, code, reason, kind);
}

static const struct ws_message_callbacks ws_message_cb = {
	.on_message = on_message,
	.on_ping = on_ping,
	.on_pong = on_pong,
	.on_close = on_close,
	.on_error = on_error,
};

static void throttle_cb(evutil_socket_t fd, short what, void *arg);

/* --rate-messages: a client that spends its bucket is slowed, not closed:
 * ferry stops reading its socket until a message's worth has refilled, and
 * TCP holds the sender back. Pings wait too; the pause is short. */
static void rate_limit(struct ws_conn *w)
{
	int rate = w->f->cfg->rate_messages;
	if (!rate || w->state != WS_OPEN)
		return;
	struct timeval now;
	event_base_gettimeofday_cached(w->f->base, &now);
	/* the message was read already: it is charged, and the pause lasts
	 * until the bucket is out of debt */
	double wait_s = bucket_charge(&w->rate, rate, 2.0 * rate, &now);
	if (wait_s <= 0)
		return;
	if (!w->throttle) {
		w->throttle = evtimer_new(w->f->base, throttle_cb, w);
		log_info("ws %s: over --rate-messages %d/s, slowing it down", w->peer, rate);
	}
	w->f->metrics.limited[LIMIT_CLIENT_RATE]++;
	w->throttled = 1;
	bufferevent_disable(w->bev, EV_READ);
	struct timeval tv = { (time_t)wait_s,
			      (suseconds_t)((wait_s - (double)(time_t)wait_s) * 1e6) + 1 };
	event_add(w->throttle, &tv);
}

static int reading(const struct ws_conn *w)
{
	return w->state == WS_OPEN || w->state == WS_CLOSE_SENT;
}

static void process_input(struct ws_conn *w)
{
	struct evbuffer *in = bufferevent_get_input(w->bev);
	while (reading(w) && !w->throttled) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		const uint8_t *data = v.iov_base;
		size_t off = 0;
		while (reading(w) && !w->throttled) {
			struct ws_event ev;
			ssize_t n = ws_parser_feed(&w->parser, data + off, v.iov_len - off, &ev);
			if (n < 0) {
				ws_message_parse_error(&w->message, (int)n);
				break;
			}
			off += (size_t)n;
			if (ev.type == WS_EV_NONE)
				break;
			if (over_queue(w))
				break;
			ws_message_feed(&w->message, &w->parser, &ev);
		}
		evbuffer_drain(in, off);
		w->f->metrics.bytes_in += off;
	}
}

/* bufferevent callbacks */

static void throttle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_conn *w = arg;
	client_enter(&w->client);
	w->throttled = 0;
	if (reading(w)) {
		bufferevent_enable(w->bev, EV_READ);
		process_input(w); /* what arrived before the pause */
	}
	client_leave(w->f, &w->client);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct ws_conn *w = arg;
	w->buffered = !flush_written(bev);
	if (!w->buffered)
		output_written(w);
}

/* Everything queued to the client counts against --out-queue-max: answers
 * to its own frames (pongs, replies to its operations, echoes) as much as
 * channel messages, so a client that sends and never reads is closed like
 * any slow consumer. What is queued from earlier frames says whether the
 * peer keeps up: checked before each frame, a single large echo is fine. */
static int over_queue(struct ws_conn *w)
{
	if (w->state != WS_OPEN || ws_queued(w) <= w->f->cfg->out_queue_max)
		return 0;
	w->f->metrics.drops++;
	ws_fail(w, WS_CLOSE_SLOW_CONSUMER, "slow consumer", ERR_SLOW_CONSUMER);
	return 1;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct ws_conn *w = arg;
	client_enter(&w->client);
	if (w->awaiting_pong && w->state == WS_OPEN) {
		w->awaiting_pong = 0; /* any input proves the peer is alive */
		bufferevent_set_timeouts(w->bev, w->f->tv_ws_ping, NULL);
	}
	process_input(w);
	client_leave(w->f, &w->client);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ws_conn *w = arg;
	client_enter(&w->client);
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && w->state == WS_OPEN) {
		if (!w->awaiting_pong) {
			w->awaiting_pong = 1;
			ws_send(w, WS_OP_PING, "ferry", 5);
			bufferevent_set_timeouts(w->bev, w->f->tv_ws_pong, NULL);
			bufferevent_enable(w->bev, EV_READ);
		} else {
			log_info("ws %s: no pong, dropping", w->peer);
			w->f->metrics.errors[ERR_WS_PING_TIMEOUT]++;
			set_dead(w);
		}
	} else {
		if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && w->state == WS_OPEN)
			log_debug("ws %s: connection lost", w->peer);
		set_dead(w);
	}
	client_leave(w->f, &w->client);
}

/* Close 1012 (Service Restart) with a reason the client can parse,
 * "retry=<ms>", the jittered delay before it should reconnect. */
static void close_restart(struct ws_conn *w, int retry_ms)
{
	char reason[48];
	xsnprintf(reason, sizeof(reason), "retry=%d", retry_ms);
	ws_close(w, WS_CLOSE_RESTART, reason);
}

static void drain_cb(struct client *link, int retry_ms)
{
	close_restart(ws_of(link), retry_ms);
}

static void destroy_cb(struct client *link)
{
	ws_destroy(ws_of(link));
}

static const struct client_ops ws_client_ops = { .drain = drain_cb, .destroy = destroy_cb };

/* The handshake */

static void refuse(struct httpconn *c, int status, const char *headers, const char *reason)
{
	size_t len = strlen(reason);
	char *body = xmalloc(len + 2);
	memcpy(body, reason, len);
	memcpy(body + len, "\n", 2);
	log_info("ws %s: handshake refused %d: %s", httpconn_peer(c), status, reason);
	httpconn_text(c, status, headers, body);
	free(body);
}

/* Check the ?ch= subscriptions before switching protocols, so a bad name is
 * a 400 rather than a socket that closes at once. */
static int channels_valid(const struct config *cfg, const char *query)
{
	size_t pos = 0;
	int n = 0, got;
	struct cursor c;
	while ((got = admission_next_channel(query, &pos, &c)) != 0)
		if (got < 0 || ++n > cfg->max_subscriptions)
			return 0;
	return 1;
}

void websocket_upgrade(struct httpconn *c, const struct http_request *req, enum ws_mode mode)
{
	struct ferry *f = httpconn_ferry(c);
	const struct config *cfg = f->cfg;

	if (!origin_request_allowed(cfg, req, httpconn_socket_peer(c), 0)) {
		refuse(c, 403, "", "origin not allowed");
		return;
	}
	struct ws_handshake_request hreq = {
		.is_get = strcmp(req->method, "GET") == 0,
		.http11 = req->http_major > 1 || (req->http_major == 1 && req->http_minor >= 1),
		.upgrade = http_request_header(req, "Upgrade"),
		.connection = http_request_header(req, "Connection"),
		.key = http_request_header(req, "Sec-WebSocket-Key"),
		.version = http_request_header(req, "Sec-WebSocket-Version"),
		.protocols = http_request_header(req, "Sec-WebSocket-Protocol"),
	};
	struct ws_handshake_result res;
	ws_handshake_check(&hreq, mode == WS_MODE_FERRY ? ferry_protocols : NULL, &res);
	if (res.status == 426) {
		refuse(c, 426, "Sec-WebSocket-Version: 13\r\n", res.error);
		return;
	}
	if (res.status != 101) {
		refuse(c, res.status, "", res.error);
		return;
	}
	if (mode == WS_MODE_FERRY && !channels_valid(cfg, req->query)) {
		refuse(c, 400, "", "invalid ch= parameter (channel name, or too many)");
		return;
	}
	if (f->draining) {
		char hdr[48];
		xsnprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n",
			  1 + cfg->reconnect_delay_ms / 1000);
		refuse(c, 503, hdr, "server is restarting");
		return;
	}
	/* A token in the header or the query is checked now (401); with
	 * --require-token and none, the first operation must be auth. */
	struct identity id = { 0 };
	const char *token_err = NULL;
	if (mode == WS_MODE_FERRY && auth_request(f, req, &id, &token_err) < 0) {
		char reason[96];
		xsnprintf(reason, sizeof(reason), "invalid token: %s", token_err); /* a constant */
		refuse(c, 401, "WWW-Authenticate: Bearer\r\n", reason);
		return;
	}

	struct ws_conn *w = xcalloc(1, sizeof(*w));
	w->f = f;
	w->mode = mode;
	xsnprintf(w->peer, sizeof(w->peer), "%s", httpconn_peer(c));
	ws_parser_init(&w->parser, cfg->ws_max_message);
	ws_message_init(&w->message, &ws_message_cb, w, cfg->ws_max_message);
	const char *deflate =
		cfg->ws_deflate
			? ws_deflate_negotiate(http_request_header(req, "Sec-WebSocket-Extensions"))
			: NULL;
	if (deflate) {
		w->deflate = 1;
		w->parser.allow_rsv1 = 1;
		ws_message_enable_deflate(&w->message);
	}

	/* Copy what we still need from the request: detaching frees it. */
	char *query = xstrdup(req->query);
	const char *cookie_hdr = http_request_header(req, "Cookie");
	char *cookie = cookie_hdr ? xstrdup(cookie_hdr) : NULL;
	httpconn_set_status(c, 101);
	w->bev = httpconn_detach(c);

	struct evbuffer *out = bufferevent_get_output(w->bev);
	evbuffer_add_printf(out,
			    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
			    res.accept);
	if (res.protocol)
		evbuffer_add_printf(out, "Sec-WebSocket-Protocol: %s\r\n", res.protocol);
	if (deflate)
		evbuffer_add_printf(out, "Sec-WebSocket-Extensions: %s\r\n", deflate);
	evbuffer_add(out, "\r\n", 2);
	w->buffered = 1;

	client_add(f, &w->client, &ws_client_ops, TRANSPORT_WS, 1, w->peer);
	bufferevent_setcb(w->bev, read_cb, write_cb, event_cb, w);
	bufferevent_set_timeouts(w->bev, f->tv_ws_ping, NULL);
	/* writes go through flush.c, which arms EV_WRITE only when blocked */
	bufferevent_disable(w->bev, EV_WRITE);
	bufferevent_enable(w->bev, EV_READ);
	/* bufferevent_getfd takes the bufferevent's lock: ask once */
	w->fd = tls_is_tls(w->bev) ? -1 : bufferevent_getfd(w->bev);
	w->flush.cb = ws_flush;
	w->flush.arg = w;
	flush_mark(f, &w->flush); /* the 101 */
	log_debug("ws %s: open (%s)", w->peer, mode == WS_MODE_ECHO ? "echo" : "ferry");

	client_enter(&w->client);
	if (mode == WS_MODE_FERRY) {
		w->session = session_new(f, &ws_transport, w);
		if (!id.authenticated && auth_required(f))
			session_require_auth(w->session);
		session_set_identity(w->session, &id); /* the session owns it now */
		session_set_client(w->session, cookie, w->peer, 0);
		session_open(w->session, cfg->ws_ping_ms);
		size_t pos = 0;
		struct cursor ch;
		while (admission_next_channel(query, &pos, &ch) > 0)
			session_subscribe(w->session, ch.channel, ch.id[0] ? ch.id : NULL, NULL);
	}
	free(query);
	free(cookie);
	/* Frames the client sent right behind its handshake. */
	process_input(w);
	client_leave(w->f, &w->client);
}

int websocket_init(struct ferry *f, char *err, size_t errsz)
{
	f->ws_deflater = NULL; /* made by the first message a deflate client gets */
	return 0;
}

void websocket_free(struct ferry *f)
{
	ws_deflater_free(f->ws_deflater);
	f->ws_deflater = NULL;
}
