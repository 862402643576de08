/* subscriber.c -- one subscriber of the load generator: connect from its
 * source address, send the transport's request, and turn what comes back
 * (WebSocket frames, an SSE stream, long-poll answers) into deliveries.
 * Speaks ferry's protocol or Nchan's, as the options say.
 *
 * A subscriber counts as subscribed when the server confirms it: ferry's
 * "subscribed" frame or event, ferry's first long-poll answer (it carries the
 * cursor), or for Nchan the "prime" message (seq 0) that the run publishes
 * before anyone connects and that Nchan hands every new subscriber first. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include "loadgen.h"

/* Any key will do: the load generator trusts the server's accept value. */
#define WS_KEY "bGJlbmNoLWxvYWRnZW4tMQ=="

static void subscriber_event(evutil_socket_t fd, short what, void *arg);

static int build_request(struct conn *c, char *buf, size_t cap)
{
	const struct options *o = &c->lg->opt;
	const char *host = c->lg->host_header, *ch = o->channel;
	int ferry = o->kind == SERVER_FERRY;
	switch (o->transport) {
	case TRANSPORT_WS:
		return snprintf(buf, cap,
				"GET %s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
				"Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
				"Sec-WebSocket-Version: 13\r\n%s\r\n",
				ferry ? "/ferry/ws?ch=" : "/sub/ws/", ch, host,
				o->deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n"
					   : "");
	case TRANSPORT_SSE:
		return snprintf(
			buf, cap,
			"GET %s%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
			ferry ? "/ferry/sse?ch=" : "/sub/sse/", ch, host);
	case TRANSPORT_POLL:
		if (ferry)
			return snprintf(buf, cap,
					"GET /ferry/poll?ch=%s%s%s HTTP/1.1\r\nHost: %s\r\n\r\n",
					ch, c->cursor ? "," : "", c->cursor ? c->cursor : "", host);
		if (c->cursor)
			return snprintf(
				buf, cap,
				"GET /sub/poll/%s HTTP/1.1\r\nHost: %s\r\nIf-Modified-Since: %s\r\n"
				"If-None-Match: %s\r\n\r\n",
				ch, host, c->cursor, c->etag ? c->etag : "");
		return snprintf(buf, cap, "GET /sub/poll/%s HTTP/1.1\r\nHost: %s\r\n\r\n", ch,
				host);
	}
	return -1;
}

/* The subscriber is gone for good; loadgen.c decides how to count it. */
static void lost(struct conn *c, enum fail_reason why)
{
	conn_close_socket(c);
	c->state = CONN_DEAD;
	loadgen_sub_failed(c->lg, c, why);
}

static int send_request(struct conn *c)
{
	char req[1024];
	int n = build_request(c, req, sizeof(req));
	if (n < 0 || (size_t)n >= sizeof(req) || conn_write_all(c, req, (size_t)n) < 0) {
		lost(c, FAIL_WRITE);
		return -1;
	}
	c->state = CONN_HEADERS;
	return 0;
}

static void connect_now(struct conn *c)
{
	c->fd = loadgen_connect_socket(c->lg, c->index);
	if (c->fd < 0) {
		c->state = CONN_DEAD;
		loadgen_sub_failed(c->lg, c, FAIL_CONNECT);
		return;
	}
	c->state = CONN_CONNECTING;
	conn_watch(c, EV_WRITE, subscriber_event);
}

void subscriber_start(struct conn *c)
{
	c->fd = -1;
	connect_now(c);
}

void subscriber_close(struct conn *c)
{
	conn_close_socket(c);
	c->state = CONN_DEAD;
}

/* Long-poll only: the server closed a keep-alive connection between answers;
 * open a new one and ask again from the same cursor. */
static void reconnect(struct conn *c)
{
	conn_close_socket(c);
	c->lg->reconnects++;
	connect_now(c);
}

static void deliver(struct conn *c, uint64_t seq, uint64_t sent_ns)
{
	if (seq == 0) { /* Nchan's prime: this subscriber is in */
		if (!c->subscribed)
			loadgen_subscribed(c->lg, c);
		return;
	}
	loadgen_delivery(c->lg, c, seq, sent_ns);
}

static void on_text(struct conn *c, const char *p, size_t len)
{
	uint64_t seq, ns;
	if (marker_find(p, len, &seq, &ns)) {
		deliver(c, seq, ns);
		return;
	}
	if (!c->subscribed && c->lg->opt.kind == SERVER_FERRY &&
	    memmem(p, len, "\"type\":\"subscribed\"", 19))
		loadgen_subscribed(c->lg, c);
}

/* A compressed message: what a deflate client pays, on the load generator's core. */
static void on_deflated(struct conn *c, const char *p, size_t len)
{
	static z_stream z;
	static int ready;
	static unsigned char out[1 << 20], in[1 << 20];
	if (!ready) {
		if (inflateInit2(&z, -15) != Z_OK)
			abort();
		ready = 1;
	}
	if (len + 4 > sizeof(in)) {
		lost(c, FAIL_PROTOCOL);
		return;
	}
	memcpy(in, p, len);
	memcpy(in + len, "\0\0\xff\xff", 4);
	inflateReset(&z);
	z.next_in = in;
	z.avail_in = (uInt)(len + 4);
	z.next_out = out;
	z.avail_out = sizeof(out);
	int rc = inflate(&z, Z_SYNC_FLUSH);
	if (rc != Z_OK && rc != Z_BUF_ERROR) {
		lost(c, FAIL_PROTOCOL);
		return;
	}
	on_text(c, (const char *)out, sizeof(out) - z.avail_out);
}

static void send_pong(struct conn *c, const char *payload, size_t len)
{
	char frame[2 + 4 + 125];
	frame[0] = (char)0x8a;
	frame[1] = (char)(0x80 | len);
	memset(frame + 2, 0, 4); /* a zero mask leaves the payload as it is */
	memcpy(frame + 6, payload, len);
	if (conn_write_all(c, frame, 6 + len) < 0)
		lost(c, FAIL_WRITE);
}

/* Frames from the server: unmasked, control frames at most 125 bytes. */
static size_t parse_ws(struct conn *c, const char *p, size_t len)
{
	size_t off = 0;
	while (len - off >= 2) {
		const uint8_t *f = (const uint8_t *)p + off;
		uint8_t opcode = f[0] & 0x0f;
		uint64_t plen = f[1] & 0x7f;
		size_t hlen = 2;
		if (f[1] & 0x80) {
			lost(c, FAIL_PROTOCOL);
			return off;
		}
		if (plen == 126) {
			if (len - off < 4)
				break;
			plen = (uint64_t)f[2] << 8 | f[3];
			hlen = 4;
		} else if (plen == 127) {
			if (len - off < 10)
				break;
			plen = 0;
			for (int i = 2; i < 10; i++)
				plen = plen << 8 | f[i];
			hlen = 10;
		}
		if (plen > c->lg->rbuf_size / 4) {
			lost(c, FAIL_PROTOCOL);
			return off;
		}
		if (len - off - hlen < plen)
			break;
		const char *payload = p + off + hlen;
		switch (opcode) {
		case 0x0: /* continuation: fragments of ours never split a marker */
		case 0x1:
		case 0x2:
			if (f[0] & 0x40) /* permessage-deflate, no context takeover */
				on_deflated(c, payload, (size_t)plen);
			else
				on_text(c, payload, (size_t)plen);
			break;
		case 0x8:
			if (plen >= 2 && ((uint8_t)payload[0] << 8 | (uint8_t)payload[1]) == 4008)
				c->lg->slow_consumer_closes++;
			lost(c, FAIL_CLOSED);
			return off;
		case 0x9:
			if (plen > 125) {
				lost(c, FAIL_PROTOCOL);
				return off;
			}
			send_pong(c, payload, (size_t)plen);
			if (c->state == CONN_DEAD)
				return off;
			break;
		case 0xa:
			break;
		default:
			lost(c, FAIL_PROTOCOL);
			return off;
		}
		off += hlen + (size_t)plen;
	}
	return off;
}

/* Only "data:" lines matter: they hold ferry's control events and every
 * message, whichever server sent them. */
static size_t parse_sse(struct conn *c, const char *p, size_t len)
{
	size_t off = 0;
	const char *nl;
	while ((nl = memchr(p + off, '\n', len - off))) {
		const char *line = p + off;
		size_t llen = (size_t)(nl - line);
		if (llen >= 5 && memcmp(line, "data:", 5) == 0)
			on_text(c, line + 5, llen - 5);
		off += llen + 1;
	}
	if (len - off > 64 * 1024)
		lost(c, FAIL_PROTOCOL);
	return off;
}

static void replace_string(char **dst, const char *p, size_t len)
{
	free(*dst);
	*dst = strndup(p, len);
	if (!*dst)
		abort();
}

/* A complete long-poll answer. */
static void poll_answer(struct conn *c, const char *body, size_t len)
{
	struct loadgen *lg = c->lg;
	if (c->status == 304 || c->status == 408)
		return; /* Nchan: nothing new, ask again */
	if (c->status != 200) {
		if (!c->subscribed)
			lost(c, FAIL_STATUS);
		else
			lg->poll_errors++;
		return;
	}
	size_t pos = 0, used;
	uint64_t seq, ns;
	while ((used = marker_find(body + pos, len - pos, &seq, &ns))) {
		deliver(c, seq, ns);
		pos += used;
	}
	if (lg->opt.kind != SERVER_FERRY)
		return;
	/* ferry: the cursor to ask from next time; the first answer is the
	 * subscription itself */
	const char *k = memmem(body, len, lg->cursor_key, strlen(lg->cursor_key));
	if (k) {
		const char *v = k + strlen(lg->cursor_key);
		const char *q = memchr(v, '"', len - (size_t)(v - body));
		if (q)
			replace_string(&c->cursor, v, (size_t)(q - v));
	}
	if (!c->subscribed) {
		if (c->cursor)
			loadgen_subscribed(lg, c);
		else
			lost(c, FAIL_PROTOCOL);
	}
}

/* Parse p[0..len); returns the bytes used. The subscriber may be lost or
 * reconnecting when this returns: the caller checks the state. */
static size_t parse(struct conn *c, const char *p, size_t len)
{
	size_t off = 0;
	struct http_response r;
	enum transport t = c->lg->opt.transport;
	while (off < len) {
		switch (c->state) {
		case CONN_HEADERS: {
			long hlen = http_response_parse(p + off, len - off, &r);
			if (hlen == 0)
				return off;
			if (hlen < 0 || r.chunked) {
				lost(c, FAIL_PROTOCOL);
				return off;
			}
			off += (size_t)hlen;
			if (t == TRANSPORT_POLL) {
				if (r.content_length < 0) {
					lost(c, FAIL_PROTOCOL);
					return off;
				}
				c->status = r.status;
				c->close_after = (uint8_t)r.close;
				c->body_left = (uint32_t)r.content_length;
				if (r.status == 200 && r.last_modified)
					replace_string(&c->cursor, r.last_modified,
						       r.last_modified_len);
				if (r.status == 200 && r.etag)
					replace_string(&c->etag, r.etag, r.etag_len);
				c->state = CONN_BODY;
				break;
			}
			if (r.status != (t == TRANSPORT_WS ? 101 : 200)) {
				lost(c, FAIL_STATUS);
				return off;
			}
			c->state = CONN_STREAM;
			break;
		}
		case CONN_BODY:
			if (len - off < c->body_left)
				return off;
			poll_answer(c, p + off, c->body_left);
			off += c->body_left;
			if (c->state == CONN_DEAD)
				return off;
			if (c->close_after)
				reconnect(c);
			else
				send_request(c);
			if (c->state != CONN_HEADERS)
				return off;
			break;
		case CONN_STREAM:
			return off + (t == TRANSPORT_WS ? parse_ws(c, p + off, len - off)
							: parse_sse(c, p + off, len - off));
		default:
			return off;
		}
	}
	/* a zero-length body completes with no bytes after the head */
	if (c->state == CONN_BODY && c->body_left == 0) {
		poll_answer(c, p + off, 0);
		if (c->state != CONN_DEAD) {
			if (c->close_after)
				reconnect(c);
			else
				send_request(c);
		}
	}
	return off;
}

static void subscriber_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct loadgen *lg = c->lg;
	if (c->state == CONN_CONNECTING) {
		if (conn_connect_result(c) < 0) {
			lost(c, FAIL_CONNECT);
			return;
		}
		if (send_request(c) == 0)
			conn_watch(c, EV_READ | EV_PERSIST, subscriber_event);
		return;
	}
	char *p;
	size_t len;
	lg->now_ns = loadgen_clock_ns();
	switch (conn_read(c, &p, &len)) {
	case CONN_READ_AGAIN:
		return;
	case CONN_READ_ERROR:
		lost(c, FAIL_CLOSED);
		break;
	case CONN_READ_EOF:
		parse(c, p, len);
		if (c->state == CONN_DEAD || c->state == CONN_CONNECTING)
			break;
		/* a long-poll keep-alive closed while no answer was under way */
		if (lg->opt.transport == TRANSPORT_POLL && c->subscribed &&
		    c->state == CONN_HEADERS)
			reconnect(c);
		else
			lost(c, FAIL_CLOSED);
		break;
	case CONN_READ_DATA: {
		size_t used = parse(c, p, len);
		if (c->state == CONN_HEADERS || c->state == CONN_BODY || c->state == CONN_STREAM)
			conn_carry_save(c, p + used, len - used);
		break;
	}
	}
	loadgen_sub_progress(lg);
}
