/* publisher.c -- the publishing side of the load generator: a few keep-alive
 * HTTP connections that each POST one message at a time, so their number
 * bounds the publish requests in flight. A connection the server closes is
 * opened again; a message whose answer was lost with it counts as failed. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "loadgen.h"

/* consecutive failed connects after which a publisher gives up */
#define PUBLISHER_MAX_FAILURES 10

static void publisher_event(evutil_socket_t fd, short what, void *arg);

static void publisher_connect(struct conn *c)
{
	c->fd = loadgen_connect_socket(c->lg, c->index);
	if (c->fd < 0) {
		c->state = CONN_DEAD;
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = CONN_CONNECTING;
	conn_watch(c, EV_WRITE, publisher_event);
}

/* The connection failed or closed: connect again (bounded), and only then
 * report the message it carried, since that may publish the next one. */
static void publisher_broken(struct conn *c)
{
	int was_busy = c->state == CONN_HEADERS || c->state == CONN_BODY;
	uint64_t seq = c->seq;
	conn_close_socket(c);
	if (++c->failures > PUBLISHER_MAX_FAILURES) {
		c->state = CONN_DEAD;
	} else {
		c->lg->publisher_reconnects++;
		publisher_connect(c);
	}
	if (was_busy)
		loadgen_publish_done(c->lg, seq, 0);
}

void publisher_start_all(struct loadgen *lg)
{
	for (uint32_t i = 0; i < lg->opt.publishers; i++) {
		struct conn *c = &lg->pubs[i];
		c->lg = lg;
		c->index = i;
		c->fd = -1;
		c->is_publisher = 1;
		publisher_connect(c);
	}
}

void publisher_close_all(struct loadgen *lg)
{
	for (uint32_t i = 0; i < lg->opt.publishers; i++)
		conn_close_socket(&lg->pubs[i]);
}

int publisher_send(struct loadgen *lg, uint64_t seq)
{
	struct conn *c = NULL;
	for (uint32_t i = 0; i < lg->opt.publishers && !c; i++)
		if (lg->pubs[i].state == CONN_READY)
			c = &lg->pubs[i];
	if (!c)
		return -1;

	const struct options *o = &lg->opt;
	char marker[64];
	int mlen = snprintf(marker, sizeof(marker), "#%llu:%llu#", (unsigned long long)seq,
			    (unsigned long long)loadgen_clock_ns());
	size_t plen = o->payload > (uint32_t)mlen ? o->payload : (size_t)mlen;
	int hlen =
		snprintf(lg->pub_buf, lg->pub_buf_size,
			 "POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 o->kind == SERVER_FERRY ? "/ferry/publish/" : "/pub/", o->channel,
			 lg->host_header, o->content_type ? o->content_type : "text/plain", plen);
	char *body = lg->pub_buf + hlen;
	if (o->json_payload) {
		/* a quote feed's object, the marker in its first string: what a
		 * typical JSON message gives deflate */
		int n = snprintf(
			body, plen + 1,
			"{\"id\":\"%s\",\"symbol\":\"ACME\",\"bid\":%llu.25,\"ask\":%llu.5,"
			"\"venue\":\"example-exchange\",\"tags\":[\"equity\",\"realtime\"],"
			"\"note\":\"",
			marker, (unsigned long long)(100 + seq % 17),
			(unsigned long long)(101 + seq % 13));
		size_t at = n > 0 && (size_t)n < plen ? (size_t)n : 0;
		static const char words[] = "the quick brown fox jumps over the lazy dog ";
		for (size_t i = 0; at + 2 < plen; i++)
			body[at++] = words[i % (sizeof(words) - 1)];
		if (at + 2 <= plen) {
			body[at++] = '"';
			body[at++] = '}';
		}
		while (at < plen)
			body[at++] = ' ';
	} else {
		memcpy(body, marker, (size_t)mlen);
		memset(body + mlen, 'x', plen - (size_t)mlen);
	}

	c->seq = seq;
	c->state = CONN_HEADERS;
	if (conn_write_all(c, lg->pub_buf, (size_t)hlen + plen) < 0)
		publisher_broken(c);
	return 0;
}

static void response_done(struct conn *c)
{
	int ok = c->status >= 200 && c->status < 300;
	c->failures = 0;
	if (c->close_after) {
		conn_close_socket(c);
		c->lg->publisher_reconnects++;
		publisher_connect(c);
	} else {
		c->state = CONN_READY;
	}
	loadgen_publish_done(c->lg, c->seq, ok);
	if (c->state == CONN_READY)
		loadgen_publisher_ready(c->lg);
}

static size_t parse(struct conn *c, const char *p, size_t len)
{
	size_t off = 0;
	struct http_response r;
	while (off < len || (c->state == CONN_BODY && c->body_left == 0)) {
		switch (c->state) {
		case CONN_HEADERS: {
			long hlen = http_response_parse(p + off, len - off, &r);
			if (hlen == 0)
				return off;
			if (hlen < 0 || r.chunked || r.content_length < 0) {
				publisher_broken(c);
				return off;
			}
			off += (size_t)hlen;
			c->status = r.status;
			c->close_after = (uint8_t)r.close;
			c->body_left = (uint32_t)r.content_length;
			c->state = CONN_BODY;
			break;
		}
		case CONN_BODY:
			if (len - off < c->body_left)
				return off;
			off += c->body_left;
			c->body_left = 0;
			response_done(c);
			return off; /* one request at a time: anything more is noise */
		default:
			return len; /* nothing was asked: ignore */
		}
	}
	return off;
}

static void publisher_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_CONNECTING) {
		if (conn_connect_result(c) < 0) {
			publisher_broken(c);
			return;
		}
		c->state = CONN_READY;
		conn_watch(c, EV_READ | EV_PERSIST, publisher_event);
		loadgen_publisher_ready(c->lg);
		return;
	}
	char *p;
	size_t len;
	switch (conn_read(c, &p, &len)) {
	case CONN_READ_AGAIN:
		return;
	case CONN_READ_ERROR:
	case CONN_READ_EOF:
		publisher_broken(c);
		return;
	case CONN_READ_DATA: {
		size_t used = parse(c, p, len);
		if (c->state == CONN_HEADERS || c->state == CONN_BODY)
			conn_carry_save(c, p + used, len - used);
		return;
	}
	}
}
