/* cursor.h -- where a client is in each channel, as text: "NAME,ID" for one
 * channel (the ?ch= query form) and "NAME,ID NAME,ID" for several (the SSE
 * id: field and Last-Event-ID). Channel names hold no ',' or ' ', so the
 * separators need no escaping. Pure: no I/O. */
#ifndef FERRY_CURSOR_H
#define FERRY_CURSOR_H

#include <stddef.h>

#include "protocol.h"

struct cursor {
	char channel[PROTO_MAX_CHANNEL + 1];
	char id[PROTO_MAX_CURSOR + 1]; /* "" when the client has no position */
};

/* Parse "NAME" or "NAME,ID" (len bytes). Returns 0, or -1 if the name is not a
 * valid channel or the id is empty, too long or holds a space or comma. */
int cursor_parse(const char *spec, size_t len, struct cursor *out);

/* Parse a space-separated list into out (at most max). Returns the count, or
 * -1 if an entry is invalid or there are more than max. */
int cursor_parse_list(const char *list, struct cursor *out, int max);

/* Write "NAME,ID NAME,ID ..." for the entries that have an id; returns the
 * length (truncated output is NUL-terminated; compare with outsz). */
size_t cursor_format_list(const struct cursor *c, int n, char *out, size_t outsz);

/* Set c's id to id (NULL: no position). Returns 0, or -1 (c unchanged) if id
 * is longer than PROTO_MAX_CURSOR: a cursor is never cut short. */
int cursor_set_id(struct cursor *c, const char *id);

/* Find a channel's entry, or NULL. */
struct cursor *cursor_find(struct cursor *c, int n, const char *channel);

#endif
