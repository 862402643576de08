/* test_accesslog.c -- the access log's line: the combined format exactly,
 * escaping, fields cut to fit, and, for any bytes a client may send, a line
 * that stays one line with its six quotes in place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"
#include "http.h"

static struct access_entry entry(struct http_request *req, struct http_header *h,
				 const char *referer, const char *agent)
{
	unsigned n = 0;
	if (referer)
		h[n++] = (struct http_header){ "Referer", referer };
	if (agent)
		h[n++] = (struct http_header){ "User-Agent", agent };
	req->headers = h;
	req->nheaders = n;
	struct access_entry e = {
		.peer = "127.0.0.1:54321",
		.req = req,
		.status = 200,
		.bytes = 1234,
		.start = { 1795652400, 250000 },
		.end = { 1795652401, 500999 },
	};
	return e;
}

static void test_combined_format(void **state)
{
	struct http_request req = {
		.method = "GET", .url = "/a?b=c", .http_major = 1, .http_minor = 1
	};
	struct http_header h[2];
	struct access_entry e = entry(&req, h, "http://ref/", "curl/7.88.1");
	char line[1024];
	size_t len = accesslog_format(line, sizeof(line), &e);
	assert_int_equal(len, strlen(line));
	assert_string_equal(line,
			    "127.0.0.1 - - [26/Nov/2026:00:20:01 +0000] \"GET /a?b=c HTTP/1.1\" "
			    "200 1234 \"http://ref/\" \"curl/7.88.1\" 1.250\n");

	/* IPv6 peer, no headers, nothing parsed of the request */
	struct http_request empty = { 0 };
	e = entry(&empty, h, NULL, NULL);
	e.peer = "[::1]:8080";
	e.status = 400;
	e.bytes = 0;
	e.end = e.start;
	accesslog_format(line, sizeof(line), &e);
	assert_string_equal(line,
			    "::1 - - [26/Nov/2026:00:20:00 +0000] \"-\" 400 0 \"-\" \"-\" 0.000\n");
}

static void test_escaping(void **state)
{
	struct http_request req = {
		.method = "GET", .url = "/\"x\\y\x01\xc3\xa9", .http_major = 1, .http_minor = 0
	};
	struct http_header h[2];
	struct access_entry e = entry(&req, h, NULL, "a\" 200 0 \"-\" \"b\r\n");
	char line[1024];
	accesslog_format(line, sizeof(line), &e);
	assert_non_null(strstr(line, "\"GET /\\x22x\\x5Cy\\x01\\xC3\\xA9 HTTP/1.0\""));
	assert_non_null(strstr(line, "\"a\\x22 200 0 \\x22-\\x22 \\x22b\\x0D\\x0A\""));
}

static void check_shape(const char *line, size_t len, size_t cap)
{
	assert_true(len < cap);
	assert_int_equal(len, strlen(line));
	assert_int_equal(line[len - 1], '\n');
	int quotes = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (i < len - 1)
			assert_true(c >= 0x20 && c < 0x7f);
		quotes += c == '"';
	}
	assert_int_equal(quotes, 6);
}

static void test_long_fields_are_cut(void **state)
{
	char *url = malloc(9000);
	memset(url, 'u', 8999);
	url[0] = '/';
	url[8999] = '\0';
	char agent[5000];
	memset(agent, '"', sizeof(agent) - 1); /* each one escaped to 4 bytes */
	agent[sizeof(agent) - 1] = '\0';
	struct http_request req = { .method = "GET", .url = url, .http_major = 1, .http_minor = 1 };
	struct http_header h[2];
	struct access_entry e = entry(&req, h, url, agent);
	char line[8192];
	size_t len = accesslog_format(line, sizeof(line), &e);
	check_shape(line, len, sizeof(line));
	assert_non_null(strstr(line, "\" 200 1234 \"")); /* status and bytes survive the cut */
	assert_true(strlen(strstr(line, "\"GET ")) > 2048);
	/* the smallest buffer the header allows still gives a whole line */
	char small[256];
	len = accesslog_format(small, sizeof(small), &e);
	assert_true(len < sizeof(small));
	assert_int_equal(small[len - 1], '\n');
	free(url);
}

/* Whatever bytes the request line and headers hold (the parser lets
 * through any but NUL, CR and LF in some places; be stricter here). */
static void test_any_bytes_stay_one_line(void **state)
{
	unsigned seed = 12345;
	char url[300], ref[300], agent[300];
	char line[2048];
	for (int round = 0; round < 20000; round++) {
		char *fields[] = { url, ref, agent };
		for (int f = 0; f < 3; f++) {
			seed = seed * 1103515245u + 12345u;
			size_t n = (seed >> 8) % 299;
			for (size_t i = 0; i < n; i++) {
				seed = seed * 1103515245u + 12345u;
				char c = (char)(seed >> 16);
				fields[f][i] = c ? c : '"';
			}
			fields[f][n] = '\0';
		}
		struct http_request req = {
			.method = "POST", .url = url, .http_major = 1, .http_minor = 1
		};
		struct http_header h[2];
		struct access_entry e = entry(&req, h, ref, agent);
		size_t cap = round % 2 ? sizeof(line) : 600; /* half of them cut */
		size_t len = accesslog_format(line, cap, &e);
		check_shape(line, len, cap);
	}
}

int main(void)
{
	setenv("TZ", "UTC", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_combined_format),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_long_fields_are_cut),
		cmocka_unit_test(test_any_bytes_stay_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
