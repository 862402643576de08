/* utf8.c -- incremental UTF-8 validator.
 * Written out from RFC 3629 section 4 rather than a table-driven DFA: the
 * only non-obvious cases are the second-byte ranges after E0, ED, F0 and F4,
 * which exclude overlongs, surrogates and code points above U+10FFFF. */
#include "utf8.h"

#include <string.h>

void utf8_init(struct utf8_validator *v)
{
	v->pending = 0;
	v->lo = 0x80;
	v->hi = 0xBF;
}

int utf8_complete(const struct utf8_validator *v)
{
	return v->pending == 0;
}

int utf8_feed(struct utf8_validator *v, const uint8_t *s, size_t n, size_t *bad)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (v->pending) {
			if (c < v->lo || c > v->hi)
				goto fail;
			v->pending--;
			v->lo = 0x80;
			v->hi = 0xBF;
			i++;
			continue;
		}
		if (c < 0x80) {
			/* Text is mostly ASCII: skip eight bytes at a time. */
			while (i + 8 <= n) {
				uint64_t w;
				memcpy(&w, s + i, 8);
				if (w & 0x8080808080808080ULL)
					break;
				i += 8;
			}
			if (i < n && s[i] < 0x80)
				i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			v->pending = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			v->pending = 2;
			if (c == 0xE0)
				v->lo = 0xA0; /* overlong */
			else if (c == 0xED)
				v->hi = 0x9F; /* UTF-16 surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			v->pending = 3;
			if (c == 0xF0)
				v->lo = 0x90; /* overlong */
			else if (c == 0xF4)
				v->hi = 0x8F; /* above U+10FFFF */
		} else {
			goto fail; /* 80-C1 (stray continuation, overlong lead) and F5-FF */
		}
		i++;
	}
	return 0;
fail:
	if (bad)
		*bad = i;
	return -1;
}

int utf8_valid(const uint8_t *s, size_t n)
{
	struct utf8_validator v;
	utf8_init(&v);
	return utf8_feed(&v, s, n, NULL) == 0 && utf8_complete(&v);
}
