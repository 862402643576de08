/* test_cursor.c -- channel cursors as text: "NAME[,ID]" (the ?ch= form),
 * space-separated lists (the SSE id: line and Last-Event-ID), formatting,
 * truncation and lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "protocol.h"

static void parse_ok(const char *spec, const char *channel, const char *id)
{
	struct cursor c;
	memset(&c, 0x5A, sizeof(c));
	if (cursor_parse(spec, strlen(spec), &c) != 0)
		fail_msg("cursor_parse(\"%s\") refused", spec);
	assert_string_equal(c.channel, channel);
	assert_string_equal(c.id, id);
}

static void parse_bad(const char *spec, size_t len)
{
	struct cursor c;
	if (cursor_parse(spec, len, &c) != -1)
		fail_msg("cursor_parse(\"%.*s\") accepted", (int)len, spec);
}

#define BAD(lit) parse_bad(lit, sizeof(lit) - 1)

static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

static void test_parse_valid(void **state)
{
	parse_ok("news", "news", "");
	parse_ok("news,9d41b7a0:17", "news", "9d41b7a0:17");
	parse_ok("room:42/a@b=c_d.e-f,x", "room:42/a@b=c_d.e-f", "x");
	/* the id is opaque printable ASCII: the backend judges it later */
	parse_ok("a,garbage!#$%&()*+-./;<=>?@[]^_`{|}~", "a", "garbage!#$%&()*+-./;<=>?@[]^_`{|}~");

	/* longest channel, longest id */
	char *ch = repeat('c', PROTO_MAX_CHANNEL);
	char *id = repeat('7', PROTO_MAX_CURSOR);
	char spec[PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 2];
	snprintf(spec, sizeof(spec), "%s,%s", ch, id);
	parse_ok(spec, ch, id);
	free(ch);
	free(id);
}

static void test_parse_uses_len(void **state)
{
	/* only len bytes count: the rest of a list is not part of the entry */
	struct cursor c;
	const char *list = "news,ab:1 chat,cd:2";
	assert_int_equal(cursor_parse(list, 9, &c), 0);
	assert_string_equal(c.channel, "news");
	assert_string_equal(c.id, "ab:1");
	assert_int_equal(cursor_parse(list, 4, &c), 0);
	assert_string_equal(c.channel, "news");
	assert_string_equal(c.id, "");
	/* a buffer with no NUL at all */
	char raw[8] = { 'a', 'b', ',', '1', ':', '2', 'X', 'Y' };
	assert_int_equal(cursor_parse(raw, 6, &c), 0);
	assert_string_equal(c.channel, "ab");
	assert_string_equal(c.id, "1:2");
}

static void test_parse_invalid(void **state)
{
	/* empty or bad names */
	BAD("");
	BAD(",ab:1");
	BAD("ne ws");
	BAD("ne ws,ab:1");
	BAD("news!");
	BAD("new%20s");
	BAD("news\t");
	BAD("n\xC3\xA9ws");
	BAD("news\0x");
	/* empty id */
	BAD("news,");
	/* commas and spaces in the id */
	BAD("news,ab,cd");
	BAD("news,,ab");
	BAD("news,ab cd");
	BAD("news, ab");
	BAD("news,ab ");
	/* control, DEL and non-ASCII bytes in the id */
	BAD("news,a\tb");
	BAD("news,a\nb");
	BAD("news,a\x7f");
	BAD("news,\xC3\xA9");
	BAD("news,a\0b");

	/* one byte too long: channel, id */
	char *ch = repeat('c', PROTO_MAX_CHANNEL + 1);
	parse_bad(ch, strlen(ch));
	char spec[PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 8];
	snprintf(spec, sizeof(spec), "%s,1", ch);
	parse_bad(spec, strlen(spec));
	free(ch);
	char *id = repeat('7', PROTO_MAX_CURSOR + 1);
	snprintf(spec, sizeof(spec), "news,%s", id);
	parse_bad(spec, strlen(spec));
	free(id);
}

static void test_parse_list(void **state)
{
	struct cursor c[4];
	assert_int_equal(cursor_parse_list("news,ab:1 chat,cd:2", c, 4), 2);
	assert_string_equal(c[0].channel, "news");
	assert_string_equal(c[0].id, "ab:1");
	assert_string_equal(c[1].channel, "chat");
	assert_string_equal(c[1].id, "cd:2");

	/* extra spaces anywhere; an entry without an id */
	memset(c, 0x5A, sizeof(c));
	assert_int_equal(cursor_parse_list("   news,ab:1    chat  x,1 ", c, 4), 3);
	assert_string_equal(c[0].channel, "news");
	assert_string_equal(c[0].id, "ab:1");
	assert_string_equal(c[1].channel, "chat");
	assert_string_equal(c[1].id, "");
	assert_string_equal(c[2].channel, "x");
	assert_string_equal(c[2].id, "1");

	/* nothing */
	assert_int_equal(cursor_parse_list("", c, 4), 0);
	assert_int_equal(cursor_parse_list("    ", c, 4), 0);
	assert_int_equal(cursor_parse_list("", c, 0), 0);

	/* exactly max is fine, one more is refused */
	assert_int_equal(cursor_parse_list("a,1 b,2 c,3 d,4", c, 4), 4);
	assert_string_equal(c[3].channel, "d");
	assert_int_equal(cursor_parse_list("a,1 b,2 c,3 d,4 e,5", c, 4), -1);
	assert_int_equal(cursor_parse_list("a,1", c, 0), -1);

	/* one invalid entry spoils the list, wherever it is */
	assert_int_equal(cursor_parse_list("bad!,1 b,2", c, 4), -1);
	assert_int_equal(cursor_parse_list("a,1 b,", c, 4), -1);
	assert_int_equal(cursor_parse_list("a,1 ,2", c, 4), -1);
	assert_int_equal(cursor_parse_list("a,1 b,2,3", c, 4), -1);
	/* only spaces separate: a tab is part of the entry, and invalid */
	assert_int_equal(cursor_parse_list("a,1\tb,2", c, 4), -1);
	/* commas do not separate entries */
	assert_int_equal(cursor_parse_list("a,1,b,2", c, 4), -1);
}

/* max bounds the writes: nothing lands past out[max - 1] */
static void test_parse_list_bounds(void **state)
{
	struct cursor c[3];
	memset(c, 0x5A, sizeof(c));
	assert_int_equal(cursor_parse_list("a,1 b,2 c,3", c, 2), -1);
	const unsigned char *guard = (const unsigned char *)&c[2];
	for (size_t i = 0; i < sizeof(c[2]); i++)
		assert_int_equal(guard[i], 0x5A);
}

static void test_format_list(void **state)
{
	struct cursor c[3] = {
		{ .channel = "news", .id = "ab:1" },
		{ .channel = "empty", .id = "" },
		{ .channel = "chat", .id = "cd:22" },
	};
	char out[128];
	size_t n = cursor_format_list(c, 3, out, sizeof(out));
	assert_string_equal(out, "news,ab:1 chat,cd:22");
	assert_int_equal(n, strlen(out));

	/* entries without an id are left out, and leave no stray separator */
	n = cursor_format_list(&c[1], 2, out, sizeof(out));
	assert_string_equal(out, "chat,cd:22");
	assert_int_equal(n, 10);
	n = cursor_format_list(&c[1], 1, out, sizeof(out));
	assert_string_equal(out, "");
	assert_int_equal(n, 0);
	n = cursor_format_list(c, 0, out, sizeof(out));
	assert_string_equal(out, "");
	assert_int_equal(n, 0);
}

static void test_format_parse_round_trip(void **state)
{
	struct cursor c[5] = {
		{ .channel = "news", .id = "9d41b7a0:17" },
		{ .channel = "chat", .id = "0c3e0000:4" },
		{ .channel = "room:42/a@b=c_d.e-f", .id = "deadbeef:18446744073709551615" },
		{ .channel = "x", .id = "1" },
		{ .channel = "-", .id = "~" },
	};
	char out[512];
	size_t n = cursor_format_list(c, 5, out, sizeof(out));
	assert_true(n < sizeof(out));
	struct cursor back[5];
	assert_int_equal(cursor_parse_list(out, back, 5), 5);
	for (int i = 0; i < 5; i++) {
		assert_string_equal(back[i].channel, c[i].channel);
		assert_string_equal(back[i].id, c[i].id);
	}

	/* the longest entries */
	struct cursor big[2];
	memset(big, 0, sizeof(big));
	for (int i = 0; i < 2; i++) {
		memset(big[i].channel, i ? 'b' : 'a', PROTO_MAX_CHANNEL);
		memset(big[i].id, '9', PROTO_MAX_CURSOR);
	}
	char wide[2 * (PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 2)];
	n = cursor_format_list(big, 2, wide, sizeof(wide));
	assert_int_equal(n, 2 * (PROTO_MAX_CHANNEL + 1 + PROTO_MAX_CURSOR) + 1);
	struct cursor bigback[2];
	assert_int_equal(cursor_parse_list(wide, bigback, 2), 2);
	assert_memory_equal(bigback, big, sizeof(big));
}

static void test_format_truncation(void **state)
{
	struct cursor c[2] = {
		{ .channel = "news", .id = "ab:1" },
		{ .channel = "chat", .id = "cd:2" },
	};
	const char *full = "news,ab:1 chat,cd:2";
	size_t full_len = strlen(full);
	char buf[64];
	/* every size: the result is always the full length (as snprintf),
	 * the output is the longest prefix that fits, NUL-terminated, and
	 * nothing is written past outsz */
	for (size_t outsz = 1; outsz <= full_len + 2; outsz++) {
		memset(buf, '#', sizeof(buf));
		size_t n = cursor_format_list(c, 2, buf, outsz);
		assert_int_equal(n, full_len);
		size_t want = outsz - 1 < full_len ? outsz - 1 : full_len;
		assert_int_equal(strlen(buf), want);
		assert_memory_equal(buf, full, want);
		for (size_t i = outsz; i < sizeof(buf); i++)
			if (buf[i] != '#')
				fail_msg("outsz %zu: byte %zu written", outsz, i);
	}
	/* outsz 0: nothing written at all */
	memset(buf, '#', sizeof(buf));
	assert_int_equal(cursor_format_list(c, 2, buf, 0), full_len);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], '#');
	/* the caller detects truncation by comparing with outsz */
	assert_true(cursor_format_list(c, 2, buf, 10) >= 10);
	assert_true(cursor_format_list(c, 2, buf, full_len + 1) < full_len + 1);
}

static void test_find(void **state)
{
	struct cursor c[3] = {
		{ .channel = "news", .id = "1" },
		{ .channel = "newsroom", .id = "2" },
		{ .channel = "chat", .id = "" },
	};
	assert_ptr_equal(cursor_find(c, 3, "news"), &c[0]);
	assert_ptr_equal(cursor_find(c, 3, "newsroom"), &c[1]);
	assert_ptr_equal(cursor_find(c, 3, "chat"), &c[2]);
	/* exact names only: no prefixes, no case folding */
	assert_null(cursor_find(c, 3, "new"));
	assert_null(cursor_find(c, 3, "News"));
	assert_null(cursor_find(c, 3, "newsroom2"));
	assert_null(cursor_find(c, 3, ""));
	/* only the first n entries are searched */
	assert_null(cursor_find(c, 2, "chat"));
	assert_null(cursor_find(c, 0, "news"));
	/* the pointer is writable: callers move the cursor through it */
	cursor_find(c, 3, "chat")->id[0] = 'z';
	assert_string_equal(c[2].id, "z");
}

static void test_set_id(void **state)
{
	struct cursor c = { .channel = "news", .id = "old" };
	char longest[PROTO_MAX_CURSOR + 2];
	memset(longest, 'a', sizeof(longest) - 1);
	longest[PROTO_MAX_CURSOR] = '\0';
	assert_int_equal(cursor_set_id(&c, longest), 0); /* the longest cursor fits whole */
	assert_int_equal(strlen(c.id), PROTO_MAX_CURSOR);
	longest[PROTO_MAX_CURSOR] = 'a';
	longest[PROTO_MAX_CURSOR + 1] = '\0';
	assert_int_equal(cursor_set_id(&c, longest), -1); /* one more: refused, never cut */
	assert_int_equal(strlen(c.id), PROTO_MAX_CURSOR);
	assert_int_equal(cursor_set_id(&c, "9d41b7a0:17"), 0);
	assert_string_equal(c.id, "9d41b7a0:17");
	assert_int_equal(cursor_set_id(&c, NULL), 0); /* no position */
	assert_string_equal(c.id, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_uses_len),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_parse_list),
		cmocka_unit_test(test_parse_list_bounds),
		cmocka_unit_test(test_format_list),
		cmocka_unit_test(test_format_parse_round_trip),
		cmocka_unit_test(test_format_truncation),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_set_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
