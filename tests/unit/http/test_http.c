/* test_http.c -- the HTTP/1.1 request parser: requests fed whole, split at
 * every byte and pipelined; every limit; keep-alive; upgrade; query strings */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static const struct http_limits limits = {
	.max_request_line = 256,
	.max_header_bytes = 1024,
	.max_headers = 16,
	.max_body = 4096,
};

#define S(lit) lit, sizeof(lit) - 1

struct expected_request {
	const char *method, *url, *path, *query;
	int http_major, http_minor;
	int keep_alive, upgrade;
	unsigned nheaders;
	const char *headers[6][2];
	const char *body;
	size_t body_len;
	size_t wire_len; /* bytes of the buffer that belong to this request */
};

static void check_request(const struct http_request *req, const struct expected_request *want)
{
	assert_string_equal(req->method, want->method);
	assert_string_equal(req->url, want->url);
	assert_string_equal(req->path, want->path);
	assert_string_equal(req->query, want->query);
	assert_int_equal(req->http_major, want->http_major);
	assert_int_equal(req->http_minor, want->http_minor);
	assert_int_equal(req->keep_alive, want->keep_alive);
	assert_int_equal(req->upgrade, want->upgrade);
	assert_int_equal(req->nheaders, want->nheaders);
	for (unsigned i = 0; i < want->nheaders; i++) {
		assert_string_equal(req->headers[i].name, want->headers[i][0]);
		assert_string_equal(req->headers[i].value, want->headers[i][1]);
	}
	assert_int_equal(req->body_len, want->body_len);
	assert_non_null(req->body);
	if (want->body_len)
		assert_memory_equal(req->body, want->body, want->body_len);
	assert_int_equal(req->body[req->body_len], '\0');
}

/* Feed buf in pieces ending at cuts[], answering each request in order like
 * a keep-alive connection would. Stops at an upgrade or an error. Returns
 * the number of requests seen; *status gets the error status or 0. */
static int parse_stream(const struct http_limits *lim, const char *buf, size_t n,
			const size_t *cuts, size_t ncuts, const struct expected_request *want,
			int nwant, int *status)
{
	struct http_parser *p = http_parser_new(lim);
	size_t pos = 0, request_end = 0;
	int got = 0;
	*status = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		for (;;) {
			size_t consumed = 999;
			enum http_parse_result r;
			r = http_parser_feed(p, buf + pos, end - pos, &consumed);
			assert_true(consumed <= end - pos);
			pos += consumed;
			if (r == HTTP_PARSE_MORE) {
				assert_int_equal(pos, end);
				break;
			}
			if (r == HTTP_PARSE_ERROR) {
				*status = http_parser_status(p);
				assert_non_null(http_parser_error(p));
				/* an error is final */
				r = http_parser_feed(p, buf + pos, end - pos, &consumed);
				assert_int_equal(r, HTTP_PARSE_ERROR);
				assert_int_equal(consumed, 0);
				goto done;
			}
			assert_int_equal(r, HTTP_PARSE_REQUEST);
			if (got >= nwant)
				fail_msg("more requests than expected (%d)", nwant);
			const struct http_request *req = http_parser_request(p);
			check_request(req, &want[got]);
			request_end += want[got].wire_len;
			assert_int_equal(pos, request_end);
			got++;
			/* until http_parser_next() the same request stays */
			assert_int_equal(http_parser_feed(p, buf + pos, end - pos, &consumed),
					 HTTP_PARSE_REQUEST);
			assert_int_equal(consumed, 0);
			assert_ptr_equal(http_parser_request(p), req);
			if (req->upgrade)
				goto done;
			http_parser_next(p);
		}
	}
done:
	http_parser_free(p);
	return got;
}

static void expect_stream(const char *buf, size_t n, const size_t *cuts, size_t ncuts,
			  const struct expected_request *want, int nwant)
{
	int status;
	int got = parse_stream(&limits, buf, n, cuts, ncuts, want, nwant, &status);
	if (status)
		fail_msg("unexpected error %d", status);
	assert_int_equal(got, nwant);
}

/* One request (or a pipeline), whole, byte by byte, at every split point and
 * at every pair of split points. */
static void expect_everywhere(const char *buf, size_t n, const struct expected_request *want,
			      int nwant)
{
	expect_stream(buf, n, NULL, 0, want, nwant);
	for (size_t cut = 0; cut <= n; cut++)
		expect_stream(buf, n, &cut, 1, want, nwant);
	for (size_t a = 0; a <= n; a += 1)
		for (size_t b = a; b <= n; b++) {
			size_t cuts[2] = { a, b };
			expect_stream(buf, n, cuts, 2, want, nwant);
		}
	size_t *every = malloc(n * sizeof(*every));
	for (size_t k = 0; k < n; k++)
		every[k] = k;
	expect_stream(buf, n, every, n, want, nwant);
	free(every);
}

static void expect_status(const struct http_limits *lim, const char *buf, size_t n, int status)
{
	/* whole and at every split point: the same status, nothing parsed first */
	for (size_t cut = 0; cut <= n; cut++) {
		int got_status;
		int got = parse_stream(lim, buf, n, &cut, cut == n ? 0 : 1, NULL, 0, &got_status);
		assert_int_equal(got, 0);
		if (got_status != status)
			fail_msg("split at %zu of %zu: expected %d, got %d", cut, n, status,
				 got_status);
	}
	assert_non_null(http_status_text(status));
}

static void test_simple_get(void **state)
{
	static const char req[] = "GET /chat?room=a&x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
	const struct expected_request want = {
		"GET",
		"/chat?room=a&x=1",
		"/chat",
		"room=a&x=1",
		1,
		1,
		1,
		0,
		1,
		{ { "Host", "example.com" } },
		"",
		0,
		sizeof(req) - 1,
	};
	expect_everywhere(S(req), &want, 1);

	static const char bare[] = "GET / HTTP/1.1\r\n\r\n";
	const struct expected_request want_bare = {
		"GET", "/", "/", "", 1, 1, 1, 0, 0, { { NULL } }, "", 0, sizeof(bare) - 1,
	};
	expect_everywhere(S(bare), &want_bare, 1);
}

static void test_headers(void **state)
{
	static const char req[] = "GET /h HTTP/1.1\r\n"
				  "Host: a.example\r\n"
				  "Content-Type: text/plain\r\n"
				  "X-Empty:\r\n"
				  "x-dup: first\r\n"
				  "X-Dup: second\r\n"
				  "Accept:*/*\r\n"
				  "\r\n";
	const struct expected_request want = {
		"GET",
		"/h",
		"/h",
		"",
		1,
		1,
		1,
		0,
		6,
		{ { "Host", "a.example" },
		  { "Content-Type", "text/plain" },
		  { "X-Empty", "" },
		  { "x-dup", "first" },
		  { "X-Dup", "second" },
		  { "Accept", "*/*" } },
		"",
		0,
		sizeof(req) - 1,
	};
	expect_everywhere(S(req), &want, 1);

	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, S(req), &consumed), HTTP_PARSE_REQUEST);
	const struct http_request *r = http_parser_request(p);
	assert_string_equal(http_request_header(r, "Content-Type"), "text/plain");
	assert_string_equal(http_request_header(r, "content-type"), "text/plain");
	assert_string_equal(http_request_header(r, "CONTENT-TYPE"), "text/plain");
	assert_string_equal(http_request_header(r, "x-empty"), "");
	assert_string_equal(http_request_header(r, "X-DUP"), "first"); /* the first one */
	assert_null(http_request_header(r, "Content-Length"));
	assert_null(http_request_header(r, "Content"));
	assert_null(http_request_header(r, "Content-Type-X"));
	http_parser_free(p);

	/* every token character of RFC 9110 5.6.2 may appear in a name */
	static const char tchars[] = "GET / HTTP/1.1\r\nAz09!#$%&'*+-.^_`|~: v\r\n\r\n";
	const struct expected_request want_tchars = {
		"GET",
		"/",
		"/",
		"",
		1,
		1,
		1,
		0,
		1,
		{ { "Az09!#$%&'*+-.^_`|~", "v" } },
		"",
		0,
		sizeof(tchars) - 1,
	};
	expect_everywhere(S(tchars), &want_tchars, 1);
}

/* RFC 9110 section 5.5: a field value excludes leading and trailing
 * whitespace, so "Sec-WebSocket-Version: 13 " must read as "13". llhttp
 * passes trailing whitespace through; this test found http.c keeping it. */
static void test_header_value_whitespace(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\n"
				  "Sec-WebSocket-Version:   13 \t \r\n"
				  "X-Inner: a  b\t\r\n"
				  "\r\n";
	const struct expected_request want = {
		"GET",
		"/",
		"/",
		"",
		1,
		1,
		1,
		0,
		2,
		{ { "Sec-WebSocket-Version", "13" }, { "X-Inner", "a  b" } },
		"",
		0,
		sizeof(req) - 1,
	};
	expect_stream(S(req), NULL, 0, &want, 1);
}

static void test_post_content_length(void **state)
{
	static const char req[] = "POST /publish?ch=news HTTP/1.1\r\n"
				  "Host: a\r\n"
				  "Content-Type: application/json\r\n"
				  "Content-Length: 17\r\n"
				  "\r\n"
				  "{\"data\":\"hello\"}\n";
	const struct expected_request want = {
		"POST",
		"/publish?ch=news",
		"/publish",
		"ch=news",
		1,
		1,
		1,
		0,
		3,
		{ { "Host", "a" },
		  { "Content-Type", "application/json" },
		  { "Content-Length", "17" } },
		"{\"data\":\"hello\"}\n",
		17,
		sizeof(req) - 1,
	};
	expect_everywhere(S(req), &want, 1);

	/* bodies are binary: NUL bytes are kept and counted */
	static const char bin[] = "POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\na\0b\0c";
	const struct expected_request want_bin = {
		"POST",
		"/b",
		"/b",
		"",
		1,
		1,
		1,
		0,
		1,
		{ { "Content-Length", "5" } },
		"a\0b\0c",
		5,
		sizeof(bin) - 1,
	};
	expect_everywhere(S(bin), &want_bin, 1);

	/* an empty body, with and without Content-Length */
	static const char zero[] = "POST /z HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
	const struct expected_request want_zero = {
		"POST",
		"/z",
		"/z",
		"",
		1,
		1,
		1,
		0,
		1,
		{ { "Content-Length", "0" } },
		"",
		0,
		sizeof(zero) - 1,
	};
	expect_everywhere(S(zero), &want_zero, 1);
	static const char none[] = "POST /z HTTP/1.1\r\n\r\n";
	const struct expected_request want_none = {
		"POST", "/z", "/z", "", 1, 1, 1, 0, 0, { { NULL } }, "", 0, sizeof(none) - 1,
	};
	expect_everywhere(S(none), &want_none, 1);
}

static void test_post_chunked(void **state)
{
	static const char req[] = "POST /p HTTP/1.1\r\n"
				  "Transfer-Encoding: chunked\r\n"
				  "\r\n"
				  "5;name=value\r\nhello\r\n"
				  "1\r\n \r\n"
				  "A\r\n0123456789\r\n"
				  "0\r\n"
				  "X-Trailer: t\r\n"
				  "\r\n";
	const struct expected_request want = {
		"POST",
		"/p",
		"/p",
		"",
		1,
		1,
		1,
		0,
		1,
		{ { "Transfer-Encoding", "chunked" } },
		"hello 0123456789",
		16,
		sizeof(req) - 1,
	};
	expect_everywhere(S(req), &want, 1);
}

/* Three requests in one buffer come out one at a time, each leaving the
 * rest of the buffer unconsumed until http_parser_next(). */
static void test_pipelined(void **state)
{
	static const char a[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char b[] = "POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
	static const char c[] = "POST /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				"2\r\nxy\r\n0\r\n\r\n";
	static const char d[] = "GET /four?q HTTP/1.1\r\nConnection: close\r\n\r\n";
	char buf[512];
	size_t n = 0;
	memcpy(buf + n, a, sizeof(a) - 1), n += sizeof(a) - 1;
	memcpy(buf + n, b, sizeof(b) - 1), n += sizeof(b) - 1;
	memcpy(buf + n, c, sizeof(c) - 1), n += sizeof(c) - 1;
	memcpy(buf + n, d, sizeof(d) - 1), n += sizeof(d) - 1;
	const struct expected_request want[] = {
		{ "GET",
		  "/one",
		  "/one",
		  "",
		  1,
		  1,
		  1,
		  0,
		  1,
		  { { "Host", "h" } },
		  "",
		  0,
		  sizeof(a) - 1 },
		{ "POST",
		  "/two",
		  "/two",
		  "",
		  1,
		  1,
		  1,
		  0,
		  1,
		  { { "Content-Length", "3" } },
		  "abc",
		  3,
		  sizeof(b) - 1 },
		{ "POST",
		  "/three",
		  "/three",
		  "",
		  1,
		  1,
		  1,
		  0,
		  1,
		  { { "Transfer-Encoding", "chunked" } },
		  "xy",
		  2,
		  sizeof(c) - 1 },
		{ "GET",
		  "/four?q",
		  "/four",
		  "q",
		  1,
		  1,
		  0,
		  0,
		  1,
		  { { "Connection", "close" } },
		  "",
		  0,
		  sizeof(d) - 1 },
	};
	expect_everywhere(buf, n, want, 4);

	/* step by step: consumed stops exactly at each request's end */
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed, pos = 0;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(http_parser_feed(p, buf + pos, n - pos, &consumed),
				 HTTP_PARSE_REQUEST);
		assert_int_equal(consumed, want[i].wire_len);
		check_request(http_parser_request(p), &want[i]);
		pos += consumed;
		http_parser_next(p);
	}
	assert_int_equal(pos, n);
	assert_int_equal(http_parser_feed(p, buf + pos, 0, &consumed), HTTP_PARSE_MORE);
	assert_int_equal(consumed, 0);
	http_parser_free(p);
}

static void test_keep_alive(void **state)
{
	static const struct {
		const char *req;
		int minor, keep_alive;
	} cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", 1, 1 },
		{ "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 1, 1 },
		{ "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 1, 0 },
		{ "GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", 1, 0 },
		{ "GET / HTTP/1.0\r\n\r\n", 0, 0 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, 1 },
		{ "GET / HTTP/1.0\r\nConnection: close\r\n\r\n", 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_parser *p = http_parser_new(&limits);
		size_t consumed;
		assert_int_equal(http_parser_feed(p, cases[i].req, strlen(cases[i].req), &consumed),
				 HTTP_PARSE_REQUEST);
		const struct http_request *r = http_parser_request(p);
		assert_int_equal(r->http_major, 1);
		assert_int_equal(r->http_minor, cases[i].minor);
		if (r->keep_alive != cases[i].keep_alive)
			fail_msg("%s: keep_alive %d", cases[i].req, r->keep_alive);
		http_parser_free(p);
	}
}

/* An upgrade request stops right after its headers: the WebSocket bytes
 * that follow are left for the new protocol, at every split point. */
static void test_upgrade(void **state)
{
	static const char hdr[] = "GET /ws HTTP/1.1\r\n"
				  "Host: a\r\n"
				  "Upgrade: websocket\r\n"
				  "Connection: keep-alive, Upgrade\r\n"
				  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				  "Sec-WebSocket-Version: 13\r\n"
				  "\r\n";
	static const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
	char buf[256];
	memcpy(buf, hdr, sizeof(hdr) - 1);
	memcpy(buf + sizeof(hdr) - 1, frame, sizeof(frame) - 1);
	size_t n = sizeof(hdr) - 1 + sizeof(frame) - 1;
	const struct expected_request want = {
		"GET",
		"/ws",
		"/ws",
		"",
		1,
		1,
		1,
		1,
		5,
		{ { "Host", "a" },
		  { "Upgrade", "websocket" },
		  { "Connection", "keep-alive, Upgrade" },
		  { "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==" },
		  { "Sec-WebSocket-Version", "13" } },
		"",
		0,
		sizeof(hdr) - 1,
	};
	/* parse_stream stops at the upgrade and checks where it stopped */
	expect_everywhere(buf, n, &want, 1);

	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, buf, n, &consumed), HTTP_PARSE_REQUEST);
	assert_int_equal(consumed, sizeof(hdr) - 1);
	assert_int_equal(http_parser_request(p)->upgrade, 1);
	http_parser_free(p);

	/* an Upgrade header without "Connection: upgrade" is an ordinary
	 * request, and what follows is the next request */
	static const char plain[] = "GET /x HTTP/1.1\r\nUpgrade: websocket\r\n"
				    "Connection: keep-alive\r\n\r\n"
				    "GET /y HTTP/1.1\r\n\r\n";
	const struct expected_request want_plain[] = {
		{ "GET",
		  "/x",
		  "/x",
		  "",
		  1,
		  1,
		  1,
		  0,
		  2,
		  { { "Upgrade", "websocket" }, { "Connection", "keep-alive" } },
		  "",
		  0,
		  sizeof(plain) - 1 - 19 },
		{ "GET", "/y", "/y", "", 1, 1, 1, 0, 0, { { NULL } }, "", 0, 19 },
	};
	expect_everywhere(S(plain), want_plain, 2);
}

/* A server may ignore an Upgrade it does not speak (RFC 9110 7.8), answer
 * normally and keep the connection: the next request must then parse.
 * Regression: llhttp stays paused with HPE_PAUSED_UPGRADE after an upgrade
 * request, and llhttp_resume() does not clear that; http_parser_feed() then
 * returned the old request forever, with *consumed the stale llhttp error
 * position minus the new data pointer (0, or an arbitrary number). */
static void test_declined_upgrade_keeps_parsing(void **state)
{
	static const char first[] = "GET / HTTP/1.1\r\nHost: a\r\n"
				    "Connection: Upgrade, HTTP2-Settings\r\n"
				    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
	static const char second[] = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, S(first), &consumed), HTTP_PARSE_REQUEST);
	assert_int_equal(consumed, sizeof(first) - 1);
	assert_int_equal(http_parser_request(p)->upgrade, 1);
	http_parser_next(p);
	enum http_parse_result r = http_parser_feed(p, S(second), &consumed);
	assert_true(consumed <= sizeof(second) - 1);
	assert_int_equal(r, HTTP_PARSE_REQUEST);
	assert_int_equal(consumed, sizeof(second) - 1);
	assert_string_equal(http_parser_request(p)->url, "/next");
	assert_int_equal(http_parser_request(p)->upgrade, 0);
	http_parser_free(p);

	/* both in one buffer, split anywhere: the declined upgrade's bytes end
	 * where its headers end, and the second request follows */
	char buf[256];
	size_t n = sizeof(first) - 1 + sizeof(second) - 1;
	memcpy(buf, first, sizeof(first) - 1);
	memcpy(buf + sizeof(first) - 1, second, sizeof(second) - 1);
	for (size_t cut = 0; cut <= n; cut++) {
		const char *urls[2] = { "/", "/next" };
		size_t ends[2] = { sizeof(first) - 1, n };
		size_t pos = 0, piece_end = cut;
		int got = 0;
		p = http_parser_new(&limits);
		while (got < 2) {
			r = http_parser_feed(p, buf + pos, piece_end - pos, &consumed);
			assert_true(consumed <= piece_end - pos);
			pos += consumed;
			assert_int_not_equal(r, HTTP_PARSE_ERROR);
			if (r == HTTP_PARSE_MORE) {
				assert_int_equal(pos, piece_end);
				assert_true(piece_end < n);
				piece_end = n;
				continue;
			}
			assert_string_equal(http_parser_request(p)->url, urls[got]);
			assert_int_equal(pos, ends[got]);
			got++;
			http_parser_next(p);
		}
		http_parser_free(p);
	}
}

static void test_url_limit(void **state)
{
	struct http_limits lim = limits;
	lim.max_request_line = 16;
	/* exactly 16 URL bytes is fine */
	static const char fits[] = "GET /234567890123456 HTTP/1.1\r\n\r\n";
	const struct expected_request want = {
		"GET", "/234567890123456", "/234567890123456", "", 1, 1, 1, 0, 0, { { NULL } }, "",
		0,     sizeof(fits) - 1,
	};
	for (size_t cut = 0; cut <= sizeof(fits) - 1; cut++) {
		int status;
		assert_int_equal(parse_stream(&lim, S(fits), &cut, 1, &want, 1, &status), 1);
		assert_int_equal(status, 0);
	}
	expect_status(&lim, S("GET /2345678901234567 HTTP/1.1\r\n\r\n"), 414);
	expect_status(&lim, S("GET /?query=makes-it-long HTTP/1.1\r\n\r\n"), 414);
	/* the URL alone, before the request line ends, is enough to refuse */
	expect_status(&lim, S("GET /2345678901234567"), 414);
	assert_string_equal(http_status_text(414), "URI Too Long");
}

static void test_header_bytes_limit(void **state)
{
	struct http_limits lim = limits;
	lim.max_header_bytes = 64;
	char req[256];
	/* one header: name (1) + value (63) = 64 bytes, at the limit */
	int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX: %063d\r\n\r\n", 0);
	for (size_t cut = 0; cut <= (size_t)n; cut++) {
		int status;
		struct http_parser *p = http_parser_new(&lim);
		size_t c1 = 0, c2 = 0;
		enum http_parse_result r = http_parser_feed(p, req, cut, &c1);
		if (r == HTTP_PARSE_MORE)
			r = http_parser_feed(p, req + cut, (size_t)n - cut, &c2);
		status = http_parser_status(p);
		assert_int_equal(r, HTTP_PARSE_REQUEST);
		assert_int_equal(status, 0);
		http_parser_free(p);
	}
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX: %064d\r\n\r\n", 0);
	expect_status(&lim, req, (size_t)n, 431);
	/* spread over several headers: names and values are summed */
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\nX: %059d\r\n\r\n", 0);
	expect_status(&lim, req, (size_t)n, 431);
	/* a long header name counts too */
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX%065d: v\r\n\r\n", 0);
	expect_status(&lim, req, (size_t)n, 431);
	/* and so do chunked trailers: 17 + 7 bytes of headers, 1 + 39 of trailer */
	n = snprintf(req, sizeof(req),
		     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "0\r\nX: %039d\r\n\r\n",
		     0);
	struct http_parser *p = http_parser_new(&lim);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, req, (size_t)n, &consumed), HTTP_PARSE_REQUEST);
	http_parser_free(p);
	n = snprintf(req, sizeof(req),
		     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "0\r\nX: %040d\r\n\r\n",
		     0);
	expect_status(&lim, req, (size_t)n, 431);
	assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
}

static void test_header_count_limit(void **state)
{
	struct http_limits lim = limits;
	lim.max_headers = 4;
	static const char four[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	const struct expected_request want = {
		"GET",
		"/",
		"/",
		"",
		1,
		1,
		1,
		0,
		4,
		{ { "A", "1" }, { "B", "2" }, { "C", "3" }, { "D", "4" } },
		"",
		0,
		sizeof(four) - 1,
	};
	for (size_t cut = 0; cut <= sizeof(four) - 1; cut++) {
		int status;
		assert_int_equal(parse_stream(&lim, S(four), &cut, 1, &want, 1, &status), 1);
		assert_int_equal(status, 0);
	}
	expect_status(&lim, S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"),
		      431);
	/* empty values still count */
	expect_status(&lim, S("GET / HTTP/1.1\r\nA:\r\nB:\r\nC:\r\nD:\r\nE:\r\n\r\n"), 431);
}

static void test_body_limits(void **state)
{
	struct http_limits lim = limits;
	lim.max_body = 10;
	static const char fits[] = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
	const struct expected_request want = {
		"POST",
		"/",
		"/",
		"",
		1,
		1,
		1,
		0,
		1,
		{ { "Content-Length", "10" } },
		"0123456789",
		10,
		sizeof(fits) - 1,
	};
	static const char chunked_fits[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
					   "4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n";
	const struct expected_request want_chunked = {
		"POST",
		"/",
		"/",
		"",
		1,
		1,
		1,
		0,
		1,
		{ { "Transfer-Encoding", "chunked" } },
		"0123456789",
		10,
		sizeof(chunked_fits) - 1,
	};
	for (size_t cut = 0; cut <= sizeof(fits) - 1; cut++) {
		int status;
		assert_int_equal(parse_stream(&lim, S(fits), &cut, 1, &want, 1, &status), 1);
		assert_int_equal(status, 0);
	}
	for (size_t cut = 0; cut <= sizeof(chunked_fits) - 1; cut++) {
		int status;
		assert_int_equal(
			parse_stream(&lim, S(chunked_fits), &cut, 1, &want_chunked, 1, &status), 1);
		assert_int_equal(status, 0);
	}
	/* Content-Length over the limit is refused at the headers, before any
	 * body byte arrives */
	expect_status(&lim, S("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), 413);
	expect_status(&lim, S("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890"), 413);
	expect_status(&lim, S("POST / HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n"), 413);
	/* chunked: refused once the bytes received pass the limit */
	expect_status(&lim,
		      S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"6\r\n012345\r\n5\r\n67890\r\n0\r\n\r\n"),
		      413);
	expect_status(&lim,
		      S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"b\r\n0123456789A"),
		      413);
	assert_string_equal(http_status_text(413), "Content Too Large");
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"\x01\x02 garbage\r\n\r\n",
		"HELLO\r\n\r\n",
		"GET / HTTP/1.1\r\nHost a\r\n\r\n",	 /* no colon */
		"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", /* not a token */
		"GET / HTTP/1.1\r\nName : x\r\n\r\n",	 /* space before colon */
		"GET / HTTP/1.1\r\nName\t: x\r\n\r\n",
		"GET / HTTP/1.1\r\n: v\r\n\r\n", /* empty name */
		"GET / HTTP/1.1\r\nX(y): a\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",	/* control byte in a value */
		"GET / HTTP/1.1\r\n Folded: x\r\n\r\n", /* obsolete line folding */
		"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		/* request smuggling: both framings at once */
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
		"3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET / HTTQ/1.1\r\n\r\n",
		"GET / HTTP/1.1\rX\n\r\n",
		/* framing only ferry would read one way (the app may read another) */
		"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
		"0\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na",
		"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
		/* request targets: absolute with another Host, no path, no slash */
		"GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_status(&limits, bad[i], strlen(bad[i]), 400);
	assert_string_equal(http_status_text(400), "Bad Request");

	/* an error after a good pipelined request leaves the first one intact */
	static const char buf[] = "GET /ok HTTP/1.1\r\n\r\nGARBAGE\x01\r\n\r\n";
	const struct expected_request want = {
		"GET", "/ok", "/ok", "", 1, 1, 1, 0, 0, { { NULL } }, "", 0, 20,
	};
	for (size_t cut = 0; cut <= sizeof(buf) - 1; cut++) {
		int status;
		assert_int_equal(parse_stream(&limits, S(buf), &cut, 1, &want, 1, &status), 1);
		assert_int_equal(status, 400);
	}
}

/* The absolute form is taken by its path (and query): routes and the app
 * see the origin form. */
static void test_absolute_form(void **state)
{
	static const char req[] = "GET HTTP://Host:8/a/b?q=1 HTTP/1.1\r\nHost: host:8\r\n\r\n";
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, req, sizeof(req) - 1, &consumed), HTTP_PARSE_REQUEST);
	const struct http_request *r = http_parser_request(p);
	assert_string_equal(r->url, "/a/b?q=1");
	assert_string_equal(r->path, "/a/b");
	assert_string_equal(r->query, "q=1");
	http_parser_free(p);
}

static void test_progress_flags(void **state)
{
	static const char req[] = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab";
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_false(http_parser_in_request(p));
	assert_false(http_parser_in_body(p));
	assert_int_equal(http_parser_feed(p, req, 1, &consumed), HTTP_PARSE_MORE);
	assert_true(http_parser_in_request(p));
	assert_false(http_parser_in_body(p));
	assert_int_equal(http_parser_feed(p, req + 1, sizeof(req) - 3, &consumed), HTTP_PARSE_MORE);
	assert_true(http_parser_in_request(p));
	assert_true(http_parser_in_body(p));
	assert_int_equal(http_parser_feed(p, req + sizeof(req) - 2, 1, &consumed),
			 HTTP_PARSE_REQUEST);
	http_parser_next(p);
	assert_false(http_parser_in_request(p));
	assert_false(http_parser_in_body(p));
	http_parser_free(p);
}

/* http.h: in_request is "1 once the first byte of a request has been seen
 * and until it completes" -- not until http_parser_next(), so a request
 * being answered (a long-poll held open) does not look half-received. */
static void test_in_request_clears_on_completion(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\n\r\n";
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, S(req), &consumed), HTTP_PARSE_REQUEST);
	assert_false(http_parser_in_request(p));
	http_parser_free(p);
}

static void test_query(void **state)
{
	char out[64];
	size_t pos = 0;
	const char *q = "a=1&b=two&a=3&ab=no&a=&a";
	assert_int_equal(http_query_next(q, "a", &pos, out, sizeof(out)), 1);
	assert_string_equal(out, "1");
	assert_int_equal(http_query_next(q, "a", &pos, out, sizeof(out)), 1);
	assert_string_equal(out, "3");
	assert_int_equal(http_query_next(q, "a", &pos, out, sizeof(out)), 0); /* "a=" */
	assert_string_equal(out, "");
	assert_int_equal(http_query_next(q, "a", &pos, out, sizeof(out)), 0); /* "a" */
	assert_string_equal(out, "");
	assert_int_equal(http_query_next(q, "a", &pos, out, sizeof(out)), -1);
	assert_int_equal(http_query_next(q, "a", &pos, out, sizeof(out)), -1);

	pos = 0;
	assert_int_equal(http_query_next(q, "b", &pos, out, sizeof(out)), 3);
	assert_string_equal(out, "two");
	assert_int_equal(http_query_next(q, "b", &pos, out, sizeof(out)), -1);
	pos = 0;
	assert_int_equal(http_query_next(q, "ab", &pos, out, sizeof(out)), 2);
	assert_string_equal(out, "no");
	pos = 0;
	assert_int_equal(http_query_next(q, "c", &pos, out, sizeof(out)), -1);
	pos = 0;
	assert_int_equal(http_query_next("", "a", &pos, out, sizeof(out)), -1);

	/* percent-decoding and '+' */
	pos = 0;
	assert_int_equal(http_query_next("ch=news%2Fsport+live%21", "ch", &pos, out, sizeof(out)),
			 16);
	assert_string_equal(out, "news/sport live!");
	pos = 0;
	assert_int_equal(http_query_next("x=%2b%2B+%20", "x", &pos, out, sizeof(out)), 4);
	assert_string_equal(out, "++  ");
	pos = 0;
	assert_int_equal(http_query_next("x=%C3%A9t%c3%a9", "x", &pos, out, sizeof(out)), 5);
	assert_string_equal(out, "\xc3\xa9t\xc3\xa9");
	/* malformed escapes are kept as they are */
	pos = 0;
	assert_int_equal(http_query_next("x=100%&y=%zz%4", "x", &pos, out, sizeof(out)), 4);
	assert_string_equal(out, "100%");
	assert_int_equal(http_query_next("x=100%&y=%zz%4", "y", &pos, out, sizeof(out)), 5);
	assert_string_equal(out, "%zz%4");
	/* %00 decodes to a NUL inside the value; the length says so */
	pos = 0;
	assert_int_equal(http_query_next("x=a%00b", "x", &pos, out, sizeof(out)), 3);
	assert_memory_equal(out, "a\0b", 4);
	/* an escaped '&' or '=' is data, not a separator */
	pos = 0;
	assert_int_equal(http_query_next("x=a%26b%3Dc&y=1", "x", &pos, out, sizeof(out)), 5);
	assert_string_equal(out, "a&b=c");

	/* too small for the value and its NUL */
	pos = 0;
	assert_int_equal(http_query_next("x=abc", "x", &pos, out, 4), 3);
	pos = 0;
	assert_int_equal(http_query_next("x=abc", "x", &pos, out, 3), -2);
	pos = 0;
	assert_int_equal(http_query_next("x=%41%42", "x", &pos, out, 3), 2);
	assert_string_equal(out, "AB");
}

/* The query of a parsed request is what http_query_next() expects. */
static void test_query_from_request(void **state)
{
	static const char req[] =
		"GET /sub?channel=a%3Ab&channel=c&last-event-id=7 HTTP/1.1\r\n\r\n";
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed, pos = 0;
	char out[32];
	assert_int_equal(http_parser_feed(p, S(req), &consumed), HTTP_PARSE_REQUEST);
	const struct http_request *r = http_parser_request(p);
	assert_string_equal(r->path, "/sub");
	assert_int_equal(http_query_next(r->query, "channel", &pos, out, sizeof(out)), 3);
	assert_string_equal(out, "a:b");
	assert_int_equal(http_query_next(r->query, "channel", &pos, out, sizeof(out)), 1);
	assert_string_equal(out, "c");
	assert_int_equal(http_query_next(r->query, "channel", &pos, out, sizeof(out)), -1);
	pos = 0;
	assert_int_equal(http_query_next(r->query, "last-event-id", &pos, out, sizeof(out)), 1);
	assert_string_equal(out, "7");
	http_parser_free(p);
}

static void test_status_text(void **state)
{
	assert_string_equal(http_status_text(101), "Switching Protocols");
	assert_string_equal(http_status_text(200), "OK");
	assert_string_equal(http_status_text(404), "Not Found");
	assert_string_equal(http_status_text(426), "Upgrade Required");
	assert_string_equal(http_status_text(503), "Service Unavailable");
	assert_non_null(http_status_text(299));
}

/* A parser that is never fed, or freed mid-request, leaks nothing
 * (LeakSanitizer checks). */
static void test_free_paths(void **state)
{
	http_parser_free(NULL);
	struct http_parser *p = http_parser_new(&limits);
	http_parser_free(p);
	p = http_parser_new(&limits);
	size_t consumed;
	static const char part[] = "POST /x?y HTTP/1.1\r\nA: b\r\nContent-Length: 9\r\n\r\nabc";
	assert_int_equal(http_parser_feed(p, S(part), &consumed), HTTP_PARSE_MORE);
	http_parser_free(p);
}

/* Chunked trailers arrive after the headers are complete, through the same
 * header callbacks: they must not move what the request points at.
 * Regression: trailer fields used to be appended to the arena, whose realloc
 * left url and headers[] dangling (ASan: heap-use-after-free in split_url). */
static void test_chunked_trailer_keeps_request(void **state)
{
	char req[2048];
	int n = snprintf(req, sizeof(req),
			 "POST /x?a=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "1\r\nA\r\n0\r\nX-Trailer: %0900d\r\n\r\n",
			 0);
	struct http_parser *p = http_parser_new(&limits);
	size_t consumed;
	assert_int_equal(http_parser_feed(p, req, (size_t)n, &consumed), HTTP_PARSE_REQUEST);
	assert_int_equal(consumed, n);
	const struct http_request *r = http_parser_request(p);
	assert_string_equal(r->url, "/x?a=1");
	assert_string_equal(r->path, "/x");
	assert_string_equal(r->query, "a=1");
	assert_string_equal(http_request_header(r, "Transfer-Encoding"), "chunked");
	assert_int_equal(r->body_len, 1);
	assert_string_equal(r->body, "A");
	http_parser_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_header_value_whitespace),
		cmocka_unit_test(test_post_content_length),
		cmocka_unit_test(test_post_chunked),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_declined_upgrade_keeps_parsing),
		cmocka_unit_test(test_url_limit),
		cmocka_unit_test(test_header_bytes_limit),
		cmocka_unit_test(test_header_count_limit),
		cmocka_unit_test(test_body_limits),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_absolute_form),
		cmocka_unit_test(test_progress_flags),
		cmocka_unit_test(test_in_request_clears_on_completion),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_query_from_request),
		cmocka_unit_test(test_status_text),
		cmocka_unit_test(test_free_paths),
		cmocka_unit_test(test_chunked_trailer_keeps_request),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
