/* websocket.h -- the WebSocket transport (RFC 6455): handshake, frames,
 * ping/pong, the close handshake, and ferry's protocol on top. */
#ifndef FERRY_WEBSOCKET_H
#define FERRY_WEBSOCKET_H

#include <stddef.h>

struct httpconn;
struct http_request;

enum ws_mode {
	WS_MODE_FERRY, /* PREFIXws: ferry's JSON protocol, subscriptions from ?ch= */
	WS_MODE_ECHO,  /* PREFIXecho: echo every message back (conformance testing) */
};

/* Answer the handshake: refuse with 400/403/426 on c, or take the connection
 * over (c is freed). */
void websocket_upgrade(struct httpconn *c, const struct http_request *req, enum ws_mode mode);

struct ferry;
/* The transport's state in f (the shared permessage-deflate compressor). */
int websocket_init(struct ferry *f, char *err, size_t errsz);
void websocket_free(struct ferry *f);

#endif
