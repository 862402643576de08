/* conn.c -- socket plumbing shared by the load generator's subscribers and
 * publishers: event arming, whole-request writes, reads behind a carry of
 * unparsed bytes, response heads, and the payload marker. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

void conn_watch(struct conn *c, short what, event_callback_fn cb)
{
	if (event_initialized(&c->ev))
		event_del(&c->ev);
	event_assign(&c->ev, c->lg->base, c->fd, what, cb, c);
	/* Publishers first: a publish answer waiting behind thousands of
	 * subscriber reads would leave the server idle. */
	event_priority_set(&c->ev, c->is_publisher ? 0 : 1);
	event_add(&c->ev, NULL);
}

void conn_close_socket(struct conn *c)
{
	if (event_initialized(&c->ev))
		event_del(&c->ev);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->carry_len = 0;
}

int conn_write_all(struct conn *c, const char *p, size_t len)
{
	ssize_t n;
	do
		n = write(c->fd, p, len);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

int conn_connect_result(struct conn *c)
{
	int err = 0;
	socklen_t elen = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

enum conn_read_result conn_read(struct conn *c, char **bytes, size_t *len)
{
	struct loadgen *lg = c->lg;
	size_t have = c->carry_len;
	if (have >= lg->rbuf_size / 2)
		return CONN_READ_ERROR; /* no frame or answer we expect is this big */
	if (have)
		memcpy(lg->rbuf, c->carry, have);
	c->carry_len = 0;
	*bytes = lg->rbuf;
	*len = have;
	ssize_t n;
	do
		n = read(c->fd, lg->rbuf + have, lg->rbuf_size - have);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			conn_carry_save(c, lg->rbuf, have);
			return CONN_READ_AGAIN;
		}
		return CONN_READ_ERROR;
	}
	if (n == 0)
		return CONN_READ_EOF;
	*len = have + (size_t)n;
	return CONN_READ_DATA;
}

void conn_carry_save(struct conn *c, const char *p, size_t len)
{
	if (len > c->carry_cap) {
		size_t cap = c->carry_cap ? c->carry_cap : 256;
		while (cap < len)
			cap *= 2;
		char *bigger = realloc(c->carry, cap);
		if (!bigger) {
			fputs("loadgen: out of memory\n", stderr);
			abort();
		}
		c->carry = bigger;
		c->carry_cap = (uint32_t)cap;
	}
	if (len)
		memmove(c->carry, p, len);
	c->carry_len = (uint32_t)len;
}

/* The value of header name in line[0..len) (trimmed), or NULL. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
		return NULL;
	const char *v = line + nlen + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*vlen = (size_t)(end - v);
	return v;
}

long http_response_parse(const char *p, size_t len, struct http_response *r)
{
	const char *head_end = memmem(p, len, "\r\n\r\n", 4);
	if (!head_end)
		return len > 64 * 1024 ? -1 : 0;
	memset(r, 0, sizeof(*r));
	r->content_length = -1;
	if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[9]))
		return -1;
	r->status = atoi(p + 9);
	const char *line = memchr(p, '\n', (size_t)(head_end - p)) + 1;
	while (line < head_end + 2) {
		const char *eol = memchr(line, '\r', (size_t)(head_end + 2 - line));
		if (!eol)
			break;
		size_t llen = (size_t)(eol - line), vlen;
		const char *v;
		if ((v = header_value(line, llen, "Content-Length", &vlen)))
			r->content_length = strtoll(v, NULL, 10);
		else if ((v = header_value(line, llen, "Transfer-Encoding", &vlen)))
			r->chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
		else if ((v = header_value(line, llen, "Connection", &vlen)))
			r->close = vlen == 5 && strncasecmp(v, "close", 5) == 0;
		else if ((v = header_value(line, llen, "Last-Modified", &vlen))) {
			r->last_modified = v;
			r->last_modified_len = vlen;
		} else if ((v = header_value(line, llen, "Etag", &vlen))) {
			r->etag = v;
			r->etag_len = vlen;
		}
		line = eol + 2;
	}
	return (long)(head_end + 4 - p);
}

size_t marker_find(const char *p, size_t len, uint64_t *seq, uint64_t *ns)
{
	const char *end = p + len, *q = p;
	while ((q = memchr(q, '#', (size_t)(end - q)))) {
		const char *s = q + 1;
		uint64_t a = 0, b = 0;
		const char *d = s;
		while (d < end && *d >= '0' && *d <= '9')
			a = a * 10 + (uint64_t)(*d++ - '0');
		if (d == s || d >= end || *d != ':') {
			q = s;
			continue;
		}
		const char *t = ++d;
		while (d < end && *d >= '0' && *d <= '9')
			b = b * 10 + (uint64_t)(*d++ - '0');
		if (d == t || d >= end || *d != '#') {
			q = s;
			continue;
		}
		*seq = a;
		*ns = b;
		return (size_t)(d + 1 - p);
	}
	return 0;
}
