/* test_ws_handshake.c -- RFC 6455 section 4.2 checks, accept key and
 * subprotocol choice */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "ws_handshake.h"

#define RFC_KEY	   "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static struct ws_handshake_request good_request(void)
{
	struct ws_handshake_request req = {
		.is_get = 1,
		.http11 = 1,
		.upgrade = "websocket",
		.connection = "Upgrade",
		.key = RFC_KEY,
		.version = "13",
		.protocols = NULL,
	};
	return req;
}

static void expect_status(const struct ws_handshake_request *req, int status)
{
	struct ws_handshake_result res;
	memset(&res, 0x5A, sizeof(res)); /* always filled, whatever was there */
	ws_handshake_check(req, NULL, &res);
	assert_int_equal(res.status, status);
	if (status == 101) {
		assert_null(res.error);
		assert_int_equal(strlen(res.accept), WS_ACCEPT_LEN);
	} else {
		assert_non_null(res.error);
		assert_true(strlen(res.error) > 0);
		assert_null(res.protocol);
	}
}

static void test_accept_key_rfc_example(void **state)
{
	char out[WS_ACCEPT_LEN + 1];
	memset(out, 'x', sizeof(out));
	ws_accept_key(RFC_KEY, out);
	assert_string_equal(out, RFC_ACCEPT);
	assert_int_equal(out[WS_ACCEPT_LEN], '\0');

	/* a second, independently computed pair (RFC 6455 section 1.3 algorithm) */
	ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", out);
	assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_valid_request(void **state)
{
	struct ws_handshake_request req = good_request();
	struct ws_handshake_result res;
	ws_handshake_check(&req, NULL, &res);
	assert_int_equal(res.status, 101);
	assert_null(res.error);
	assert_string_equal(res.accept, RFC_ACCEPT);
	assert_null(res.protocol);
}

static void test_upgrade_header(void **state)
{
	static const char *const ok[] = { "websocket",	   "WebSocket",	     "WEBSOCKET",
					  "  websocket  ", "h2c, websocket", "websocket,foo" };
	static const char *const bad[] = { "",		 "h2c",	       "websockets",
					   "web socket", "xwebsocket", "websocket/13x",
					   "," };
	struct ws_handshake_request req = good_request();
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		req.upgrade = ok[i];
		expect_status(&req, 101);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.upgrade = bad[i];
		expect_status(&req, 400);
	}
	req.upgrade = NULL;
	expect_status(&req, 400);
}

static void test_connection_header(void **state)
{
	static const char *const ok[] = { "Upgrade",
					  "upgrade",
					  "UPGRADE",
					  "keep-alive, Upgrade",
					  "Upgrade, keep-alive",
					  "keep-alive,upgrade",
					  " keep-alive ,\tUpgrade\t, close",
					  ",,Upgrade,," };
	static const char *const bad[] = { "",	       "keep-alive",	     "close",	"upgrades",
					   "xupgrade", "keep-alive upgrade", "up grade" };
	struct ws_handshake_request req = good_request();
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		req.connection = ok[i];
		expect_status(&req, 101);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.connection = bad[i];
		expect_status(&req, 400);
	}
	req.connection = NULL;
	expect_status(&req, 400);
}

static void test_version(void **state)
{
	static const char *const bad[] = { "", "8", "12", "14", "130", "1", "13.0", "thirteen" };
	struct ws_handshake_request req = good_request();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.version = bad[i];
		expect_status(&req, 426);
	}
	req.version = NULL;
	expect_status(&req, 426);
}

static void test_keys(void **state)
{
	/* base64 of 16 bytes: 22 symbols, the last with its 4 low bits zero */
	static const char *const ok[] = {
		RFC_KEY,
		"x3JJHMbDL1EzLkh9GBhXDw==",
		"AAAAAAAAAAAAAAAAAAAAAA==",
		"/////////////////////w==",
		"+++++++++++++++++++++g==",
	};
	static const char *const bad[] = {
		"",
		"dGhlIHNhbXBsZSBub25jZQ",    /* padding missing */
		"dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
		"dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
		"dGhlIHNhbXBsZSBub25jZR==",  /* last symbol has data in its zero bits */
		"dGhlIHNhbXBsZSBub25jZ/==",
		"dGhlIHNhbXBsZSBub25j!Q==", /* not base64 */
		"dGhlIHNhbXBsZSBub25j Q==",
		"dGhlIHNhbXBsZSBub25j-Q==", /* base64url is not base64 */
		"dGhlIHNhbXBsZSBub25jZQ==\n",
		" dGhlIHNhbXBsZSBub25jZQ==",
		"AAAAAAAAAAAAAAAAAAAAAAAA", /* 18 bytes */
		"AAAAAAAAAAAAAAAAAAAAAAA=", /* 17 bytes */
		"AAAAAAAAAAAAAAAAAAAA",	    /* 15 bytes */
		"dGhlIHNhbXBsZSBub25jZQ=A",
		"dGhlIHNhbXBsZSBub25jZ===",
	};
	struct ws_handshake_request req = good_request();
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct ws_handshake_result res;
		char accept[WS_ACCEPT_LEN + 1];
		req.key = ok[i];
		ws_handshake_check(&req, NULL, &res);
		assert_int_equal(res.status, 101);
		ws_accept_key(ok[i], accept);
		assert_string_equal(res.accept, accept);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.key = bad[i];
		struct ws_handshake_result res;
		ws_handshake_check(&req, NULL, &res);
		if (res.status != 400)
			fail_msg("key \"%s\": expected 400, got %d", bad[i], res.status);
		assert_non_null(res.error);
	}
	req.key = NULL;
	expect_status(&req, 400);

	/* the 22nd symbol holds the last 2 bits of byte 16 and 4 zero bits:
	 * of all 64 symbols only A, Q, g and w (values 0, 16, 32, 48) fit */
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (int v = 0; v < 64; v++) {
		char key[] = RFC_KEY;
		struct ws_handshake_result res;
		key[21] = b64[v];
		req.key = key;
		ws_handshake_check(&req, NULL, &res);
		if (res.status != ((v & 15) == 0 ? 101 : 400))
			fail_msg("key \"%s\": got %d", key, res.status);
	}
}

static void test_method_and_version(void **state)
{
	struct ws_handshake_request req = good_request();
	req.is_get = 0;
	expect_status(&req, 400);
	req = good_request();
	req.http11 = 0;
	expect_status(&req, 400);
	/* a POST with a bad version is refused as a bad request, not 426 */
	req = good_request();
	req.is_get = 0;
	req.version = "8";
	expect_status(&req, 400);
}

static void test_subprotocols(void **state)
{
	static const char *const supported[] = { "ferry.v2", "ferry.v1", NULL };
	static const struct {
		const char *offered;
		int chosen; /* index into supported, -1 for none */
	} cases[] = {
		{ "ferry.v1, ferry.v2", 0 }, /* the server's preference wins */
		{ "ferry.v2, ferry.v1", 0 }, { "ferry.v1", 1 }, { "chat, ferry.v1", 1 },
		{ "  ferry.v1  ,chat", 1 },  { "chat", -1 },	{ "ferry", -1 },
		{ "ferry.v10", -1 },	     { "", -1 },
	};
	struct ws_handshake_request req = good_request();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ws_handshake_result res;
		req.protocols = cases[i].offered;
		ws_handshake_check(&req, supported, &res);
		assert_int_equal(res.status, 101);
		if (cases[i].chosen < 0)
			assert_null(res.protocol);
		else
			/* one of the server's own strings, not a copy */
			assert_ptr_equal(res.protocol, supported[cases[i].chosen]);
	}

	/* no header, or nothing supported: accepted without a subprotocol */
	struct ws_handshake_result res;
	req.protocols = NULL;
	ws_handshake_check(&req, supported, &res);
	assert_int_equal(res.status, 101);
	assert_null(res.protocol);
	req.protocols = "ferry.v1";
	ws_handshake_check(&req, NULL, &res);
	assert_int_equal(res.status, 101);
	assert_null(res.protocol);
	static const char *const none[] = { NULL };
	ws_handshake_check(&req, none, &res);
	assert_int_equal(res.status, 101);
	assert_null(res.protocol);

	/* a refused handshake selects nothing */
	req.version = "8";
	ws_handshake_check(&req, supported, &res);
	assert_int_equal(res.status, 426);
	assert_null(res.protocol);
}

static void test_header_has_token(void **state)
{
	assert_true(ws_header_has_token("a, b, c", "b"));
	assert_true(ws_header_has_token("A,B,C", "c"));
	assert_true(ws_header_has_token("b", "B"));
	assert_true(ws_header_has_token("\tb\t", "b"));
	assert_false(ws_header_has_token("a, bb, c", "b"));
	assert_false(ws_header_has_token("a, b c", "b"));
	assert_false(ws_header_has_token("", "b"));
	assert_false(ws_header_has_token(",,,", "b"));
	assert_false(ws_header_has_token(NULL, "b"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_key_rfc_example),
		cmocka_unit_test(test_valid_request),
		cmocka_unit_test(test_upgrade_header),
		cmocka_unit_test(test_connection_header),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_method_and_version),
		cmocka_unit_test(test_subprotocols),
		cmocka_unit_test(test_header_has_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
