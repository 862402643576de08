/* http.h -- incremental HTTP/1.1 request parser with ferry's limits.
 * With http_response.c, the only files that know llhttp. Pure: bytes in, a
 * request or an error status out; the connection (httpconn.c) does the I/O. */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct http_limits {
	size_t max_request_line; /* URL bytes; over -> 414 */
	size_t max_header_bytes; /* all header names and values; over -> 431 */
	unsigned max_headers;	 /* header count; over -> 431 */
	size_t max_body;	 /* body bytes; over -> 413 (unless streamed) */
	int pause_on_head;	 /* stop after the headers (HTTP_PARSE_HEAD) */
};

struct http_header {
	const char *name, *value; /* NUL-terminated, inside the request's arena */
};

struct http_request {
	const char *method; /* "GET", "POST", ... */
	const char *url;    /* as sent: path and query */
	const char *path;   /* url up to '?', NUL-terminated copy */
	const char *query;  /* after '?', or "" */
	int http_major, http_minor;
	int keep_alive; /* the client may send another request */
	int upgrade;	/* Connection: upgrade with an Upgrade header */
	struct http_header *headers;
	unsigned nheaders;
	char *body; /* NUL-terminated for convenience; may contain NULs */
	size_t body_len;
	long long content_length; /* as declared, -1 without Content-Length */
	int chunked;		  /* Transfer-Encoding: chunked */
};

enum http_parse_result {
	HTTP_PARSE_MORE,    /* all input consumed, request not complete */
	HTTP_PARSE_REQUEST, /* a complete request is ready; bytes after it are not consumed */
	HTTP_PARSE_ERROR,   /* http_parser_status() is the response status (400, 413, 414, 431) */
	HTTP_PARSE_HEAD,    /* with pause_on_head: method, url, path, query and headers are
			     * ready; feed on for the body (buffered, or streamed to a sink) */
};

/* Where a streamed body goes, piece by piece, instead of into req->body. */
typedef void (*http_body_sink)(void *arg, const char *data, size_t len);

struct http_parser;

struct http_parser *http_parser_new(const struct http_limits *limits);
void http_parser_free(struct http_parser *p);

/* Feed bytes. *consumed receives how many were used. After HTTP_PARSE_REQUEST the
 * request stays valid until http_parser_next(); for an upgrade request the
 * bytes after the headers belong to the new protocol and are not consumed. */
enum http_parse_result http_parser_feed(struct http_parser *p, const char *data, size_t len,
					size_t *consumed);

/* After HTTP_PARSE_HEAD: hand this request's body to sink as it arrives,
 * without the --max-body limit (the reverse proxy streams it on). */
void http_parser_stream_body(struct http_parser *p, http_body_sink sink, void *arg);

/* Forget the current request and get ready for the next one (keep-alive). */
void http_parser_next(struct http_parser *p);

const struct http_request *http_parser_request(const struct http_parser *p);
int http_parser_status(const struct http_parser *p);
const char *http_parser_error(const struct http_parser *p);
/* 1 once the first byte of a request has been seen and until it completes. */
int http_parser_in_request(const struct http_parser *p);
int http_parser_in_body(const struct http_parser *p);

/* Case-insensitive header lookup; NULL if absent. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Find the value of key in a query string, percent-decoding it into out.
 * Iterate with *pos starting at 0 to get repeated keys. Returns the decoded
 * length, -1 when there is no further occurrence, or -2 when this occurrence
 * does not fit in out (*pos is then past it). */
int http_query_next(const char *query, const char *key, size_t *pos, char *out, size_t outsz);

const char *http_status_text(int status);

/* ---- the head arena, for the module's two llhttp parsers (http.c and
 * http_response.c): not for use outside proxy/http/ ---- */

/* llhttp hands over the start line and the header fields in pieces that
 * may split anywhere; they are copied into one arena, each string followed
 * by a NUL. Fields are kept by offset while the arena may still move (it
 * grows by realloc); http_arena_headers() makes pointers once the head is
 * complete. Limits are the caller's: it checks before each put. A zeroed
 * struct is an empty arena. */
struct http_arena_field {
	uint32_t name, value; /* offsets; value is UINT32_MAX until it starts */
};

struct http_arena {
	char *bytes;
	size_t len, cap;
	struct http_arena_field *fields;
	unsigned nfields; /* complete fields; fields[nfields] is the one being read */
	unsigned cap_fields;
};

/* Append len bytes (put "" with len 1 to end a string). */
void http_arena_put(struct http_arena *a, const char *at, size_t len);
/* A field's name starts with the next byte put. */
void http_arena_field_begin(struct http_arena *a);
/* Its value starts with the next byte put (once; later calls do nothing). */
void http_arena_value_begin(struct http_arena *a);
/* Its value is complete: trailing blanks (RFC 9110 5.5 OWS, which llhttp
 * keeps) are dropped and the field counts. The caller then ends the string. */
void http_arena_value_end(struct http_arena *a);
/* Point *headers (reallocated, owned by the caller) at the complete fields'
 * names and values, valid until the next put or reset; returns their number. */
unsigned http_arena_headers(const struct http_arena *a, struct http_header **headers);
/* Empty it for the next message, keeping the memory. */
void http_arena_reset(struct http_arena *a);
void http_arena_free(struct http_arena *a);

/* url (a request target) into out with the value of every query parameter
 * whose name holds token, key, secret, passw, auth or sig (any case) written
 * REDACTED: what logs print of a request. Cut to outsz - 1 bytes; returns
 * the length written. */
size_t http_redact_url(const char *url, char *out, size_t outsz);

#endif
