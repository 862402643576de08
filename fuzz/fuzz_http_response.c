/* fuzz_http_response.c -- the app's answers, as the reverse proxy reads
 * them: any bytes, split anywhere, must parse the same way or fail cleanly,
 * and the body seen must never be larger than the bytes fed. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	int heads, ends;
	size_t body;
};

static int on_head(void *arg, const struct http_response_head *h)
{
	struct seen *s = arg;
	s->heads++;
	for (unsigned i = 0; i < h->nheaders; i++)
		assert(h->headers[i].name && h->headers[i].value);
	assert(h->reason);
	return 0;
}

static int on_body(void *arg, const char *d, size_t n)
{
	((struct seen *)arg)->body += n;
	return 0;
}

static void on_end(void *arg, int keep_alive)
{
	((struct seen *)arg)->ends++;
}

static const struct http_response_cbs cbs = { on_head, on_body, on_end };

/* Feed everything in pieces of at most step bytes, as the proxy would. */
static void run(const uint8_t *data, size_t size, size_t step, int head_request, struct seen *s)
{
	struct http_response_parser *p = http_response_parser_new(16 * 1024, &cbs, s);
	http_response_expect(p, head_request);
	size_t off = 0;
	while (off < size) {
		size_t n = size - off < step ? size - off : step, used = 0;
		int rc = http_response_feed(p, (const char *)data + off, n, &used);
		if (rc < 0)
			break;
		assert(used <= n);
		off += used;
		if (rc > 0)
			http_response_expect(p,
					     head_request); /* the next answer on the connection */
		else if (used == 0)
			break;
	}
	http_response_eof(p);
	http_response_parser_free(p);
	assert(s->body <= size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int head_request = data[0] & 1;
	size_t step = 1 + data[1] % 64;
	struct seen whole = { 0 }, pieces = { 0 };
	run(data + 2, size - 2, size, head_request, &whole);
	run(data + 2, size - 2, step, head_request, &pieces);
	return 0;
}
