/* ws_encode.h -- a channel message as WebSocket frames, built once per
 * message and cached in it (WIRE_WS, WIRE_WS_DEFLATE). */
#ifndef FERRY_WS_ENCODE_H
#define FERRY_WS_ENCODE_H

#include <stddef.h>

struct ferry;
struct message;

/* The frames for every client: text and JSON messages as one text frame;
 * binary ones as a text head, then the bytes in one binary frame. NULL if
 * the message cannot be encoded. */
const char *ws_encode_message(struct message *m, size_t *len);
/* The same for permessage-deflate clients: the data frame compressed (RSV1)
 * when it reaches --ws-deflate-min and shrinks, else WIRE_WS's bytes. */
const char *ws_encode_deflated(struct ferry *f, struct message *m, size_t *len);

#endif
