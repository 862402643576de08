/* tunnel.h -- a WebSocket to a path that is not ferry's, once the app has
 * answered its handshake with 101 (revproxy.c), is relayed as bytes: ferry
 * no longer looks inside. */
#ifndef FERRY_TUNNEL_H
#define FERRY_TUNNEL_H

struct ferry;
struct bufferevent;

/* Take over client (detached from HTTP; its input holds any bytes after
 * the request, its output the 101) and up (the app's connection, whose
 * input holds any bytes after its 101); both are freed by the tunnel. */
void tunnel_start(struct ferry *f, struct bufferevent *client, struct bufferevent *up,
		  const char *peer);

#endif
