/* grip.h -- GRIP (Pushpin's Generic Realtime Intermediary Protocol): an app
 * answers an ordinary request with Grip-Hold and Grip-Channel headers, and
 * ferry holds the client's request open on those channels: until the first
 * message (Grip-Hold: response, a long-poll) or for good (Grip-Hold: stream).
 * Only answers from --upstream are read this way: the app is trusted. */
#ifndef FERRY_GRIP_H
#define FERRY_GRIP_H

#include <stddef.h>

struct ferry;
struct httpconn;
struct evbuffer;
struct http_response_head;
struct grip_hold;

/* 1 if the answer carries a Grip-Hold instruction. */
int grip_wants(const struct http_response_head *head);
/* Parse the instructions; NULL (logged) when they are invalid. */
struct grip_hold *grip_hold_new(struct httpconn *c, const struct http_response_head *head);
/* The answer's body: the timeout answer (response) or the stream's start. */
int grip_hold_body(struct grip_hold *g, const char *data, size_t len);
/* The app's answer is complete: hold the client's request. */
void grip_hold_start(struct grip_hold *g);
/* Abandon before the start (the client went away). */
void grip_hold_free(struct grip_hold *g);

/* Add "Grip-Sig: JWT" to a request head for the app when --grip-key is set,
 * so GRIP libraries (django-grip, ...) know a GRIP proxy is in front. */
void grip_sign_request(struct ferry *f, struct evbuffer *head);

#endif
