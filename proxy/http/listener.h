/* listener.h -- listening sockets and the connection cap */
#ifndef FERRY_LISTENER_H
#define FERRY_LISTENER_H

struct ferry;
struct listener;
struct httpconn_handler;

/* Bind every --listen address; each accepted connection becomes an
 * httpconn whose requests go to h. Returns NULL (after logging) if one
 * fails. */
struct listener *listener_new(struct ferry *f, const struct httpconn_handler *h);
/* Stop accepting and close the listening sockets. */
void listener_free(struct listener *l);

#endif
