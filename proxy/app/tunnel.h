/* tunnel.h -- a WebSocket to a path that is not ferry's goes to the app as a
 * byte tunnel: ferry relays without looking inside. */
#ifndef FERRY_TUNNEL_H
#define FERRY_TUNNEL_H

struct ferry;
struct bufferevent;
struct evbuffer;

/* Take over client (detached from HTTP; its input holds any bytes after
 * the request) and head (the request as the app gets it, freed here). */
void tunnel_start(struct ferry *f, struct bufferevent *client, struct evbuffer *head,
		  const char *peer);

#endif
