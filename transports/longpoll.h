/* longpoll.h -- the long-polling transport: GET PREFIXpoll?ch=NAME,ID...
 * Stateless between requests: each poll carries its channels and cursors,
 * so any instance can answer the next one. */
#ifndef FERRY_LONGPOLL_H
#define FERRY_LONGPOLL_H

#include <stddef.h>

struct ferry;
struct httpconn;
struct http_request;

/* Module init and teardown (main.c); init returns 0, or -1 with err. */
int longpoll_init(struct ferry *f, char *err, size_t errsz);
void longpoll_free(struct ferry *f);

/* Answer now (messages waiting, first poll, reset) or hold until a message
 * or --poll-timeout; refuse with 400/403/405/503. */
void longpoll_start(struct httpconn *c, const struct http_request *req);

#endif
