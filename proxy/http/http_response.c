/* http_response.c -- llhttp glue for the app's responses. As in http.c,
 * llhttp hands over the status line and headers in pieces that may split
 * anywhere: they are gathered in http.c's head arena by offset (the arena
 * may move), and pointers are made once the head is complete. */
#include "http_response.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xmalloc.h"

struct http_response_parser {
	llhttp_t ll;
	llhttp_settings_t settings;
	const struct http_response_cbs *cbs;
	void *arg;
	size_t max_header_bytes;

	struct http_arena arena; /* "", the reason phrase, the header fields */
	uint32_t reason;
	int in_field; /* between a field's first name byte and its value's end */
	int head_request;
	int in_progress;
	int ended; /* on_message_complete ran during this feed */
	int keep_alive;
	struct http_header *headers;
};

static struct http_response_parser *of(llhttp_t *ll)
{
	return ll->data;
}

/* The whole head, NULs included, is held to max_header_bytes. */
static int put(struct http_response_parser *p, const char *at, size_t n)
{
	if (p->arena.len + n + 1 > p->max_header_bytes)
		return -1;
	http_arena_put(&p->arena, at, n);
	return 0;
}

static int end_string(struct http_response_parser *p)
{
	return put(p, "", 1);
}

static int on_message_begin(llhttp_t *ll)
{
	struct http_response_parser *p = of(ll);
	http_arena_reset(&p->arena);
	p->in_field = 0;
	p->in_progress = 1;
	p->reason = 0;
	return put(p, "", 1); /* offset 0: the empty string */
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
	struct http_response_parser *p = of(ll);
	if (!p->reason)
		p->reason = (uint32_t)p->arena.len;
	return put(p, at, n);
}

static int on_status_complete(llhttp_t *ll)
{
	struct http_response_parser *p = of(ll);
	return p->reason ? end_string(p) : 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
	struct http_response_parser *p = of(ll);
	if (!p->in_field) {
		http_arena_field_begin(&p->arena);
		p->in_field = 1;
	}
	return put(p, at, n);
}

static int on_header_field_complete(llhttp_t *ll)
{
	struct http_response_parser *p = of(ll);
	if (!p->in_field)
		return -1; /* an empty name */
	return end_string(p);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
	struct http_response_parser *p = of(ll);
	if (!p->in_field)
		return -1;
	http_arena_value_begin(&p->arena);
	return put(p, at, n);
}

static int on_header_value_complete(llhttp_t *ll)
{
	struct http_response_parser *p = of(ll);
	if (!p->in_field)
		return -1;
	http_arena_value_end(&p->arena);
	p->in_field = 0;
	return end_string(p);
}

static int on_headers_complete(llhttp_t *ll)
{
	struct http_response_parser *p = of(ll);
	unsigned nheaders = http_arena_headers(&p->arena, &p->headers);
	int status = ll->status_code;
	int no_body = p->head_request || (status >= 100 && status < 200) || status == 204 ||
		      status == 304;
	struct http_response_head head = {
		.status = status,
		.reason = p->arena.bytes + p->reason,
		.http_major = ll->http_major,
		.http_minor = ll->http_minor,
		.headers = p->headers,
		.nheaders = nheaders,
		.content_length =
			(ll->flags & F_CONTENT_LENGTH) ? (long long)ll->content_length : -1,
		.chunked = (ll->flags & F_CHUNKED) != 0,
		.has_body = !no_body,
	};
	if (p->cbs->on_head(p->arg, &head) < 0)
		return -1;
	/* 1: no body follows whatever the headers say (HEAD, 1xx, 204, 304) */
	return no_body ? 1 : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
	struct http_response_parser *p = of(ll);
	return p->cbs->on_body(p->arg, at, n) < 0 ? -1 : 0;
}

static int on_message_complete(llhttp_t *ll)
{
	struct http_response_parser *p = of(ll);
	p->in_progress = 0;
	p->keep_alive = llhttp_should_keep_alive(ll);
	p->ended = 1;
	return HPE_PAUSED;
}

struct http_response_parser *http_response_parser_new(size_t max_header_bytes,
						      const struct http_response_cbs *cbs,
						      void *arg)
{
	struct http_response_parser *p = xcalloc(1, sizeof(*p));
	p->cbs = cbs;
	p->arg = arg;
	p->max_header_bytes = max_header_bytes;
	llhttp_settings_init(&p->settings);
	p->settings.on_message_begin = on_message_begin;
	p->settings.on_status = on_status;
	p->settings.on_status_complete = on_status_complete;
	p->settings.on_header_field = on_header_field;
	p->settings.on_header_field_complete = on_header_field_complete;
	p->settings.on_header_value = on_header_value;
	p->settings.on_header_value_complete = on_header_value_complete;
	p->settings.on_headers_complete = on_headers_complete;
	p->settings.on_body = on_body;
	p->settings.on_message_complete = on_message_complete;
	llhttp_init(&p->ll, HTTP_RESPONSE, &p->settings);
	p->ll.data = p;
	return p;
}

void http_response_parser_free(struct http_response_parser *p)
{
	if (!p)
		return;
	http_arena_free(&p->arena);
	free(p->headers);
	free(p);
}

void http_response_expect(struct http_response_parser *p, int head_request)
{
	p->head_request = head_request;
	if (llhttp_get_errno(&p->ll) == HPE_PAUSED)
		llhttp_resume(&p->ll);
}

int http_response_feed(struct http_response_parser *p, const char *data, size_t len,
		       size_t *consumed)
{
	*consumed = 0;
	p->ended = 0;
	llhttp_errno_t err = llhttp_execute(&p->ll, data, len);
	if (err == HPE_OK) {
		*consumed = len;
		return 0;
	}
	if (err == HPE_PAUSED && p->ended) {
		*consumed = (size_t)(llhttp_get_error_pos(&p->ll) - data);
		p->cbs->on_end(p->arg, p->keep_alive);
		return 1;
	}
	return -1;
}

int http_response_eof(struct http_response_parser *p)
{
	if (!p->in_progress || !llhttp_message_needs_eof(&p->ll))
		return 0;
	p->ended = 0;
	if (llhttp_finish(&p->ll) != HPE_OK && !p->ended)
		return 0;
	if (!p->ended)
		return 0;
	p->cbs->on_end(p->arg, 0);
	return 1;
}

static int token_listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		p += strspn(p, " \t,");
		size_t len = strcspn(p, " \t,");
		if (len == n && strncasecmp(p, name, n) == 0)
			return 1;
		p += len;
	}
	return 0;
}

int http_hop_by_hop(const char *name, const char *connection)
{
	static const char *const names[] = {
		"Connection",
		"Keep-Alive",
		"Proxy-Connection",
		"TE",
		"Trailer",
		"Transfer-Encoding",
		"Upgrade",
		"Proxy-Authorization",
		"Proxy-Authenticate",
		"Content-Length",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0)
			return 1;
	return connection && token_listed(connection, name);
}
