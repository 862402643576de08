/* longpoll.h -- the long-polling transport: GET PREFIXpoll?ch=NAME,ID...
 * Stateless between requests: each poll carries its channels and cursors,
 * so any instance can answer the next one. */
#ifndef FERRY_LONGPOLL_H
#define FERRY_LONGPOLL_H

struct ferry;
struct httpconn;
struct http_request;

void longpoll_init(struct ferry *f);
void longpoll_free(struct ferry *f);

/* Answer now (messages waiting, first poll, reset) or hold until a message
 * or --poll-timeout; refuse with 400/403/405/503. */
void longpoll_start(struct httpconn *c, const struct http_request *req);

#endif
