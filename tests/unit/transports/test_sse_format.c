/* test_sse_format.c -- the text/event-stream encoder: exact bytes for every
 * kind of line break, and a reader written here from the HTML Living
 * Standard's rules (9.2.6 "Interpreting an event stream") that must decode
 * each encoded event back to what was published, as an EventSource would. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse_format.h"

/* ------------------------------------------------------------------
 * A reference event-stream reader.
 *
 * Lines end at CRLF, LF or CR. An empty line dispatches the event; a line
 * starting with ':' is a comment; otherwise the field name runs up to the
 * first ':' (or the whole line), and one space after the colon is dropped.
 * "event" sets the type, "data" appends the value and a LF, "id" sets the
 * last event id (unless it holds a NUL), "retry" takes ASCII digits only.
 * Dispatch: an empty data buffer dispatches nothing; otherwise one trailing
 * LF is removed and the type defaults to "message". An event not finished by
 * a blank line at the end of the stream is discarded.
 * ------------------------------------------------------------------ */

#define MAX_EVENTS 16

struct sse_ev {
	char *type;
	char *data;
	size_t data_len;
	char *last_id;
};

struct sse_reader {
	struct sse_ev ev[MAX_EVENTS];
	int n;
	long retry; /* -1 if never set */
	int comments;
	/* buffers */
	char *data;
	size_t data_len, data_cap;
	char type[256];
	char last_id[256];
};

static char *dup_bytes(const char *p, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void append_data(struct sse_reader *r, const char *p, size_t n)
{
	if (r->data_len + n + 1 > r->data_cap) {
		r->data_cap = (r->data_len + n + 1) * 2;
		r->data = realloc(r->data, r->data_cap);
		assert_non_null(r->data);
	}
	memcpy(r->data + r->data_len, p, n);
	r->data_len += n;
}

static void dispatch(struct sse_reader *r)
{
	if (r->data_len == 0) {
		r->type[0] = '\0';
		return;
	}
	size_t len = r->data_len;
	if (r->data[len - 1] == '\n')
		len--;
	assert_true(r->n < MAX_EVENTS);
	struct sse_ev *e = &r->ev[r->n++];
	e->type = strdup(r->type[0] ? r->type : "message");
	e->data = dup_bytes(r->data, len);
	e->data_len = len;
	e->last_id = strdup(r->last_id);
	r->data_len = 0;
	r->type[0] = '\0';
}

static void process_line(struct sse_reader *r, const char *line, size_t len)
{
	if (len == 0) {
		dispatch(r);
		return;
	}
	if (line[0] == ':') {
		r->comments++;
		return;
	}
	const char *colon = memchr(line, ':', len);
	size_t flen = colon ? (size_t)(colon - line) : len;
	const char *value = colon ? colon + 1 : line + len;
	size_t vlen = colon ? len - flen - 1 : 0;
	if (vlen && value[0] == ' ') {
		value++;
		vlen--;
	}
	if (flen == 5 && memcmp(line, "event", 5) == 0) {
		assert_true(vlen < sizeof(r->type));
		memcpy(r->type, value, vlen);
		r->type[vlen] = '\0';
	} else if (flen == 4 && memcmp(line, "data", 4) == 0) {
		append_data(r, value, vlen);
		append_data(r, "\n", 1);
	} else if (flen == 2 && memcmp(line, "id", 2) == 0) {
		if (!memchr(value, '\0', vlen)) {
			assert_true(vlen < sizeof(r->last_id));
			memcpy(r->last_id, value, vlen);
			r->last_id[vlen] = '\0';
		}
	} else if (flen == 5 && memcmp(line, "retry", 5) == 0) {
		long v = 0;
		int digits = vlen > 0;
		for (size_t i = 0; i < vlen; i++) {
			if (value[i] < '0' || value[i] > '9')
				digits = 0;
			else
				v = v * 10 + (value[i] - '0');
		}
		if (digits)
			r->retry = v;
	}
	/* other fields are ignored */
}

static void reader_init(struct sse_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->retry = -1;
}

/* Feed a whole stream (UTF-8; a leading BOM is skipped). */
static void reader_feed(struct sse_reader *r, const char *buf, size_t len)
{
	size_t i = 0;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	size_t start = i;
	while (i < len) {
		if (buf[i] == '\r' || buf[i] == '\n') {
			process_line(r, buf + start, i - start);
			if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')
				i++;
			start = ++i;
		} else {
			i++;
		}
	}
	/* bytes after the last line break form an incomplete line: ignored,
	 * and so is an event that no blank line dispatched */
}

static void reader_free(struct sse_reader *r)
{
	for (int i = 0; i < r->n; i++) {
		free(r->ev[i].type);
		free(r->ev[i].data);
		free(r->ev[i].last_id);
	}
	free(r->data);
}

/* What an EventSource hands the page: line breaks normalized to LF. */
static char *normalize_breaks(const char *data, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	assert_non_null(out);
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r') {
			out[n++] = '\n';
			if (i + 1 < len && data[i + 1] == '\n')
				i++;
		} else {
			out[n++] = data[i];
		}
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/* Encode, compare with the exact expected bytes, decode with the reference
 * reader and compare with the data (line breaks as LF) and event name. */
static void check_event(const char *event, const char *data, size_t data_len, const char *expected,
			size_t expected_len)
{
	size_t len = 12345;
	char *enc = sse_event(event, data, data_len, &len);
	assert_non_null(enc);
	if (len != expected_len || memcmp(enc, expected, len) != 0)
		fail_msg(
			"sse_event(%s, \"%.*s\"): got \"%.*s\" (%zu bytes), expected \"%.*s\" (%zu)",
			event ? event : "NULL", (int)data_len, data, (int)len, enc, len,
			(int)expected_len, expected, expected_len);

	struct sse_reader r;
	reader_init(&r);
	reader_feed(&r, enc, len);
	assert_int_equal(r.n, 1);
	size_t want_len;
	char *want = normalize_breaks(data, data_len, &want_len);
	assert_int_equal(r.ev[0].data_len, want_len);
	assert_memory_equal(r.ev[0].data, want, want_len);
	assert_string_equal(r.ev[0].type, event ? event : "message");
	assert_int_equal(r.comments, 0);
	free(want);
	reader_free(&r);
	free(enc);
}

#define CHECK(ev, data_lit, expected_lit)                                                          \
	check_event(ev, data_lit, sizeof(data_lit) - 1, expected_lit, sizeof(expected_lit) - 1)

/* ------------------------------------------------------------------ */

static void test_single_line(void **state)
{
	CHECK(NULL, "hello", "data: hello\n\n");
	CHECK(NULL, "x", "data: x\n\n");
	/* a leading space survives: only the one after "data:" is dropped */
	CHECK(NULL, " indented", "data:  indented\n\n");
	/* colons and field-looking text inside data are just data */
	CHECK(NULL, ":not a comment", "data: :not a comment\n\n");
	CHECK(NULL, "event: x", "data: event: x\n\n");
	CHECK(NULL, "{\"a\":1}", "data: {\"a\":1}\n\n");
	/* UTF-8 passes through untouched */
	CHECK(NULL, "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80",
	      "data: h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\n\n");
}

static void test_multi_line_lf(void **state)
{
	CHECK(NULL, "a\nb", "data: a\ndata: b\n\n");
	CHECK(NULL, "one\ntwo\nthree", "data: one\ndata: two\ndata: three\n\n");
	/* an empty line in the middle is an empty data: line, not a dispatch */
	CHECK(NULL, "a\n\nb", "data: a\ndata: \ndata: b\n\n");
	/* a leading line break */
	CHECK(NULL, "\nx", "data: \ndata: x\n\n");
}

static void test_multi_line_crlf(void **state)
{
	CHECK(NULL, "a\r\nb", "data: a\ndata: b\n\n");
	CHECK(NULL, "a\r\n\r\nb", "data: a\ndata: \ndata: b\n\n");
	/* CRLF is one break; LF CR is two */
	CHECK(NULL, "a\n\rb", "data: a\ndata: \ndata: b\n\n");
}

static void test_multi_line_cr(void **state)
{
	CHECK(NULL, "a\rb", "data: a\ndata: b\n\n");
	CHECK(NULL, "a\r\rb", "data: a\ndata: \ndata: b\n\n");
	/* all three kinds mixed */
	CHECK(NULL, "1\r2\n3\r\n4", "data: 1\ndata: 2\ndata: 3\ndata: 4\n\n");
	/* a bare CR never reaches the stream: a reader would end the line there */
	size_t len;
	char *enc = sse_event(NULL, "a\rb\r\nc", 6, &len);
	assert_null(memchr(enc, '\r', len));
	free(enc);
}

static void test_trailing_newline(void **state)
{
	CHECK(NULL, "a\n", "data: a\ndata: \n\n");
	CHECK(NULL, "a\r\n", "data: a\ndata: \n\n");
	CHECK(NULL, "a\r", "data: a\ndata: \n\n");
	CHECK(NULL, "a\n\n", "data: a\ndata: \ndata: \n\n");
	/* data that is just a line break */
	CHECK(NULL, "\n", "data: \ndata: \n\n");
	CHECK(NULL, "\r\n", "data: \ndata: \n\n");
}

static void test_empty_data(void **state)
{
	/* one empty data: line, so the reader still dispatches an event
	 * (a blank line alone would dispatch nothing) */
	CHECK(NULL, "", "data: \n\n");
	CHECK("ping", "", "event: ping\ndata: \n\n");
}

static void test_event_name(void **state)
{
	CHECK("update", "hello", "event: update\ndata: hello\n\n");
	CHECK("ferry", "{\"type\":\"open\"}", "event: ferry\ndata: {\"type\":\"open\"}\n\n");
	CHECK("a.b:c", "x\ny", "event: a.b:c\ndata: x\ndata: y\n\n");
	/* absent: no event: line at all, the reader's type is "message" */
	size_t len;
	char *enc = sse_event(NULL, "hello", 5, &len);
	assert_int_equal(len, 13);
	assert_null(memmem(enc, len, "event", 5));
	free(enc);
}

static void test_embedded_nul_is_data(void **state)
{
	/* the encoder takes a length, not a C string */
	static const char data[] = { 'a', '\0', 'b' };
	static const char want[] = "data: a\0b\n\n";
	check_event(NULL, data, 3, want, sizeof(want) - 1);
}

/* Worst cases for the encoder's buffer: every byte a line break. */
static void test_all_breaks(void **state)
{
	const char kinds[] = { '\n', '\r' };
	for (size_t k = 0; k < 2; k++) {
		size_t n = 1000;
		char *data = malloc(n);
		memset(data, kinds[k], n);
		size_t len;
		char *enc = sse_event("e", data, n, &len);
		/* n breaks: n + 1 lines of "data: \n", the event line, the blank line */
		assert_int_equal(len, strlen("event: e\n") + (n + 1) * 7 + 1);
		struct sse_reader r;
		reader_init(&r);
		reader_feed(&r, enc, len);
		assert_int_equal(r.n, 1);
		assert_int_equal(r.ev[0].data_len, n);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(r.ev[0].data[i], '\n');
		reader_free(&r);
		free(enc);
		free(data);
	}
	/* CRLF pairs: one line each */
	size_t n = 500;
	char *data = malloc(2 * n);
	for (size_t i = 0; i < n; i++) {
		data[2 * i] = '\r';
		data[2 * i + 1] = '\n';
	}
	size_t len;
	char *enc = sse_event(NULL, data, 2 * n, &len);
	assert_int_equal(len, (n + 1) * 7 + 1);
	free(enc);
	free(data);
}

/* Several encoded events in one stream, as ferryd writes them: the reader
 * gets each one, with ids and retry seen between them. */
static void test_stream_of_events(void **state)
{
	const char *datas[] = { "first", "second\nline", "", "third\r\n" };
	const char *events[] = { NULL, "chat", NULL, "ferry" };
	char stream[1024];
	size_t used = 0;
	used += (size_t)snprintf(stream + used, sizeof(stream) - used, "retry: 2000\n\n");
	for (int i = 0; i < 4; i++) {
		used += (size_t)snprintf(stream + used, sizeof(stream) - used, "id: news,ab:%d\n",
					 i + 1);
		size_t len;
		char *enc = sse_event(events[i], datas[i], strlen(datas[i]), &len);
		assert_true(used + len < sizeof(stream));
		memcpy(stream + used, enc, len);
		used += len;
		free(enc);
	}
	struct sse_reader r;
	reader_init(&r);
	reader_feed(&r, stream, used);
	assert_int_equal(r.retry, 2000);
	assert_int_equal(r.n, 4);
	assert_string_equal(r.ev[0].data, "first");
	assert_string_equal(r.ev[0].type, "message");
	assert_string_equal(r.ev[0].last_id, "news,ab:1");
	assert_string_equal(r.ev[1].data, "second\nline");
	assert_string_equal(r.ev[1].type, "chat");
	assert_string_equal(r.ev[1].last_id, "news,ab:2");
	assert_string_equal(r.ev[2].data, "");
	assert_string_equal(r.ev[2].last_id, "news,ab:3");
	assert_string_equal(r.ev[3].data, "third\n");
	assert_string_equal(r.ev[3].type, "ferry");
	assert_string_equal(r.ev[3].last_id, "news,ab:4");
	reader_free(&r);
}

/* The reference reader itself: the spec's corner cases, so a wrong
 * reader cannot make the round trips above pass by accident. */
static void test_reference_reader(void **state)
{
	struct sse_reader r;
	reader_init(&r);
	static const char s[] = "\xEF\xBB\xBF: comment\r\n"
				"data:no space\r"
				"\r"	 /* CR alone: a blank line */
				"data\n" /* field with no colon: empty value */
				"\n"
				"event: x\n"
				"\n"	       /* no data: nothing dispatched */
				"retry: 12a\n" /* not digits: ignored */
				"id: 7\n"
				"data:  two spaces\n"
				"unknown: field\n"
				"\n"
				"data: unfinished\n"; /* never dispatched */
	reader_feed(&r, s, sizeof(s) - 1);
	assert_int_equal(r.comments, 1);
	assert_int_equal(r.retry, -1);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.ev[0].data, "no space");
	assert_string_equal(r.ev[1].data, "");
	assert_string_equal(r.ev[1].type, "message");
	assert_string_equal(r.ev[2].data, " two spaces");
	assert_string_equal(r.ev[2].type, "message"); /* reset by the empty dispatch */
	assert_string_equal(r.ev[2].last_id, "7");
	reader_free(&r);
}

static void test_padding(void **state)
{
	size_t sizes[] = { 2, 3, 16, 2048, 4096 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		char *p = sse_padding(n);
		assert_non_null(p);
		assert_int_equal(p[0], ':');
		assert_int_equal(p[n - 1], '\n');
		for (size_t i = 1; i + 1 < n; i++)
			if (p[i] != ' ')
				fail_msg("sse_padding(%zu): byte %zu is 0x%02x", n, i,
					 (unsigned char)p[i]);
		/* a reader sees one comment and no event */
		struct sse_reader r;
		reader_init(&r);
		reader_feed(&r, p, n);
		assert_int_equal(r.comments, 1);
		assert_int_equal(r.n, 0);
		reader_free(&r);
		free(p);
	}
	/* padding in front of an event changes nothing the reader delivers */
	char *p = sse_padding(2048);
	size_t len;
	char *enc = sse_event("e", "d\nd", 3, &len);
	char *both = malloc(2048 + len);
	memcpy(both, p, 2048);
	memcpy(both + 2048, enc, len);
	struct sse_reader r;
	reader_init(&r);
	reader_feed(&r, both, 2048 + len);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0].data, "d\nd");
	assert_string_equal(r.ev[0].type, "e");
	reader_free(&r);
	free(both);
	free(enc);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_reader),
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_multi_line_lf),
		cmocka_unit_test(test_multi_line_crlf),
		cmocka_unit_test(test_multi_line_cr),
		cmocka_unit_test(test_trailing_newline),
		cmocka_unit_test(test_empty_data),
		cmocka_unit_test(test_event_name),
		cmocka_unit_test(test_embedded_nul_is_data),
		cmocka_unit_test(test_all_breaks),
		cmocka_unit_test(test_stream_of_events),
		cmocka_unit_test(test_padding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
