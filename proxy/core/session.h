/* session.h -- one client, whatever its transport: subscriptions with
 * per-channel cursors, the protocol's operations, and the outbound byte cap. */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "transport.h"

struct ferry;
struct session;
struct sub;
struct message;
struct identity;

/* The transport owns the session: it creates it and frees it when its
 * connection is gone. t is handed back to ops. */
struct session *session_new(struct ferry *f, const struct transport_ops *ops, void *t);
/* Unsubscribe everything and drop the transport's reference; callbacks still
 * pending (publish acknowledgements) find the session closed and do nothing. */
void session_free(struct session *s);

/* Send ferry's open frame, announcing the transport's heartbeat period. */
void session_open(struct session *s, int heartbeat_ms);

/* Subscribe to channel from cursor (NULL: live). Answers with frames. */
void session_subscribe(struct session *s, const char *channel, const char *cursor,
		       const long long *ref);

/* Handle one text frame from the client. */
void session_handle(struct session *s, const char *json, size_t len);
/* A binary message from the client: the data of the publish announced by the
 * op before it ("encoding":"binary"). -1 when none was announced (the
 * transport closes: 1003). */
int session_handle_binary(struct session *s, const uint8_t *data, size_t len);

/* How many channels the session is subscribed to, or being subscribed to. */
int session_subscriptions(const struct session *s);
/* Who the client is (auth.h), from the request, before subscribing: the
 * session takes it over (id is left empty) and, when the token has an
 * exp, closes at that moment (1008 "token expired"): a connection does not
 * outlive its token. */
void session_set_identity(struct session *s, struct identity *id);
/* What the app's callbacks get about the client: its Cookie header and
 * address. admitted: the transport already asked the subscribe callbacks
 * (SSE and long-poll ask before they start), so the session does not. */
void session_set_client(struct session *s, const char *cookie, const char *peer, int admitted);
/* The app itself named the channels (a GRIP hold): it vouches for the
 * client, so private channels need no token (docs/IN-FRONT.md). */
void session_app_vouches(struct session *s);
/* Refuse every operation but auth until a valid token comes (--require-token). */
void session_require_auth(struct session *s);
const char *session_id(const struct session *s);

#endif
