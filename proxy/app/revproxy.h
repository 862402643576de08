/* revproxy.h -- requests outside ferry's prefix go to the app (--upstream):
 * streamed both ways, or tunnelled when they upgrade to a WebSocket. */
#ifndef FERRY_REVPROXY_H
#define FERRY_REVPROXY_H

struct httpconn;
struct http_request;

/* Take the request at its head (its body has not been read). */
void revproxy_start(struct httpconn *c, const struct http_request *req);

#endif
