/* test_redis_url.c -- the --redis URL: every scheme, user and password
 * (percent-encoded), IPv6, defaults, Sentinel lists, and what is refused;
 * the redacted form never shows a password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "redis/redis_url.h"

static void test_plain(void **state)
{
	struct redis_url u;
	assert_int_equal(redis_url_parse("redis://127.0.0.1", &u), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_int_equal(u.tls, 0);
	assert_null(u.user);
	assert_null(u.password);
	assert_int_equal(u.naddrs, 0);
	assert_int_equal(redis_url_parse("rediss://redis.example:6380/3/", &u), 0);
	assert_string_equal(u.host, "redis.example");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 3);
	assert_int_equal(u.tls, 1);
	assert_int_equal(redis_url_parse("redis://[::1]:7000/2", &u), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 2);
}

static void test_auth(void **state)
{
	struct redis_url u;
	assert_int_equal(redis_url_parse("redis://:s3cret@h:1/0", &u), 0);
	assert_null(u.user);
	assert_string_equal(u.password, "s3cret");
	redis_url_clear(&u);
	assert_int_equal(redis_url_parse("redis://ferry:p%3Aw%40d%25@h", &u), 0);
	assert_string_equal(u.user, "ferry");
	assert_string_equal(u.password, "p:w@d%");
	assert_string_equal(u.host, "h");
	redis_url_clear(&u);
	/* an '@' in the password taken literally: the last '@' ends it */
	assert_int_equal(redis_url_parse("redis://:a@b@h", &u), 0);
	assert_string_equal(u.password, "a@b");
	assert_string_equal(u.host, "h");
	redis_url_clear(&u);
	/* a user alone: the password comes from elsewhere */
	assert_int_equal(redis_url_parse("redis://ferry@h", &u), 0);
	assert_string_equal(u.user, "ferry");
	assert_null(u.password);
	redis_url_clear(&u);
	/* an empty password is none */
	assert_int_equal(redis_url_parse("redis://:@h", &u), 0);
	assert_null(u.password);
	redis_url_clear(&u);
}

static void test_sentinel(void **state)
{
	struct redis_url u;
	assert_int_equal(redis_url_parse("redis+sentinel://a:1,b,[::1]:3/mymaster/4", &u), 0);
	assert_int_equal(u.naddrs, 3);
	assert_string_equal(u.addrs[0].host, "a");
	assert_int_equal(u.addrs[0].port, 1);
	assert_string_equal(u.addrs[1].host, "b");
	assert_int_equal(u.addrs[1].port, 26379);
	assert_string_equal(u.addrs[2].host, "::1");
	assert_int_equal(u.addrs[2].port, 3);
	assert_string_equal(u.master, "mymaster");
	assert_int_equal(u.db, 4);
	assert_int_equal(u.tls, 0);
	assert_int_equal(redis_url_parse("rediss+sentinel://u:p@a/m", &u), 0);
	assert_int_equal(u.tls, 1);
	assert_string_equal(u.password, "p");
	redis_url_clear(&u);
	/* SENTINEL_MAX sentinels at most */
	char url[512] = "redis+sentinel://";
	for (int i = 0; i < SENTINEL_MAX; i++)
		snprintf(url + strlen(url), sizeof(url) - strlen(url), "%sh%d", i ? "," : "", i);
	strcat(url, "/m");
	assert_int_equal(redis_url_parse(url, &u), 0);
	assert_int_equal(u.naddrs, SENTINEL_MAX);
	char more[520];
	snprintf(more, sizeof(more), "redis+sentinel://x,%s", url + strlen("redis+sentinel://"));
	assert_int_equal(redis_url_parse(more, &u), -1);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"http://h",
		"redis://",
		"redis://:1",
		"redis://h:",
		"redis://h:0",
		"redis://h:65536",
		"redis://h:12x",
		"redis://h/x",
		"redis://h/-1",
		"redis://h/1/2",
		"redis://[::1",
		"redis://[]:1",
		"redis://:%zz@h",
		"redis://:%0@h",
		"redis://:a%00b@h",
		"redis+sentinel://h",
		"redis+sentinel://h/",
		"redis+sentinel:///m",
		"redis+sentinel://a,,b/m",
		"redis+sentinel://a:99999/m",
		"redis://h/99999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct redis_url u;
		if (redis_url_parse(bad[i], &u) != -1)
			fail_msg("accepted: '%s'", bad[i]);
	}
	char name[SENTINEL_NAME_MAX + 40];
	memset(name, 0, sizeof(name));
	strcpy(name, "redis+sentinel://h/");
	memset(name + strlen(name), 'm', SENTINEL_NAME_MAX);
	struct redis_url u;
	assert_int_equal(redis_url_parse(name, &u), 0);
	strcat(name, "m");
	assert_int_equal(redis_url_parse(name, &u), -1);
}

static void test_redact(void **state)
{
	char out[256];
	redis_url_redact("redis://ferry:s3cret@h:1/0", out, sizeof(out));
	assert_string_equal(out, "redis://ferry:***@h:1/0");
	redis_url_redact("rediss://:s3cret@h", out, sizeof(out));
	assert_string_equal(out, "rediss://:***@h");
	redis_url_redact("redis://s3cret@h", out, sizeof(out));
	assert_string_equal(out, "redis://***@h");
	redis_url_redact("redis://h:1", out, sizeof(out));
	assert_string_equal(out, "redis://h:1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),	 cmocka_unit_test(test_auth),
		cmocka_unit_test(test_sentinel), cmocka_unit_test(test_refused),
		cmocka_unit_test(test_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
