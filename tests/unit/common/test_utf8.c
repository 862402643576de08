/* test_utf8.c -- the incremental UTF-8 validator against RFC 3629 and the
 * Autobahn 6.x cases, whole and fed split at every byte */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "utf8.h"

enum expect {
	VALID,	    /* a complete, valid text */
	INCOMPLETE, /* a valid prefix that ends inside a character */
	INVALID,    /* fails at byte offset bad */
};

struct utf8_case {
	const char *name;
	const char *bytes;
	size_t len;
	enum expect expect;
	size_t bad;
};

#define CASE(name, lit, expect, bad)                                                               \
	{                                                                                          \
		name, lit, sizeof(lit) - 1, expect, bad                                            \
	}

/* Hex escapes swallow every hex digit that follows, so literals that mix
 * escapes and text are written as separate, concatenated pieces. */
static const struct utf8_case cases[] = {
	/* valid, by length */
	CASE("empty", "", VALID, 0),
	CASE("ascii", "Hello, world", VALID, 0),
	CASE("nul byte", "a\0b", VALID, 0),
	CASE("2-byte first U+0080", "\xc2\x80", VALID, 0),
	CASE("2-byte last U+07FF", "\xdf\xbf", VALID, 0),
	CASE("3-byte first U+0800", "\xe0\xa0\x80", VALID, 0),
	CASE("3-byte below surrogates U+D7FF", "\xed\x9f\xbf", VALID, 0),
	CASE("3-byte above surrogates U+E000", "\xee\x80\x80", VALID, 0),
	CASE("3-byte last U+FFFF", "\xef\xbf\xbf", VALID, 0),
	CASE("4-byte first U+10000", "\xf0\x90\x80\x80", VALID, 0),
	CASE("4-byte last U+10FFFF", "\xf4\x8f\xbf\xbf", VALID, 0),
	CASE("euro sign", "\xe2\x82\xac", VALID, 0),
	CASE("emoji", "\xf0\x9f\x98\x80", VALID, 0),
	CASE("mixed",
	     "a\xc3\xa9"
	     "b\xe2\x82\xac"
	     "c\xf0\x9f\x98\x80"
	     "d",
	     VALID, 0),

	/* Autobahn 6.2 - 6.5 */
	CASE("6.2 mixed",
	     "Hello-\xc2\xb5"
	     "@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1"
	     "-UTF-8!!",
	     VALID, 0),
	CASE("6.3.1 kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", VALID, 0),
	CASE("6.3.2 kosme + surrogate",
	     "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
	     "edited",
	     INVALID, 12),
	CASE("6.4.1 kosme + above U+10FFFF",
	     "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
	     "edited",
	     INVALID, 12),

	/* 6.7 / 6.9 / 6.11: boundaries */
	CASE("6.7.1 U+0000", "\x00", VALID, 0),
	CASE("6.9.1 U+007F", "\x7f", VALID, 0),
	CASE("6.11.3 U+FFFD", "\xef\xbf\xbd", VALID, 0),

	/* 6.8 / 6.10: five and six byte forms, beyond U+10FFFF */
	CASE("6.8.1 5-byte first", "\xf8\x88\x80\x80\x80", INVALID, 0),
	CASE("6.8.2 6-byte first", "\xfc\x84\x80\x80\x80\x80", INVALID, 0),
	CASE("6.10.1 U+110000", "\xf4\x90\x80\x80", INVALID, 1),
	CASE("6.10.2 F7 lead", "\xf7\xbf\xbf\xbf", INVALID, 0),
	CASE("6.10.3 FB lead", "\xfb\xbf\xbf\xbf\xbf", INVALID, 0),
	CASE("F4 BF", "\xf4\xbf\xbf\xbf", INVALID, 1),

	/* 6.12: unexpected continuation bytes */
	CASE("6.12.1 80", "\x80", INVALID, 0),
	CASE("6.12.2 BF", "\xbf", INVALID, 0),
	CASE("6.12.3 80 BF", "\x80\xbf", INVALID, 0),
	CASE("stray continuation after ascii", "ab\x80", INVALID, 2),
	CASE("extra continuation after 2-byte", "\xc3\xa9\xa9", INVALID, 2),
	CASE("extra continuation after 4-byte", "\xf0\x9f\x98\x80\x80", INVALID, 4),

	/* 6.13: lonely start characters followed by a space */
	CASE("6.13 C0 space", "\xc0 ", INVALID, 0),
	CASE("6.13 C2 space", "\xc2 ", INVALID, 1),
	CASE("6.13 DF space", "\xdf ", INVALID, 1),
	CASE("6.13 E0 space", "\xe0 ", INVALID, 1),
	CASE("6.13 EF space", "\xef ", INVALID, 1),
	CASE("6.13 F0 space", "\xf0 ", INVALID, 1),
	CASE("6.13 F8 space", "\xf8 ", INVALID, 0),
	CASE("6.13 FC space", "\xfc ", INVALID, 0),

	/* 6.14: last continuation byte missing */
	CASE("6.14 C0", "\xc0", INVALID, 0),
	CASE("6.14 E0 80", "\xe0\x80", INVALID, 1),
	CASE("6.14 F0 80 80", "\xf0\x80\x80", INVALID, 1),
	CASE("6.14 DF", "\xdf", INCOMPLETE, 0),
	CASE("6.14 EF BF", "\xef\xbf", INCOMPLETE, 0),
	CASE("6.14 F4 8F BF", "\xf4\x8f\xbf", INCOMPLETE, 0),
	CASE("6.14 F7 BF BF", "\xf7\xbf\xbf", INVALID, 0),
	CASE("truncated 3-byte before ascii",
	     "\xe2\x82"
	     "A",
	     INVALID, 2),
	CASE("truncated 2-byte before ascii",
	     "x\xc3"
	     "A",
	     INVALID, 2),
	CASE("truncated 4-byte before lead", "\xf0\x9f\x98\xf0\x9f\x98\x80", INVALID, 3),
	CASE("truncated at end after text", "abc\xe2\x82", INCOMPLETE, 0),

	/* 6.15: all of 6.14 concatenated */
	CASE("6.15",
	     "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf"
	     "\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf",
	     INVALID, 0),

	/* 6.16: impossible bytes */
	CASE("6.16.1 FE", "\xfe", INVALID, 0),
	CASE("6.16.2 FF", "\xff", INVALID, 0),
	CASE("6.16.3 FE FE FF FF", "\xfe\xfe\xff\xff", INVALID, 0),
	CASE("F5 after text", "ok\xf5\x80\x80\x80", INVALID, 2),

	/* 6.17 - 6.19: overlong forms */
	CASE("6.17.1 C0 AF", "\xc0\xaf", INVALID, 0),
	CASE("6.17.2 E0 80 AF", "\xe0\x80\xaf", INVALID, 1),
	CASE("6.17.3 F0 80 80 AF", "\xf0\x80\x80\xaf", INVALID, 1),
	CASE("6.17.4 F8 80 80 80 AF", "\xf8\x80\x80\x80\xaf", INVALID, 0),
	CASE("6.17.5 FC 80 80 80 80 AF", "\xfc\x80\x80\x80\x80\xaf", INVALID, 0),
	CASE("6.18.1 C1 BF", "\xc1\xbf", INVALID, 0),
	CASE("6.18.2 E0 9F BF", "\xe0\x9f\xbf", INVALID, 1),
	CASE("6.18.3 F0 8F BF BF", "\xf0\x8f\xbf\xbf", INVALID, 1),
	CASE("6.19.1 C0 80", "\xc0\x80", INVALID, 0),
	CASE("6.19.2 E0 80 80", "\xe0\x80\x80", INVALID, 1),
	CASE("6.19.3 F0 80 80 80", "\xf0\x80\x80\x80", INVALID, 1),

	/* 6.20 / 6.21: UTF-16 surrogates */
	CASE("6.20.1 U+D800", "\xed\xa0\x80", INVALID, 1),
	CASE("6.20.2 U+DB7F", "\xed\xad\xbf", INVALID, 1),
	CASE("6.20.3 U+DB80", "\xed\xae\x80", INVALID, 1),
	CASE("6.20.4 U+DBFF", "\xed\xaf\xbf", INVALID, 1),
	CASE("6.20.5 U+DC00", "\xed\xb0\x80", INVALID, 1),
	CASE("6.20.6 U+DF80", "\xed\xbe\x80", INVALID, 1),
	CASE("6.20.7 U+DFFF", "\xed\xbf\xbf", INVALID, 1),
	CASE("6.21.1 D800 DC00", "\xed\xa0\x80\xed\xb0\x80", INVALID, 1),
	CASE("6.21.8 DBFF DFFF", "\xed\xaf\xbf\xed\xbf\xbf", INVALID, 1),
	CASE("surrogate after text", "text \xed\xa0\x80", INVALID, 6),

	/* 6.22: noncharacters are valid */
	CASE("6.22.1 U+FFFE", "\xef\xbf\xbe", VALID, 0),
	CASE("6.22.2 U+FFFF", "\xef\xbf\xbf", VALID, 0),
	CASE("6.22.3 U+1FFFE", "\xf0\x9f\xbf\xbe", VALID, 0),
	CASE("6.22.33 U+10FFFE", "\xf4\x8f\xbf\xbe", VALID, 0),
	CASE("6.22.34 U+FDD0", "\xef\xb7\x90", VALID, 0),
};

/* Result of feeding one case in pieces: the split points are offsets where
 * one utf8_feed() call ends and the next begins. */
struct outcome {
	int failed;
	size_t bad; /* absolute offset when failed */
	int complete;
};

static struct outcome feed_pieces(const uint8_t *s, size_t n, const size_t *cuts, size_t ncuts)
{
	struct utf8_validator v;
	struct outcome o = { 0, 0, 0 };
	size_t start = 0;
	utf8_init(&v);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		size_t bad = (size_t)-1;
		if (utf8_feed(&v, s + start, end - start, &bad) < 0) {
			o.failed = 1;
			o.bad = start + bad;
			return o;
		}
		start = end;
	}
	o.complete = utf8_complete(&v);
	return o;
}

static void check_outcome(const struct utf8_case *c, struct outcome o, const char *how)
{
	switch (c->expect) {
	case VALID:
		if (o.failed || !o.complete)
			fail_msg("%s (%s): expected valid, got %s at %zu", c->name, how,
				 o.failed ? "failure" : "incomplete", o.bad);
		break;
	case INCOMPLETE:
		if (o.failed || o.complete)
			fail_msg("%s (%s): expected an incomplete prefix, got %s", c->name, how,
				 o.failed ? "failure" : "complete");
		break;
	case INVALID:
		if (!o.failed)
			fail_msg("%s (%s): expected failure at %zu, got none", c->name, how,
				 c->bad);
		if (o.bad != c->bad)
			fail_msg("%s (%s): expected failure at %zu, got %zu", c->name, how, c->bad,
				 o.bad);
		break;
	}
}

static void test_cases_whole(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct utf8_case *c = &cases[i];
		const uint8_t *s = (const uint8_t *)c->bytes;
		check_outcome(c, feed_pieces(s, c->len, NULL, 0), "whole");
		assert_int_equal(utf8_valid(s, c->len), c->expect == VALID);
	}
}

static void test_cases_split_everywhere(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct utf8_case *c = &cases[i];
		const uint8_t *s = (const uint8_t *)c->bytes;
		for (size_t cut = 0; cut <= c->len; cut++) {
			char how[32];
			snprintf(how, sizeof(how), "split at %zu", cut);
			check_outcome(c, feed_pieces(s, c->len, &cut, 1), how);
		}
		for (size_t a = 0; a <= c->len; a++) {
			for (size_t b = a; b <= c->len; b++) {
				size_t cuts[2] = { a, b };
				char how[48];
				snprintf(how, sizeof(how), "split at %zu and %zu", a, b);
				check_outcome(c, feed_pieces(s, c->len, cuts, 2), how);
			}
		}
	}
}

static void test_cases_byte_at_a_time(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct utf8_case *c = &cases[i];
		size_t cuts[64];
		assert_true(c->len <= 64);
		for (size_t k = 0; k < c->len; k++)
			cuts[k] = k;
		check_outcome(c, feed_pieces((const uint8_t *)c->bytes, c->len, cuts, c->len),
			      "byte at a time");
	}
}

/* Autobahn 6.6: every prefix of "kosme" is valid or an incomplete prefix. */
static void test_kosme_prefixes(void **state)
{
	static const uint8_t kosme[] = { 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
					 0x83, 0xce, 0xbc, 0xce, 0xb5 };
	static const int boundary[] = { 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1 };
	for (size_t n = 0; n <= sizeof(kosme); n++) {
		for (size_t cut = 0; cut <= n; cut++) {
			struct outcome o = feed_pieces(kosme, n, &cut, 1);
			assert_false(o.failed);
			assert_int_equal(o.complete, boundary[n]);
		}
		assert_int_equal(utf8_valid(kosme, n), boundary[n]);
	}
}

static void test_lead_bytes(void **state)
{
	/* every ASCII byte alone is a character */
	for (unsigned c = 0; c < 0x80; c++) {
		uint8_t b = (uint8_t)c;
		assert_true(utf8_valid(&b, 1));
	}
	/* continuation bytes and the overlong leads C0, C1 never start one */
	for (unsigned c = 0x80; c <= 0xC1; c++) {
		uint8_t s[2] = { (uint8_t)c, 0x80 };
		struct utf8_validator v;
		size_t bad = 99;
		utf8_init(&v);
		assert_int_equal(utf8_feed(&v, s, 2, &bad), -1);
		assert_int_equal(bad, 0);
	}
	/* C2 - F4 start a sequence that is incomplete on its own */
	for (unsigned c = 0xC2; c <= 0xF4; c++) {
		uint8_t b = (uint8_t)c;
		struct utf8_validator v;
		utf8_init(&v);
		assert_int_equal(utf8_feed(&v, &b, 1, NULL), 0);
		assert_false(utf8_complete(&v));
		assert_false(utf8_valid(&b, 1));
	}
	/* F5 - FF are never valid, whatever follows */
	for (unsigned c = 0xF5; c <= 0xFF; c++) {
		uint8_t s[4] = { (uint8_t)c, 0x80, 0x80, 0x80 };
		struct utf8_validator v;
		size_t bad = 99;
		utf8_init(&v);
		assert_int_equal(utf8_feed(&v, s, 4, &bad), -1);
		assert_int_equal(bad, 0);
	}
}

/* A decoder written from the code point rules (not from byte ranges), to
 * check the validator exhaustively on short inputs. */
static int reference_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			len = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += len;
	}
	return 1;
}

static void test_exhaustive_short(void **state)
{
	uint8_t s[4];
	for (unsigned a = 0; a < 256; a++) {
		s[0] = (uint8_t)a;
		if (utf8_valid(s, 1) != reference_valid(s, 1))
			fail_msg("%02x: validator %d", a, utf8_valid(s, 1));
		for (unsigned b = 0; b < 256; b++) {
			s[1] = (uint8_t)b;
			if (utf8_valid(s, 2) != reference_valid(s, 2))
				fail_msg("%02x %02x: validator %d", a, b, utf8_valid(s, 2));
			for (unsigned c = 0; c < 256; c++) {
				s[2] = (uint8_t)c;
				if (utf8_valid(s, 3) != reference_valid(s, 3))
					fail_msg("%02x %02x %02x: validator %d", a, b, c,
						 utf8_valid(s, 3));
			}
		}
	}
	/* four bytes: every 4-byte lead and second byte, representative tails */
	static const uint8_t tails[] = {
		0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0xbf, 0xc0, 0xf4, 0xff
	};
	for (unsigned a = 0xF0; a <= 0xF7; a++)
		for (unsigned b = 0; b < 256; b++)
			for (size_t c = 0; c < sizeof(tails); c++)
				for (size_t d = 0; d < sizeof(tails); d++) {
					s[0] = (uint8_t)a, s[1] = (uint8_t)b;
					s[2] = tails[c], s[3] = tails[d];
					if (utf8_valid(s, 4) != reference_valid(s, 4))
						fail_msg("%02x %02x %02x %02x: validator %d", a, b,
							 s[2], s[3], utf8_valid(s, 4));
				}
}

/* The validator skips ASCII eight bytes at a time: a bad byte or a
 * multi-byte character must be found at every alignment, and the reported
 * offset must still be exact. */
static void test_ascii_runs(void **state)
{
	uint8_t buf[80];
	for (size_t n = 1; n <= 64; n++) {
		for (size_t j = 0; j < n; j++) {
			struct utf8_validator v;
			size_t bad = 999;
			memset(buf, 'a', n);
			buf[j] = 0x80;
			utf8_init(&v);
			assert_int_equal(utf8_feed(&v, buf, n, &bad), -1);
			assert_int_equal(bad, j);

			memset(buf, 'a', n);
			buf[j] = 0xFF;
			utf8_init(&v);
			assert_int_equal(utf8_feed(&v, buf, n, &bad), -1);
			assert_int_equal(bad, j);

			/* a valid 4-byte character at j, ASCII on both sides */
			memset(buf, 'a', n + 4);
			memcpy(buf + j, "\xf0\x9f\x98\x80", 4);
			assert_true(utf8_valid(buf, n + 4));

			/* a lone lead byte at j: fails at the next byte, or is
			 * an incomplete prefix when it is last */
			memset(buf, 'a', n);
			buf[j] = 0xE2;
			utf8_init(&v);
			if (j + 1 < n) {
				assert_int_equal(utf8_feed(&v, buf, n, &bad), -1);
				assert_int_equal(bad, j + 1);
			} else {
				assert_int_equal(utf8_feed(&v, buf, n, &bad), 0);
				assert_false(utf8_complete(&v));
			}
		}
	}
}

/* The state carries over between calls: a character split across feeds
 * is checked against the range its lead byte allows. */
static void test_state_across_feeds(void **state)
{
	struct utf8_validator v;
	size_t bad = 99;

	utf8_init(&v);
	assert_true(utf8_complete(&v));
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xed", 1, &bad), 0);
	assert_false(utf8_complete(&v));
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xa0", 1, &bad), -1);
	assert_int_equal(bad, 0);

	utf8_init(&v);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xe0", 1, &bad), 0);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\x9f", 1, &bad), -1);

	utf8_init(&v);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xf4\x8f", 2, &bad), 0);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"", 0, &bad), 0);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xbf", 1, &bad), 0);
	assert_false(utf8_complete(&v));
	assert_int_equal(utf8_feed(&v,
				   (const uint8_t *)"\xbf"
						    "ok",
				   3, &bad),
			 0);
	assert_true(utf8_complete(&v));

	/* the range restriction applies to the second byte only */
	utf8_init(&v);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xe0\xa0", 2, &bad), 0);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\x80", 1, &bad), 0);
	assert_true(utf8_complete(&v));

	/* bad may be NULL */
	utf8_init(&v);
	assert_int_equal(utf8_feed(&v, (const uint8_t *)"\xff", 1, NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases_whole),
		cmocka_unit_test(test_cases_split_everywhere),
		cmocka_unit_test(test_cases_byte_at_a_time),
		cmocka_unit_test(test_kosme_prefixes),
		cmocka_unit_test(test_lead_bytes),
		cmocka_unit_test(test_exhaustive_short),
		cmocka_unit_test(test_ascii_runs),
		cmocka_unit_test(test_state_across_feeds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
