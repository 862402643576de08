/* utf8.h -- incremental UTF-8 validation (RFC 3629) for WebSocket text
 * messages that arrive in fragments split at any byte. Pure: no I/O. */
#ifndef FERRY_UTF8_H
#define FERRY_UTF8_H

#include <stddef.h>
#include <stdint.h>

struct utf8_validator {
	uint8_t pending; /* continuation bytes still expected */
	uint8_t lo, hi;	 /* allowed range of the next continuation byte */
};

void utf8_init(struct utf8_validator *v);

/* Feed n bytes. Returns 0 while everything so far is a valid prefix, or -1 at
 * the first byte that can never be part of valid UTF-8 (the state is then
 * undefined). *bad, if not NULL, receives the offset of that byte. */
int utf8_feed(struct utf8_validator *v, const uint8_t *s, size_t n, size_t *bad);

/* 1 if the bytes fed so far end on a character boundary. */
int utf8_complete(const struct utf8_validator *v);

/* Validate a whole buffer at once. */
int utf8_valid(const uint8_t *s, size_t n);

#endif
