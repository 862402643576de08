/* fuzz_ws_deflate.c -- libFuzzer target for permessage-deflate
 * (ws_deflate.c) and the message layer with it on (ws_message.c): the input
 * is inflated as a client message under a limit taken from byte 0 (never
 * more than the limit; the same bytes zlib itself makes of it, when that
 * fits), compressed and inflated back (the same bytes), read as a
 * Sec-WebSocket-Extensions offer (NULL or ferry's one answer), and read as
 * a client's wire with the extension negotiated (every message reported
 * within the limit, text UTF-8, one report per event). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "utf8.h"
#include "ws_deflate.h"
#include "ws_frame.h"
#include "ws_message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t limits[] = { 1 << 20, 0, 1, 125, 1000, 65536, 1 << 16, 4 << 20 };

/* What zlib makes of in (raw deflate, sync-flush tail added), up to cap
 * bytes: its length, or -1 when the data is bad or more than cap. */
static long reference_inflate(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	z_stream z = { 0 };
	if (inflateInit2(&z, -15) != Z_OK)
		abort();
	uint8_t *buf = malloc(len + 4);
	memcpy(buf, in, len);
	memcpy(buf + len, "\0\0\xff\xff", 4);
	z.next_in = buf;
	z.avail_in = (uInt)(len + 4);
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int rc = inflate(&z, Z_SYNC_FLUSH);
	long n = (long)(cap - z.avail_out);
	int ok = (rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR) && z.avail_out > 0 &&
		 (rc != Z_STREAM_END || z.avail_in <= 4);
	inflateEnd(&z);
	free(buf);
	return ok ? n : -1;
}

struct reader {
	size_t max;
	int done, calls;
};

static void cb_message(void *arg, enum ws_opcode op, const uint8_t *d, size_t len)
{
	struct reader *r = arg;
	if (r->calls++ || r->done || len > r->max || (op == WS_OP_TEXT && !utf8_valid(d, len)))
		abort();
}
static void cb_control(void *arg, const uint8_t *p, size_t len)
{
	struct reader *r = arg;
	if (r->calls++ || r->done || len > 125)
		abort();
}
static void cb_close(void *arg, unsigned code, const uint8_t *p, size_t len)
{
	struct reader *r = arg;
	if (r->calls++ || r->done)
		abort();
	r->done = 1;
}
static void cb_error(void *arg, int code, const char *reason)
{
	struct reader *r = arg;
	if (r->calls++ || r->done || !reason ||
	    (code != WS_CLOSE_PROTOCOL && code != WS_CLOSE_BAD_DATA && code != WS_CLOSE_TOO_BIG))
		abort();
	r->done = 1;
}
static const struct ws_message_callbacks callbacks = { cb_message, cb_control, cb_control, cb_close,
						       cb_error };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t max = limits[data[0] & 7];
	const uint8_t *in = data + 1;
	size_t len = size - 1;

	/* inflate under the limit; agree with zlib where the answer fits */
	struct ws_inflater *z = ws_inflater_new();
	uint8_t *out = NULL;
	size_t n = 0;
	enum ws_inflate_result rc = ws_inflate_message(z, in, len, max, &out, &n);
	if (rc == WS_INFLATE_OK) {
		if (n > max)
			abort();
		uint8_t *ref = malloc(max + 1);
		long rn = reference_inflate(in, len, ref, max + 1);
		if (rn >= 0 && ((size_t)rn != n || memcmp(ref, out, n) != 0))
			abort();
		free(ref);
		free(out);
	}
	/* the inflater is reusable after any outcome (no context between messages) */
	if (ws_inflate_message(z, (const uint8_t *)"\x02\x00", 2, 16, &out, &n) != WS_INFLATE_OK ||
	    n != 0)
		abort();
	free(out);

	/* compress, inflate back */
	struct ws_deflater *d = ws_deflater_new();
	uint8_t *zc;
	size_t zlen;
	if (ws_deflate_message(d, in, len, &zc, &zlen) == 0) {
		if (zlen >= len ||
		    ws_inflate_message(z, zc, zlen, len, &out, &n) != WS_INFLATE_OK || n != len ||
		    memcmp(out, in, len) != 0)
			abort();
		free(out);
		free(zc);
	}
	ws_deflater_free(d);

	/* as an extension offer */
	char *offer = malloc(len + 1);
	memcpy(offer, in, len);
	offer[len] = '\0';
	const char *answer = ws_deflate_negotiate(offer);
	if (answer && strcmp(answer, "permessage-deflate; server_no_context_takeover; "
				     "client_no_context_takeover") != 0)
		abort();
	free(offer);

	/* as a client's wire with the extension on */
	struct reader r = { .max = max ? max : 1 };
	struct ws_parser p;
	struct ws_message m;
	ws_parser_init(&p, r.max);
	p.allow_rsv1 = 1;
	ws_message_init(&m, &callbacks, &r, r.max);
	ws_message_enable_deflate(&m);
	size_t at = 0;
	while (!r.done) {
		struct ws_event ev;
		ssize_t used = ws_parser_feed(&p, in + at, len - at, &ev);
		r.calls = 0;
		if (used < 0) {
			ws_message_parse_error(&m, (int)used);
			break;
		}
		at += (size_t)used;
		if (ev.type == WS_EV_NONE)
			break;
		if (ws_message_feed(&m, &p, &ev) < 0)
			break;
	}
	ws_message_release(&m);
	ws_inflater_free(z);
	return 0;
}
