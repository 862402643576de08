/* http_response.h -- incremental parser for the app's HTTP/1.1 responses
 * (the reverse proxy reads them). Pure like http.c: bytes in, callbacks out.
 * Bodies come out de-chunked; the caller re-frames them for the client. */
#ifndef FERRY_HTTP_RESPONSE_H
#define FERRY_HTTP_RESPONSE_H

#include <stddef.h>

#include "http.h"

struct http_response_head {
	int status;
	const char *reason; /* NUL-terminated, "" when absent */
	int http_major, http_minor;
	struct http_header *headers; /* valid during on_head only */
	unsigned nheaders;
	long long content_length; /* -1 without Content-Length */
	int chunked;
	int has_body; /* 0 for HEAD, 1xx, 204, 304 */
};

struct http_response_cbs {
	/* Return 0 to go on, -1 to stop with an error. */
	int (*on_head)(void *arg, const struct http_response_head *head);
	int (*on_body)(void *arg, const char *data, size_t len);
	/* The response is complete; keep_alive: the connection may be reused. */
	void (*on_end)(void *arg, int keep_alive);
};

struct http_response_parser;

struct http_response_parser *http_response_parser_new(size_t max_header_bytes,
						      const struct http_response_cbs *cbs,
						      void *arg);
void http_response_parser_free(struct http_response_parser *p);

/* Before each request is sent: a HEAD request's answer has no body. */
void http_response_expect(struct http_response_parser *p, int head_request);

/* Feed bytes. Returns 0 when all were used, 1 when a response ended (bytes
 * after it, *consumed onwards, are not used: a reply nobody asked for), or
 * -1 on a malformed response (or a callback said stop). */
int http_response_feed(struct http_response_parser *p, const char *data, size_t len,
		       size_t *consumed);

/* The app closed the connection: ends a response whose body runs to the
 * close. Returns 1 if that completed a response, 0 otherwise (truncated). */
int http_response_eof(struct http_response_parser *p);

/* Fields that belong to one connection, not to the message (RFC 9110
 * 7.6.1), those named in its Connection header (connection, may be NULL),
 * and Content-Length, which a relay re-frames: never passed on. */
int http_hop_by_hop(const char *name, const char *connection);

#endif
