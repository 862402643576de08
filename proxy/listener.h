/* listener.h -- listening sockets and the connection cap */
#ifndef FERRY_LISTENER_H
#define FERRY_LISTENER_H

struct ferry;
struct listener;

/* Bind every --listen address. Returns NULL (after logging) if one fails. */
struct listener *listener_new(struct ferry *f);
/* Stop accepting and close the listening sockets. */
void listener_free(struct listener *l);

#endif
