/* send.h -- POST PREFIXsend: messages from SSE and long-poll clients, which
 * have no upstream channel of their own. Any instance accepts them. */
#ifndef FERRY_SEND_H
#define FERRY_SEND_H

#include <stddef.h>

struct ferry;
struct httpconn;
struct http_request;

/* Module init and teardown (main.c); init returns 0, or -1 with err. */
int send_init(struct ferry *f, char *err, size_t errsz);
void send_free(struct ferry *f);

/* Publish the batch's new operations and answer 200 {"ack":N}, N the
 * highest seq done (IE turns 204 into 1223, so never 204); or refuse with
 * 400/403/405. */
void send_handle(struct httpconn *c, const struct http_request *req);

#endif
