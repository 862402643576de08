/* ws_deflate.h -- permessage-deflate (RFC 7692): the extension offer and
 * answer, and the codec. Pure: no I/O, no event loop; the only file that
 * knows zlib.
 *
 * ferry always answers "server_no_context_takeover; client_no_context_takeover":
 * every channel message is compressed once, on its own, and the same bytes
 * go to every subscriber that negotiated the extension, so no compressor
 * may remember one connection's past; and each client message is inflated
 * on its own, so a connection keeps no 32 KiB window between messages. */
#ifndef FERRY_WS_DEFLATE_H
#define FERRY_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* The answer to a Sec-WebSocket-Extensions request header (NULL if absent):
 * the value of the response header (static), or NULL when no offer of
 * permessage-deflate is one ferry can take (then the connection goes
 * without compression). An offer limiting server_max_window_bits below 15
 * is declined: the shared frames are made with a 32 KiB window. */
const char *ws_deflate_negotiate(const char *extensions);

/* One compressor for every channel message (no context kept between
 * messages). */
struct ws_deflater;
struct ws_deflater *ws_deflater_new(void);
void ws_deflater_free(struct ws_deflater *d);
/* Compress one message's payload for a frame with RSV1 set: a malloc'd
 * buffer in *out (*out_len bytes, without the 00 00 ff ff tail). Returns 0;
 * -1 (nothing allocated) when the result would not be smaller than len. */
int ws_deflate_message(struct ws_deflater *d, const void *in, size_t len, uint8_t **out,
		       size_t *out_len);

/* One decompressor per connection that negotiated the extension. */
struct ws_inflater;
struct ws_inflater *ws_inflater_new(void);
void ws_inflater_free(struct ws_inflater *z);

enum ws_inflate_result {
	WS_INFLATE_OK = 0,
	WS_INFLATE_TOO_BIG = -1, /* more than max bytes: a bomb, or just too big */
	WS_INFLATE_BAD = -2,	 /* not a deflate stream */
};
/* Inflate one message (the payloads of its frames, concatenated) into a
 * malloc'd *out of *out_len bytes, at most max: inflation stops as soon as
 * it would pass max, so memory stays bounded whatever the input claims. */
enum ws_inflate_result ws_inflate_message(struct ws_inflater *z, const uint8_t *in, size_t len,
					  size_t max, uint8_t **out, size_t *out_len);

#endif
