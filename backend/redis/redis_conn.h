/* redis_conn.h -- one connection to a Redis server on ferry's own bufferevent
 * (plain TCP or TLS). hiredis only formats the commands (redisFormatCommandArgv)
 * and parses the replies (redisReader); the I/O, the reply queue and push
 * messages of any kind (message, smessage, sunsubscribe, ...) are ours, so a
 * connection has what hiredis 0.14's async API lacks: TLS, deadlines (the
 * caller's timers may free it at any time) and sharded pub/sub.
 * Private to backend/redis/. */
#ifndef FERRY_REDIS_CONN_H
#define FERRY_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>

struct event_base;
struct rconn;
typedef struct ssl_ctx_st SSL_CTX;

/* The reply to one command, or NULL when the connection went away first
 * (then each pending callback is called exactly once with NULL). The reply
 * is freed when the callback returns. rc may be freed inside it. */
typedef void rconn_reply_fn(struct rconn *rc, const redisReply *reply, void *priv);

struct rconn_events {
	/* TCP (and TLS, with its verification) is up: commands can be sent. */
	void (*connected)(struct rconn *rc, void *arg);
	/* A reply no command waits for, or any push-shaped array once
	 * rconn_push_mode() is on: message, smessage, subscribe, ssubscribe,
	 * sunsubscribe, pong, ... Freed when this returns. */
	void (*push)(struct rconn *rc, const redisReply *reply, void *arg);
	/* The connection failed or closed (why: a reason for the log, never
	 * with a secret in it). Pending callbacks have had their NULL reply.
	 * rc is freed after this returns: forget it here. Not called for
	 * rconn_free(). */
	void (*lost)(struct rconn *rc, const char *why, void *arg);
};

/* Start connecting to host:port; with tls (not owned; its verification
 * settings apply) the connection is TLS, with server_name for SNI and the
 * host name check (NULL: host). Returns NULL (after setting *err to a
 * reason valid until the next call on this thread) when it failed at once
 * (no socket, a name that does not resolve); a refused or failed
 * connection is otherwise reported through events->lost later. Commands
 * may be queued before it is connected. */
struct rconn *rconn_connect(struct event_base *base, const char *host, int port, SSL_CTX *tls,
			    const char *server_name, const struct rconn_events *events, void *arg,
			    const char **err);

/* Queue one command; fn (may be NULL: the reply is discarded) is called
 * with its reply, in order. rconn_send_no_reply (SUBSCRIBE and friends on
 * a push connection) queues nothing: the confirmations arrive as pushes.
 * Returns -1 (fn not called) if the connection is closing. */
int rconn_command(struct rconn *rc, rconn_reply_fn *fn, void *priv, int argc, const char **argv,
		  const size_t *lens);
int rconn_send_no_reply(struct rconn *rc, int argc, const char **argv, const size_t *lens);

/* From now on, push-shaped arrays go to events->push even when a command
 * waits (a connection that has subscribed). */
void rconn_push_mode(struct rconn *rc);

/* Commands sent and not answered yet. */
long rconn_pending(const struct rconn *rc);
int rconn_is_connected(const struct rconn *rc);

/* Close now, pending commands or not: each pending callback gets NULL.
 * Safe inside any of rc's callbacks (the free then waits until it returns). */
void rconn_free(struct rconn *rc);

#endif
