/* http.c -- llhttp glue: streaming callbacks into one request with limits.
 * llhttp hands us URL and header bytes in pieces that may split anywhere, so
 * they are copied into a per-request arena (struct http_arena, below, which
 * http_response.c shares); offsets, not pointers, are kept while parsing
 * because the arena may move when it grows. */
#include "http.h"

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xmalloc.h"

enum span { SPAN_NONE, SPAN_URL, SPAN_FIELD, SPAN_VALUE };

struct http_parser {
	llhttp_t ll;
	llhttp_settings_t settings;
	struct http_limits limits;
	struct http_request req;

	struct http_arena arena; /* the URL, then the header fields */
	size_t url_len, header_bytes;
	enum span span;
	size_t body_cap;

	int status;	   /* response status on error */
	const char *error; /* short reason on error */
	int in_request, in_body, complete;
	int head_paused; /* stopped after the headers (pause_on_head) */
	http_body_sink sink;
	void *sink_arg;
};

static struct http_parser *parser_of(llhttp_t *ll)
{
	return (struct http_parser *)ll->data;
}

static int fail(struct http_parser *p, int status, const char *why)
{
	p->status = status;
	p->error = why;
	return -1;
}

static int on_message_begin(llhttp_t *ll)
{
	parser_of(ll)->in_request = 1;
	return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	p->url_len += len;
	if (p->url_len > p->limits.max_request_line)
		return fail(p, 414, "request URI too long");
	http_arena_put(&p->arena, at, len);
	return 0;
}

static int on_url_complete(llhttp_t *ll)
{
	http_arena_put(&parser_of(ll)->arena, "", 1);
	return 0;
}

static int count_header_bytes(struct http_parser *p, size_t len)
{
	p->header_bytes += len;
	if (p->header_bytes > p->limits.max_header_bytes)
		return fail(p, 431, "request header fields too large");
	return 0;
}

/* Trailer fields of a chunked body arrive after the request's pointers were
 * made: they are counted against the limit but not kept (ferry uses none). */
static int in_trailer(struct http_parser *p, size_t len)
{
	return p->in_body && count_header_bytes(p, len) == 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_body)
		return in_trailer(p, len) ? 0 : -1;
	if (p->span != SPAN_FIELD) {
		if (p->arena.nfields == p->limits.max_headers)
			return fail(p, 431, "too many header fields");
		http_arena_field_begin(&p->arena);
		p->span = SPAN_FIELD;
	}
	if (count_header_bytes(p, len) < 0)
		return -1;
	http_arena_put(&p->arena, at, len);
	return 0;
}

/* RFC 9110 5.1: a field name is a token. llhttp as Debian builds it (not in
 * strict mode) lets "Name :" and ": v" through; refuse them here. */
static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int on_header_field_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_body)
		return 0;
	if (p->span != SPAN_FIELD) /* no name bytes at all */
		return fail(p, 400, "empty header name");
	size_t start = p->arena.fields[p->arena.nfields].name;
	if (p->arena.len == start)
		return fail(p, 400, "empty header name");
	for (size_t i = start; i < p->arena.len; i++)
		if (!is_tchar((unsigned char)p->arena.bytes[i]))
			return fail(p, 400, "invalid header name");
	http_arena_put(&p->arena, "", 1);
	return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_body)
		return in_trailer(p, len) ? 0 : -1;
	if (p->span != SPAN_VALUE) {
		if (p->span != SPAN_FIELD) /* a value with no name before it */
			return fail(p, 400, "empty header name");
		http_arena_value_begin(&p->arena);
		p->span = SPAN_VALUE;
	}
	if (count_header_bytes(p, len) < 0)
		return -1;
	/* RFC 9110 5.5: a NUL, CR, LF (an obs-fold too) or other control byte
	 * would end or bend the line when the head is written on to the app. */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)at[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return fail(p, 400, "control character in a header value");
	}
	http_arena_put(&p->arena, at, len);
	return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_body)
		return 0;
	if (p->span == SPAN_NONE)
		return fail(p, 400, "empty header name");
	http_arena_value_end(&p->arena);
	http_arena_put(&p->arena, "", 1);
	p->span = SPAN_NONE;
	return 0;
}

/* RFC 9112 6.1 and 6.3: the body's length must be read the same way by
 * every hop, so anything two parsers could read differently is refused
 * before the request reaches anyone (the reverse proxy sends the head on at
 * once): a Transfer-Encoding other than one "chunked", one in HTTP/1.0,
 * Transfer-Encoding with Content-Length, more than one Content-Length, or
 * one that is not all digits. */
static const char *framing_error(const llhttp_t *ll, const struct http_request *r)
{
	unsigned lengths = 0, codings = 0;
	for (unsigned i = 0; i < r->nheaders; i++) {
		const char *name = r->headers[i].name, *value = r->headers[i].value;
		if (strcasecmp(name, "Content-Length") == 0) {
			lengths++;
			if (!*value || value[strspn(value, "0123456789")])
				return "invalid Content-Length";
		} else if (strcasecmp(name, "Transfer-Encoding") == 0) {
			codings++;
			if (strcasecmp(value, "chunked") != 0)
				return "unsupported Transfer-Encoding (only one chunked)";
		}
	}
	if (codings > 1)
		return "unsupported Transfer-Encoding (only one chunked)";
	if (codings && lengths)
		return "both Content-Length and Transfer-Encoding";
	if (lengths > 1)
		return "more than one Content-Length";
	if (codings && ll->http_major == 1 && ll->http_minor == 0)
		return "Transfer-Encoding in an HTTP/1.0 request";
	return NULL;
}

/* The request target (RFC 9112 3.2). The absolute form ("http://host/path",
 * as clients speak to forward proxies) is taken by its path, so routes see
 * what the app would: its authority must then be the Host header's. Returns
 * the origin form inside url, or NULL when the target is refused. */
static const char *origin_form(const llhttp_t *ll, const char *url, const struct http_request *r)
{
	if (url[0] == '/')
		return url;
	if (ll->method == HTTP_CONNECT || (ll->method == HTTP_OPTIONS && strcmp(url, "*") == 0))
		return url;
	size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
			: strncasecmp(url, "https://", 8) == 0 ? 8
							       : 0;
	if (!scheme)
		return NULL;
	const char *authority = url + scheme;
	size_t alen = strcspn(authority, "/?#");
	if (alen == 0 || authority[alen] != '/')
		return NULL;
	const char *host = http_request_header(r, "Host");
	if (host && (strlen(host) != alen || strncasecmp(host, authority, alen) != 0))
		return NULL;
	return authority + alen;
}

static int on_headers_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	struct http_request *r = &p->req;
	/* With pause_on_head the caller decides first whether the body is
	 * buffered (and limited) or streamed; http_parser_feed checks then. */
	if (!p->limits.pause_on_head && (ll->flags & F_CONTENT_LENGTH) &&
	    ll->content_length > p->limits.max_body)
		return fail(p, 413, "request body too large");

	/* The arena no longer moves until the next request: make pointers. */
	r->method = llhttp_method_name((llhttp_method_t)ll->method);
	r->url = p->arena.bytes;
	r->http_major = ll->http_major;
	r->http_minor = ll->http_minor;
	r->nheaders = http_arena_headers(&p->arena, &r->headers);
	r->upgrade = ll->upgrade;
	r->content_length = (ll->flags & F_CONTENT_LENGTH) ? (long long)ll->content_length : -1;
	r->chunked = (ll->flags & F_CHUNKED) != 0;
	r->keep_alive = llhttp_should_keep_alive(ll); /* known from the head; final at the end */
	const char *why = framing_error(ll, r);
	if (why)
		return fail(p, 400, why);
	r->url = origin_form(ll, p->arena.bytes, r);
	if (!r->url)
		return fail(p, 400, "invalid request target");
	p->in_body = 1;
	if (p->limits.pause_on_head) {
		p->head_paused = 1;
		return HPE_PAUSED;
	}
	return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	struct http_request *r = &p->req;
	if (p->sink) {
		p->sink(p->sink_arg, at, len);
		return 0;
	}
	if (r->body_len + len > p->limits.max_body)
		return fail(p, 413, "request body too large");
	if (r->body_len + len + 1 > p->body_cap) {
		size_t cap = p->body_cap ? p->body_cap : 1024;
		while (cap < r->body_len + len + 1)
			cap *= 2;
		r->body = xrealloc(r->body, cap);
		p->body_cap = cap;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int on_message_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	p->req.keep_alive = llhttp_should_keep_alive(ll);
	p->complete = 1;
	p->in_request = 0;
	/* Stop after each request so pipelined requests are answered in order;
	 * an upgrade stops by itself with HPE_PAUSED_UPGRADE. */
	return ll->upgrade ? 0 : HPE_PAUSED;
}

struct http_parser *http_parser_new(const struct http_limits *limits)
{
	struct http_parser *p = xcalloc(1, sizeof(*p));
	p->limits = *limits;
	llhttp_settings_init(&p->settings);
	p->settings.on_message_begin = on_message_begin;
	p->settings.on_url = on_url;
	p->settings.on_url_complete = on_url_complete;
	p->settings.on_header_field = on_header_field;
	p->settings.on_header_field_complete = on_header_field_complete;
	p->settings.on_header_value = on_header_value;
	p->settings.on_header_value_complete = on_header_value_complete;
	p->settings.on_headers_complete = on_headers_complete;
	p->settings.on_body = on_body;
	p->settings.on_message_complete = on_message_complete;
	llhttp_init(&p->ll, HTTP_REQUEST, &p->settings);
	p->ll.data = p;
	return p;
}

void http_parser_free(struct http_parser *p)
{
	if (!p)
		return;
	http_arena_free(&p->arena);
	free(p->req.headers);
	free(p->req.body);
	free((char *)p->req.path);
	free(p);
}

/* Split the URL into path and query once the request is complete. */
static void split_url(struct http_parser *p)
{
	struct http_request *r = &p->req;
	const char *q = strchr(r->url, '?');
	size_t plen = q ? (size_t)(q - r->url) : strlen(r->url);
	free((char *)r->path);
	r->path = xstrndup(r->url, plen);
	r->query = q ? q + 1 : "";
	if (!r->body) {
		r->body = xmalloc(1);
		p->body_cap = 1;
	}
	r->body[r->body_len] = '\0';
}

enum http_parse_result http_parser_feed(struct http_parser *p, const char *data, size_t len,
					size_t *consumed)
{
	*consumed = 0;
	if (p->status)
		return HTTP_PARSE_ERROR;
	if (p->complete)
		return HTTP_PARSE_REQUEST;
	if (p->head_paused) {
		p->head_paused = 0;
		if (!p->sink && p->req.content_length > (long long)p->limits.max_body) {
			fail(p, 413, "request body too large");
			return HTTP_PARSE_ERROR;
		}
		llhttp_resume(&p->ll);
	}
	llhttp_errno_t err = llhttp_execute(&p->ll, data, len);
	switch (err) {
	case HPE_OK:
		*consumed = len;
		return HTTP_PARSE_MORE;
	case HPE_PAUSED:
	case HPE_PAUSED_UPGRADE:
		*consumed = (size_t)(llhttp_get_error_pos(&p->ll) - data);
		split_url(p);
		return p->head_paused ? HTTP_PARSE_HEAD : HTTP_PARSE_REQUEST;
	default:
		if (!p->status) {
			p->status = 400;
			p->error = "malformed HTTP request";
		}
		return HTTP_PARSE_ERROR;
	}
}

void http_parser_stream_body(struct http_parser *p, http_body_sink sink, void *arg)
{
	p->sink = sink;
	p->sink_arg = arg;
}

void http_parser_next(struct http_parser *p)
{
	p->sink = NULL;
	p->sink_arg = NULL;
	p->head_paused = 0;
	free((char *)p->req.path);
	p->req.path = NULL;
	p->req.method = NULL;
	p->req.nheaders = 0;
	p->req.body_len = 0;
	http_arena_reset(&p->arena);
	p->url_len = p->header_bytes = 0;
	p->span = SPAN_NONE;
	p->in_request = p->in_body = p->complete = 0;
	/* A declined upgrade (h2c, or websocket on a plain route) is answered
	 * as HTTP, and what follows is the next request. */
	if (llhttp_get_errno(&p->ll) == HPE_PAUSED_UPGRADE)
		llhttp_resume_after_upgrade(&p->ll);
	else
		llhttp_resume(&p->ll);
}

const struct http_request *http_parser_request(const struct http_parser *p)
{
	return &p->req;
}

int http_parser_status(const struct http_parser *p)
{
	return p->status;
}

const char *http_parser_error(const struct http_parser *p)
{
	return p->error;
}

int http_parser_in_request(const struct http_parser *p)
{
	return p->in_request;
}

int http_parser_in_body(const struct http_parser *p)
{
	return p->in_body;
}

/* ---- the head arena (http.h): this parser's and http_response.c's ---- */

void http_arena_put(struct http_arena *a, const char *at, size_t len)
{
	if (a->len + len + 1 > a->cap) {
		size_t cap = a->cap ? a->cap : 512;
		while (cap < a->len + len + 1)
			cap *= 2;
		a->bytes = xrealloc(a->bytes, cap);
		a->cap = cap;
	}
	memcpy(a->bytes + a->len, at, len);
	a->len += len;
}

void http_arena_field_begin(struct http_arena *a)
{
	if (a->nfields == a->cap_fields) {
		a->cap_fields = a->cap_fields ? a->cap_fields * 2 : 16;
		a->fields = xrealloc(a->fields, a->cap_fields * sizeof(*a->fields));
	}
	a->fields[a->nfields].name = (uint32_t)a->len;
	a->fields[a->nfields].value = UINT32_MAX;
}

void http_arena_value_begin(struct http_arena *a)
{
	struct http_arena_field *f = &a->fields[a->nfields];
	if (f->value == UINT32_MAX)
		f->value = (uint32_t)a->len;
}

void http_arena_value_end(struct http_arena *a)
{
	struct http_arena_field *f = &a->fields[a->nfields];
	if (f->value == UINT32_MAX) /* an empty value: no data callback */
		f->value = (uint32_t)a->len;
	/* llhttp drops leading whitespace but keeps trailing (RFC 9110 5.5 OWS) */
	while (a->len > f->value && (a->bytes[a->len - 1] == ' ' || a->bytes[a->len - 1] == '\t'))
		a->len--;
	a->nfields++;
}

unsigned http_arena_headers(const struct http_arena *a, struct http_header **headers)
{
	*headers = xrealloc(*headers, (a->nfields ? a->nfields : 1) * sizeof(**headers));
	for (unsigned i = 0; i < a->nfields; i++) {
		(*headers)[i].name = a->bytes + a->fields[i].name;
		(*headers)[i].value = a->bytes + a->fields[i].value;
	}
	return a->nfields;
}

void http_arena_reset(struct http_arena *a)
{
	a->len = 0;
	a->nfields = 0;
}

void http_arena_free(struct http_arena *a)
{
	free(a->bytes);
	free(a->fields);
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	for (unsigned i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int http_query_next(const char *query, const char *key, size_t *pos, char *out, size_t outsz)
{
	size_t klen = strlen(key);
	const char *p = query + *pos;
	while (*p) {
		const char *end = strchr(p, '&');
		if (!end)
			end = p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		const char *kend = eq ? eq : end;
		if ((size_t)(kend - p) == klen && memcmp(p, key, klen) == 0) {
			*pos = (size_t)(end - query) + (*end ? 1 : 0);
			size_t n = 0;
			for (const char *v = eq ? eq + 1 : end; v < end; v++) {
				int c = (unsigned char)*v;
				if (c == '+') {
					c = ' ';
				} else if (c == '%' && end - v >= 3 && hexval(v[1]) >= 0 &&
					   hexval(v[2]) >= 0) {
					c = hexval(v[1]) * 16 + hexval(v[2]);
					v += 2;
				}
				if (n + 1 >= outsz)
					return -2;
				out[n++] = (char)c;
			}
			out[n] = '\0';
			return (int)n;
		}
		p = *end ? end + 1 : end;
	}
	*pos = (size_t)(p - query);
	return -1;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 101:
		return "Switching Protocols";
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 426:
		return "Upgrade Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Unknown";
	}
}

/* A parameter name a secret hides behind: token, key, secret, password,
 * anywhere in it and in any case (access_token, X-Ferry-Key, apikey). */
static int name_is_secret(const char *name, size_t len)
{
	static const char *const words[] = { "token", "key", "secret", "passw", "auth", "sig" };
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		size_t wl = strlen(words[w]);
		for (size_t i = 0; i + wl <= len; i++)
			if (strncasecmp(name + i, words[w], wl) == 0)
				return 1;
	}
	return 0;
}

size_t http_redact_url(const char *url, char *out, size_t outsz)
{
	size_t len = 0;
	const char *q = strchr(url, '?');
	size_t head = q ? (size_t)(q - url) + 1 : strlen(url);
	if (!outsz)
		return 0;
#define EMIT(p, n)                                                                                 \
	do {                                                                                       \
		size_t n_ = (n);                                                                   \
		if (n_ > outsz - 1 - len)                                                          \
			n_ = outsz - 1 - len;                                                      \
		memcpy(out + len, (p), n_);                                                        \
		len += n_;                                                                         \
	} while (0)
	EMIT(url, head);
	for (const char *p = q ? q + 1 : url + head; q && *p;) {
		size_t plen = strcspn(p, "&;");
		size_t nlen = strcspn(p, "=&;");
		if (nlen < plen && name_is_secret(p, nlen)) {
			EMIT(p, nlen + 1);
			EMIT("REDACTED", 8);
		} else {
			EMIT(p, plen);
		}
		p += plen;
		if (*p) {
			EMIT(p, 1);
			p++;
		}
	}
#undef EMIT
	out[len] = '\0';
	return len;
}
