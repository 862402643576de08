/* cursor.c -- channel cursors as text */
#include "cursor.h"

#include <stdio.h>
#include <string.h>

int cursor_parse(const char *spec, size_t len, struct cursor *out)
{
	const char *comma = memchr(spec, ',', len);
	size_t clen = comma ? (size_t)(comma - spec) : len;
	if (!proto_channel_valid(spec, clen))
		return -1;
	memcpy(out->channel, spec, clen);
	out->channel[clen] = '\0';
	out->id[0] = '\0';
	if (!comma)
		return 0;
	size_t ilen = len - clen - 1;
	if (ilen == 0 || ilen > PROTO_MAX_CURSOR)
		return -1;
	for (size_t i = 0; i < ilen; i++) {
		unsigned char ch = (unsigned char)comma[1 + i];
		if (ch <= ' ' || ch == ',' || ch >= 0x7f)
			return -1;
	}
	memcpy(out->id, comma + 1, ilen);
	out->id[ilen] = '\0';
	return 0;
}

int cursor_parse_list(const char *list, struct cursor *out, int max)
{
	int n = 0;
	const char *p = list;
	for (;;) {
		while (*p == ' ')
			p++;
		if (!*p)
			return n;
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (n == max || cursor_parse(p, len, &out[n]) < 0)
			return -1;
		n++;
		p += len;
	}
}

size_t cursor_format_list(const struct cursor *c, int n, char *out, size_t outsz)
{
	size_t len = 0;
	if (outsz)
		out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (!c[i].id[0])
			continue;
		int w = snprintf(out + (len < outsz ? len : outsz), len < outsz ? outsz - len : 0,
				 "%s%s,%s", len ? " " : "", c[i].channel, c[i].id);
		len += (size_t)w;
	}
	return len;
}

int cursor_set_id(struct cursor *c, const char *id)
{
	size_t len = id ? strlen(id) : 0;
	if (len > PROTO_MAX_CURSOR)
		return -1;
	memcpy(c->id, id ? id : "", len);
	c->id[len] = '\0';
	return 0;
}

struct cursor *cursor_find(struct cursor *c, int n, const char *channel)
{
	for (int i = 0; i < n; i++)
		if (strcmp(c[i].channel, channel) == 0)
			return &c[i];
	return NULL;
}
