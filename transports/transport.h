/* transport.h -- what a session needs from the wire under it. One instance
 * per transport: websocket, sse, longpoll and grip (a held HTTP answer). */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stddef.h>

struct message;
struct proto_event;

/* Why a client's transport is ended. Each transport says it in its own
 * terms: WebSocket with a close code (1008, 4008, 1012), SSE with a
 * retry: field and a reconnect event or by cutting the stream, long-poll
 * and GRIP by answering now. */
enum transport_close {
	TRANSPORT_CLOSE_POLICY,	       /* token expired, missing or invalid */
	TRANSPORT_CLOSE_SLOW_CONSUMER, /* outbound queue over --out-queue-max */
	TRANSPORT_CLOSE_RESTART,       /* ferry is draining: come back after retry_ms */
};

struct transport_ops {
	const char *name;
	/* Queue a channel message, encoded once per wire format and shared. */
	void (*send_message)(void *t, struct message *m);
	/* Queue a protocol event (subscribed, reset, ack, error...). */
	void (*send_event)(void *t, const struct proto_event *ev);
	/* Bytes queued and not yet written to the socket. */
	size_t (*queued)(void *t);
	/* End the transport: why, a short human reason (logged, and sent where
	 * the wire has room for it), and for TRANSPORT_CLOSE_RESTART the delay
	 * before the client should reconnect. Never frees synchronously: the
	 * transport reaps itself later. */
	void (*close)(void *t, enum transport_close why, const char *reason, int retry_ms);
};

#endif
