/* fuzz_cursor.c -- the cursor text forms (the ?ch= spec, the SSE id: field
 * and Last-Event-ID) and the SSE encoder: whatever parses must format back
 * to something that parses to the same cursors, and any data must encode to
 * an event stream a reader decodes back to that data. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "sse_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_cursors(const char *text)
{
	struct cursor c[8], again[8];
	int n = cursor_parse_list(text, c, 8);
	if (n < 0)
		return;
	char out[8 * (PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 2) + 1];
	size_t len = cursor_format_list(c, n, out, sizeof(out));
	assert(len < sizeof(out));
	int m = cursor_parse_list(out, again, 8);
	/* entries without an id are not formatted */
	int with_id = 0;
	for (int i = 0; i < n; i++)
		if (c[i].id[0]) {
			assert(with_id < m);
			assert(strcmp(c[i].channel, again[with_id].channel) == 0);
			assert(strcmp(c[i].id, again[with_id].id) == 0);
			with_id++;
		}
	assert(with_id == m);
}

/* Decode an event stream the way the HTML spec's reader does, for one event. */
static void check_sse(const char *data, size_t size)
{
	size_t len;
	char *ev = sse_event(NULL, data, size, &len);
	assert(len >= 8 && ev[len - 1] == '\n' && ev[len - 2] == '\n');
	char *got = malloc(size + 1);
	size_t n = 0;
	int first = 1;
	for (size_t i = 0; i + 1 < len;) {
		size_t end = i;
		while (ev[end] != '\n')
			end++;
		if (end == i)
			break; /* the blank line */
		assert(end - i >= 6 && memcmp(ev + i, "data: ", 6) == 0);
		if (!first)
			got[n++] = '\n';
		first = 0;
		memcpy(got + n, ev + i + 6, end - i - 6);
		n += end - i - 6;
		i = end + 1;
	}
	/* the reader normalises CRLF and CR to LF */
	size_t k = 0;
	for (size_t i = 0; i < size; i++, k++) {
		char want = data[i];
		if (want == '\r') {
			want = '\n';
			if (i + 1 < size && data[i + 1] == '\n')
				i++;
		}
		assert(k < n && got[k] == want);
	}
	assert(k == n);
	free(got);
	free(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	check_cursors(text);
	free(text);
	check_sse((const char *)data, size);
	return 0;
}
