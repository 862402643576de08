/* test_origin.c -- origin.c: the Origin policy (Host, --public-origin,
 * --allow-origin, Sec-Fetch-Site, Referer for JSONP), --trusted-proxy CIDRs
 * and the X-Forwarded-For client, loopback clients; and http_redact_url,
 * what logs print of a request target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config.h"
#include "http.h"
#include "origin.h"

#define PEER "127.0.0.1:5555"

static struct http_header hdrs[8];

/* A GET with Host: ferry.example:8080 and the given NAME, VALUE pairs. */
static struct http_request request(int n, ...)
{
	struct http_request req = { .method = "GET",
				    .url = "/ferry/ws",
				    .path = "/ferry/ws",
				    .query = "",
				    .headers = hdrs };
	hdrs[0] = (struct http_header){ .name = "Host", .value = "ferry.example:8080" };
	req.nheaders = 1;
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		hdrs[req.nheaders].name = va_arg(ap, char *);
		hdrs[req.nheaders].value = va_arg(ap, char *);
		req.nheaders++;
	}
	va_end(ap);
	return req;
}

static void test_origin_header(void **state)
{
	struct config cfg = { 0 };
	struct http_request r = request(1, "Origin", "http://ferry.example:8080");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 0));
	r = request(1, "Origin", "http://evil.example");
	assert_false(origin_request_allowed(&cfg, &r, PEER, 0));
	r = request(1, "Origin", "null");
	assert_false(origin_request_allowed(&cfg, &r, PEER, 0));
	cfg.allow_origin[0] = "http://evil.example";
	cfg.nallow_origin = 1;
	r = request(1, "Origin", "http://EVIL.example");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 0));
	cfg.allow_origin[0] = "*";
	r = request(1, "Origin", "null");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 0));
}

static void test_public_origin(void **state)
{
	struct config cfg = { .public_origin = { "https://example.com" }, .npublic_origin = 1 };
	struct http_request r = request(1, "Origin", "https://example.com");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 0));
	assert_true(origin_is_own(&cfg, &r, PEER, "https://example.com"));
	r = request(1, "Origin", "http://example.com");
	assert_false(origin_request_allowed(&cfg, &r, PEER, 0));
}

static void test_no_origin(void **state)
{
	struct config cfg = { 0 };
	struct http_request r = request(0);
	assert_true(origin_request_allowed(&cfg, &r, PEER, 0));	 /* not a browser page */
	assert_false(origin_request_allowed(&cfg, &r, PEER, 1)); /* JSONP: no proof */
	r = request(1, "Sec-Fetch-Site", "same-origin");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 1));
	r = request(1, "Sec-Fetch-Site", "cross-site");
	assert_false(origin_request_allowed(&cfg, &r, PEER, 0));
	r = request(2, "Sec-Fetch-Site", "same-site", "Referer", "http://ferry.example:8080/x?y");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 0));
	r = request(1, "Referer", "http://evil.example/page");
	assert_false(origin_request_allowed(&cfg, &r, PEER, 1));
	r = request(1, "Referer", "http://ferry.example:8080/ferry/demo");
	assert_true(origin_request_allowed(&cfg, &r, PEER, 1));
}

static void test_trusted_proxy(void **state)
{
	struct config cfg = { .trusted_proxy = { "10.0.0.0/8", "::1" }, .ntrusted_proxy = 2 };
	char err[128];
	assert_int_equal(origin_check_config(&cfg, err, sizeof(err)), 0);
	assert_true(origin_peer_trusted(&cfg, "10.1.2.3:80"));
	assert_true(origin_peer_trusted(&cfg, "[::1]:80"));
	assert_false(origin_peer_trusted(&cfg, "11.0.0.1:80"));
	assert_false(origin_peer_trusted(&cfg, PEER));

	/* the rightmost hop that is not a trusted proxy */
	char client[64];
	struct http_request r = request(1, "X-Forwarded-For", "1.1.1.1, 203.0.113.7, 10.9.9.9");
	origin_client_peer(&cfg, &r, "10.0.0.1:4000", client, sizeof(client));
	assert_string_equal(client, "203.0.113.7");
	r = request(1, "X-Forwarded-For", "2001:db8::1");
	origin_client_peer(&cfg, &r, "10.0.0.1:4000", client, sizeof(client));
	assert_string_equal(client, "[2001:db8::1]");
	/* untrusted peer: its header counts for nothing */
	r = request(1, "X-Forwarded-For", "203.0.113.7");
	origin_client_peer(&cfg, &r, "192.0.2.1:4000", client, sizeof(client));
	assert_string_equal(client, "192.0.2.1:4000");
	assert_false(origin_from_loopback(&cfg, &r, PEER, PEER)); /* forwarded */

	/* X-Forwarded-Host and -Proto from a trusted proxy */
	r = request(3, "Origin", "https://rt.example", "X-Forwarded-Host", "rt.example",
		    "X-Forwarded-Proto", "https");
	assert_true(origin_request_allowed(&cfg, &r, "10.0.0.1:1", 0));
	assert_false(origin_request_allowed(&cfg, &r, "192.0.2.1:1", 0));
	/* a forwarded host too long to keep is no host of ours: never compared
	 * cut to its first 255 bytes (that made "a...a.evil" the page's own) */
	char longhost[300], longorigin[300];
	memset(longhost, 'a', 255);
	strcpy(longhost + 255, ".evil");
	strcpy(longorigin, "https://");
	memset(longorigin + 8, 'a', 255);
	longorigin[8 + 255] = '\0';
	r = request(2, "Origin", longorigin, "X-Forwarded-Host", longhost);
	assert_false(origin_request_allowed(&cfg, &r, "10.0.0.1:1", 0));

	static const char *const bad[] = { "10.0.0.0/33", "x", "10.0.0.0/", "::1/129" };
	for (size_t i = 0; i < 4; i++) {
		struct config b = { .trusted_proxy = { bad[i] }, .ntrusted_proxy = 1 };
		assert_int_equal(origin_check_config(&b, err, sizeof(err)), -1);
	}
	struct config po = { .public_origin = { "example.com" }, .npublic_origin = 1 };
	assert_int_equal(origin_check_config(&po, err, sizeof(err)), -1);
}

static void test_loopback(void **state)
{
	struct config cfg = { 0 };
	struct http_request r = request(0);
	assert_true(origin_from_loopback(&cfg, &r, PEER, PEER));
	assert_true(origin_from_loopback(&cfg, &r, "127.8.0.1:1", "127.8.0.1:1"));
	assert_true(origin_from_loopback(&cfg, &r, "[::1]:1", "[::1]:1"));
	assert_false(origin_from_loopback(&cfg, &r, "192.0.2.1:1", "192.0.2.1:1"));
	r = request(1, "Via", "1.1 proxy");
	assert_false(origin_from_loopback(&cfg, &r, PEER, PEER));
}

static void test_redact_url(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "/ferry/ws", "/ferry/ws" },
		{ "/ferry/ws?ch=a", "/ferry/ws?ch=a" },
		{ "/ferry/ws?token=abc&ch=a", "/ferry/ws?token=REDACTED&ch=a" },
		{ "/x?ch=a&Access_Token=t&apiKey=k&my_secret=s&Password=p",
		  "/x?ch=a&Access_Token=REDACTED&apiKey=REDACTED&my_secret=REDACTED&Password=REDACTED" },
		{ "/x?token", "/x?token" },
		{ "/x?token=", "/x?token=REDACTED" },
		{ "/x?a=1;key=2", "/x?a=1;key=REDACTED" },
		{ "/x?", "/x?" },
	};
	char out[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = http_redact_url(cases[i].in, out, sizeof(out));
		assert_string_equal(out, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
	}
	/* cut, never overrun */
	assert_int_equal(http_redact_url("/x?token=abcdef", out, 8), 7);
	assert_string_equal(out, "/x?toke");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_origin_header), cmocka_unit_test(test_public_origin),
		cmocka_unit_test(test_no_origin),     cmocka_unit_test(test_trusted_proxy),
		cmocka_unit_test(test_loopback),      cmocka_unit_test(test_redact_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
