/* router.h -- maps a complete request to the handler that answers it */
#ifndef FERRY_ROUTER_H
#define FERRY_ROUTER_H

struct httpconn;
struct http_request;

/* Answer req on c (now or later through httpconn_respond), or take the
 * connection over (WebSocket upgrade). */
void router_dispatch(struct httpconn *c, const struct http_request *req);

/* A request whose head is in (with --upstream): the app's requests are
 * taken now and streamed; ferry's own are left to complete. */
void router_head(struct httpconn *c, const struct http_request *req);

#endif
