/* sse.h -- the Server-Sent Events transport: GET PREFIXsse?ch=NAME[,ID]... */
#ifndef FERRY_SSE_H
#define FERRY_SSE_H

struct httpconn;
struct http_request;

/* Answer the request with an event stream (the connection is taken over),
 * or refuse it with 400/403/405/503 on c. */
void sse_start(struct httpconn *c, const struct http_request *req);

#endif
