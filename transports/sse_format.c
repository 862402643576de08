/* sse_format.c -- event-stream encoding */
#include "sse_format.h"

#include <string.h>

#include "xmalloc.h"

char *sse_event(const char *event, const char *data, size_t data_len, size_t *len)
{
	/* Worst case: every byte a line break, each costing "data: " + "\n". */
	size_t cap = (event ? strlen(event) + 8 : 0) + data_len * 7 + 8;
	char *out = xmalloc(cap), *p = out;
	if (event) {
		memcpy(p, "event: ", 7);
		p += 7;
		size_t elen = strlen(event);
		memcpy(p, event, elen);
		p += elen;
		*p++ = '\n';
	}
	size_t i = 0;
	for (;;) {
		size_t start = i;
		while (i < data_len && data[i] != '\n' && data[i] != '\r')
			i++;
		memcpy(p, "data: ", 6);
		p += 6;
		memcpy(p, data + start, i - start);
		p += i - start;
		*p++ = '\n';
		if (i == data_len)
			break;
		if (data[i] == '\r' && i + 1 < data_len && data[i + 1] == '\n')
			i++;
		i++;
	}
	*p++ = '\n';
	*len = (size_t)(p - out);
	return out;
}

char *sse_padding(size_t n)
{
	char *out = xmalloc(n);
	out[0] = ':';
	memset(out + 1, ' ', n - 2);
	out[n - 1] = '\n';
	return out;
}
