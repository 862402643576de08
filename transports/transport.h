/* transport.h -- what a session needs from the wire under it. One instance
 * per transport (websocket now; sse and longpoll next). */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stddef.h>

struct message;
struct proto_event;

struct transport_ops {
	const char *name;
	/* Queue a channel message, encoded once per wire format and shared. */
	void (*send_message)(void *t, struct message *m);
	/* Queue a protocol event (subscribed, reset, ack, error...). */
	void (*send_event)(void *t, const struct proto_event *ev);
	/* Bytes queued and not yet written to the socket. */
	size_t (*queued)(void *t);
	/* Close with a reason (a WebSocket close code; other transports map it).
	 * Never frees synchronously: the transport reaps itself later. */
	void (*close)(void *t, int code, const char *reason);
};

#endif
