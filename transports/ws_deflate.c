/* ws_deflate.c -- permessage-deflate with zlib: raw deflate streams, each
 * message ended by a sync flush whose 00 00 ff ff tail the wire omits
 * (RFC 7692 7.2.1) */
#include "ws_deflate.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "xmalloc.h"

/* ---- negotiation ---- */

/* The parameters of one offer "permessage-deflate; a; b=c": 1 if ferry can
 * take it. */
static int offer_acceptable(const char *p, const char *end)
{
	while (p < end) {
		while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
			p++;
		const char *name = p;
		while (p < end && *p != ';' && *p != '=' && *p != ' ' && *p != '\t')
			p++;
		size_t nlen = (size_t)(p - name);
		const char *val = NULL;
		size_t vlen = 0;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p == '=') {
			p++;
			while (p < end && (*p == ' ' || *p == '\t' || *p == '"'))
				p++;
			val = p;
			while (p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '"')
				p++;
			vlen = (size_t)(p - val);
			while (p < end && *p != ';')
				p++;
		}
		if (nlen == 0)
			continue;
#define IS(s) (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)
		if (IS("server_max_window_bits")) {
			/* our frames use 15 bits: an offer of fewer we cannot honour */
			if (!val || vlen != 2 || memcmp(val, "15", 2) != 0)
				return 0;
		} else if (!IS("server_no_context_takeover") && !IS("client_no_context_takeover") &&
			   !IS("client_max_window_bits")) {
			return 0; /* a parameter we do not know: decline this offer */
		}
#undef IS
	}
	return 1;
}

const char *ws_deflate_negotiate(const char *extensions)
{
	static const char answer[] =
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover";
	const char *p = extensions;
	while (p && *p) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *name_end = p;
		while (name_end < end && *name_end != ';' && *name_end != ' ' && *name_end != '\t')
			name_end++;
		if ((size_t)(name_end - p) == 18 && strncasecmp(p, "permessage-deflate", 18) == 0 &&
		    offer_acceptable(name_end, end))
			return answer;
		p = *end ? end + 1 : end;
	}
	return NULL;
}

/* ---- compressing ---- */

struct ws_deflater {
	z_stream z;
};

struct ws_deflater *ws_deflater_new(void)
{
	struct ws_deflater *d = xcalloc(1, sizeof(*d));
	if (deflateInit2(&d->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		abort(); /* only out of memory */
	return d;
}

void ws_deflater_free(struct ws_deflater *d)
{
	if (!d)
		return;
	deflateEnd(&d->z);
	free(d);
}

int ws_deflate_message(struct ws_deflater *d, const void *in, size_t len, uint8_t **out,
		       size_t *out_len)
{
	/* the bound plus the sync flush's 5-byte empty block */
	size_t cap = deflateBound(&d->z, (uLong)len) + 16;
	uint8_t *buf = xmalloc(cap);
	deflateReset(&d->z); /* no context takeover */
	d->z.next_in = (Bytef *)in;
	d->z.avail_in = (uInt)len;
	d->z.next_out = buf;
	d->z.avail_out = (uInt)cap;
	int rc = deflate(&d->z, Z_SYNC_FLUSH);
	size_t n = cap - d->z.avail_out;
	if (rc != Z_OK || d->z.avail_in != 0 || n < 4 || memcmp(buf + n - 4, "\0\0\xff\xff", 4)) {
		free(buf);
		return -1;
	}
	n -= 4;
	if (n >= len) { /* not worth it: the frame goes as it is */
		free(buf);
		return -1;
	}
	*out = buf;
	*out_len = n;
	return 0;
}

/* ---- inflating ---- */

struct ws_inflater {
	z_stream z;
};

struct ws_inflater *ws_inflater_new(void)
{
	struct ws_inflater *z = xcalloc(1, sizeof(*z));
	if (inflateInit2(&z->z, -15) != Z_OK)
		abort();
	return z;
}

void ws_inflater_free(struct ws_inflater *z)
{
	if (!z)
		return;
	inflateEnd(&z->z);
	free(z);
}

enum ws_inflate_result ws_inflate_message(struct ws_inflater *z, const uint8_t *in, size_t len,
					  size_t max, uint8_t **out, size_t *out_len)
{
	static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
	inflateReset(&z->z); /* client_no_context_takeover */
	/* room for max bytes and one more, which tells "too big" from "exactly max" */
	size_t cap = len * 4 + 256 < max + 1 ? len * 4 + 256 : max + 1;
	uint8_t *buf = xmalloc(cap);
	size_t n = 0;
	const uint8_t *src[2] = { in, tail };
	size_t srclen[2] = { len, sizeof(tail) };
	for (int part = 0; part < 2; part++) {
		z->z.next_in = (Bytef *)src[part];
		z->z.avail_in = (uInt)srclen[part];
		/* (at the end, a full buffer may hide output zlib still holds) */
		while (z->z.avail_in > 0 || (part == 1 && n == cap)) {
			if (n == cap) {
				if (cap > max) {
					free(buf);
					return WS_INFLATE_TOO_BIG;
				}
				cap = cap * 2 < max + 1 ? cap * 2 : max + 1;
				buf = xrealloc(buf, cap);
			}
			z->z.next_out = buf + n;
			z->z.avail_out = (uInt)(cap - n);
			int rc = inflate(&z->z, Z_SYNC_FLUSH);
			n = cap - z->z.avail_out;
			if (n > max) {
				free(buf);
				return WS_INFLATE_TOO_BIG;
			}
			if (rc == Z_STREAM_END) {
				/* a final block: nothing may follow it but the tail */
				if (z->z.avail_in > 0 && part == 0) {
					free(buf);
					return WS_INFLATE_BAD;
				}
				break;
			}
			if (rc == Z_BUF_ERROR && z->z.avail_in == 0)
				break; /* all in, all out */
			if (rc == Z_BUF_ERROR && z->z.avail_out > 0) {
				free(buf);
				return WS_INFLATE_BAD;
			}
			if (rc != Z_OK && rc != Z_BUF_ERROR) {
				free(buf);
				return WS_INFLATE_BAD;
			}
		}
	}
	*out = buf;
	*out_len = n;
	return WS_INFLATE_OK;
}
