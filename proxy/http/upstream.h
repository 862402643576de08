/* upstream.h -- connections to the app behind ferry (--upstream): opened on
 * demand, kept alive between requests and reused. */
#ifndef FERRY_UPSTREAM_H
#define FERRY_UPSTREAM_H

#include <stddef.h>

struct ferry;
struct upstream;
struct bufferevent;

/* Parse url ("http://HOST[:PORT]") and resolve it, now, once. NULL with a
 * message in err when it is not such a URL or does not resolve. */
struct upstream *upstream_new(struct ferry *f, const char *url, char *err, size_t errsz);
void upstream_free(struct upstream *u);

/* A connection for one request: an idle one (*reused = 1) or a new one
 * still connecting (*reused = 0; BEV_EVENT_CONNECTED or an error follows).
 * with_body: the request has a body, which cannot be sent again if the
 * connection turns out dead, so only a recently used one is handed out.
 * The caller sets the callbacks and owns the bufferevent until
 * upstream_put() or upstream_close(). NULL when no socket can be made,
 * with errno EMFILE or ENFILE when no descriptor is left (the budget's,
 * clients.h, or the system's: counted and logged already; answer 503). */
struct bufferevent *upstream_get(struct upstream *u, int with_body, int *reused);
/* A new connection, never pooled; NULL as for upstream_get(). */
struct bufferevent *upstream_connect(struct upstream *u);
/* Give a connection back after a complete exchange (reusable: the app kept
 * it open and nothing is pending), or close it. */
void upstream_put(struct upstream *u, struct bufferevent *bev, int reusable);
/* Close a connection from upstream_get() (or a tunnel's), and give its
 * descriptor back to the budget. Never bufferevent_free() one. */
void upstream_close(struct upstream *u, struct bufferevent *bev);

/* "HOST:PORT" as given, for a Host header of ferry's own requests. */
const char *upstream_authority(const struct upstream *u);

#endif
