/* fuzz_http.c -- libFuzzer target for the HTTP request parser: the input is
 * parsed as a keep-alive stream twice, whole and in two pieces split at a
 * point taken from the data, and both runs must agree.
 * Input: byte 0 picks the split; byte 1 bit 0 picks the limits and bit 1
 * whether upgrades are declined (answered as HTTP, parsing goes on) or taken
 * (the rest belongs to another protocol); the rest is wire. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TRACKED 64

struct stream_result {
	int nrequests;
	uint64_t digest[MAX_TRACKED];
	int status; /* error status, or 0 */
	int upgraded;
	size_t consumed;
};

static const struct http_limits small_limits = {
	.max_request_line = 64,
	.max_header_bytes = 256,
	.max_headers = 8,
	.max_body = 128,
};

static const struct http_limits large_limits = {
	.max_request_line = 8192,
	.max_header_bytes = 16384,
	.max_headers = 100,
	.max_body = 1 << 20,
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ULL;
	/* a separator, so that "ab" "c" and "a" "bc" differ */
	return (h ^ 0x100) * 0x100000001b3ULL;
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s));
}

/* Check what the header promises about a completed request, and reduce it
 * to a digest for comparing runs. */
static uint64_t check_request(const struct http_request *r, const struct http_limits *lim)
{
	if (!r->method || !r->url || !r->path || !r->query || !r->body)
		abort();
	size_t url_len = strlen(r->url);
	size_t path_len = strlen(r->path);
	if (url_len > lim->max_request_line || path_len > url_len ||
	    memcmp(r->path, r->url, path_len) != 0)
		abort();
	if (r->nheaders > lim->max_headers || r->body_len > lim->max_body ||
	    r->body[r->body_len] != '\0')
		abort();
	size_t header_bytes = 0;
	uint64_t h = 0xcbf29ce484222325ULL;
	h = fnv_str(h, r->method);
	h = fnv_str(h, r->url);
	for (unsigned i = 0; i < r->nheaders; i++) {
		header_bytes += strlen(r->headers[i].name) + strlen(r->headers[i].value);
		if (!http_request_header(r, r->headers[i].name))
			abort();
		h = fnv_str(h, r->headers[i].name);
		h = fnv_str(h, r->headers[i].value);
	}
	if (header_bytes > lim->max_header_bytes)
		abort();
	h = fnv(h, r->body, r->body_len);
	int flags[4] = { r->http_major, r->http_minor, r->keep_alive, r->upgrade };
	h = fnv(h, flags, sizeof(flags));

	/* every occurrence of a key, each decoded value fitting its buffer */
	char value[64];
	static const char *const keys[] = { "a", "channel", "" };
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		size_t pos = 0, last = 0, qlen = strlen(r->query);
		int n;
		while ((n = http_query_next(r->query, keys[k], &pos, value, sizeof(value))) >= 0) {
			if ((size_t)n >= sizeof(value) || value[n] != '\0' || pos > qlen)
				abort();
			if (pos <= last)
				abort(); /* no progress: a caller would loop forever */
			last = pos;
		}
	}
	return h;
}

static void parse_stream(const uint8_t *in, size_t len, size_t split, const struct http_limits *lim,
			 int decline_upgrades, struct stream_result *res)
{
	struct http_parser *p = http_parser_new(lim);
	const char *buf = (const char *)in;
	size_t pos = 0, piece_end = split;
	memset(res, 0, sizeof(*res));
	for (;;) {
		size_t consumed;
		enum http_parse_result r;
		r = http_parser_feed(p, buf + pos, piece_end - pos, &consumed);
		if (consumed > piece_end - pos)
			abort();
		pos += consumed;
		if (r == HTTP_PARSE_ERROR) {
			res->status = http_parser_status(p);
			if (res->status != 400 && res->status != 413 && res->status != 414 &&
			    res->status != 431)
				abort();
			if (!http_parser_error(p))
				abort();
			break;
		}
		if (r == HTTP_PARSE_REQUEST) {
			const struct http_request *req = http_parser_request(p);
			uint64_t h = check_request(req, lim);
			if (res->nrequests < MAX_TRACKED)
				res->digest[res->nrequests] = h;
			res->nrequests++;
			if (res->nrequests > (int)len + 1)
				abort(); /* requests that take no bytes */
			if (req->upgrade && !decline_upgrades) {
				res->upgraded = 1;
				break;
			}
			http_parser_next(p);
			continue;
		}
		if (pos != piece_end)
			abort();
		if (piece_end == len)
			break;
		piece_end = len;
	}
	res->consumed = pos;
	http_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const struct http_limits *lim = data[1] & 1 ? &small_limits : &large_limits;
	const uint8_t *wire = data + 2;
	size_t len = size - 2;
	size_t split = len ? (size_t)data[0] * len / 255 : 0;

	struct stream_result whole, pieces;
	int decline = (data[1] & 2) != 0;
	parse_stream(wire, len, len, lim, decline, &whole);
	parse_stream(wire, len, split, lim, decline, &pieces);

	/* A request both runs completed has the same content. */
	int n = whole.nrequests < pieces.nrequests ? whole.nrequests : pieces.nrequests;
	for (int i = 0; i < n && i < MAX_TRACKED; i++)
		if (whole.digest[i] != pieces.digest[i])
			abort();
	/* Where the bytes ran out, both runs saw the same stream. Errors may
	 * differ in status (a limit can trip on a partial span before a syntax
	 * error is seen), but one run failing and not the other is a bug. */
	if ((whole.status != 0) != (pieces.status != 0))
		abort();
	if (!whole.status && !pieces.status) {
		if (whole.nrequests != pieces.nrequests || whole.upgraded != pieces.upgraded ||
		    whole.consumed != pieces.consumed)
			abort();
	}
	return 0;
}
