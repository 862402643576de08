/* ferry.h -- the one context every module is handed: the event loop, the
 * read-only configuration, the hub, the backend, metrics and live clients. */
#ifndef FERRY_FERRY_H
#define FERRY_FERRY_H

#include <sys/queue.h>
#include <sys/time.h>

#include "bucket.h"
#include "config.h"
#include "flush.h"
#include "metrics.h"

struct event_base;
struct event;
struct hub;
struct backend;
struct listener;
struct client_link;
struct dict;
struct tls;
struct accesslog;
struct upstream;
struct jwt_verifier;
struct callback_rules;

/* What ferry does with a live client when it drains (SIGTERM). */
struct client_link_ops {
	/* Tell the client to reconnect after retry_ms and close (or schedule
	 * closing). Must not free the client synchronously. */
	void (*drain)(struct client_link *link, int retry_ms);
	/* Free the client now (at exit, after the drain bound). Called from
	 * the top of the loop, never from inside a callback. */
	void (*destroy)(struct client_link *link);
};

/* Embedded in every client connection so ferry can find it to drain. */
struct ip_count;

struct client_link {
	const struct client_link_ops *ops;
	struct ip_count *ip;  /* its address's count (--max-connections-per-ip) */
	int long_lived; /* streams and sockets: closes are spread over the drain window */
	int notified;
	TAILQ_ENTRY(client_link) entry;
};

TAILQ_HEAD(client_list, client_link);

struct ferry {
	struct event_base *base;
	const struct config *cfg;
	struct hub *hub;
	struct backend *backend;
	struct listener *listener;
	struct tls *tls;              /* NULL without --tls-listen */
	struct accesslog *access_log; /* NULL without --access-log */
	struct upstream *upstream;    /* NULL without --upstream */
	struct jwt_verifier *jwt;     /* NULL without --jwt-secret/--jwt-public-key */
	struct callback_rules *callbacks; /* --callback, or NULL */
	struct bucket publish_bucket; /* --publish-rate */
	struct dict *per_ip;          /* address -> open connections (--max-connections-per-ip) */
	struct flush_list flush_pending; /* sockets with output to write this turn */
	struct event *flush_ev;
	struct metrics metrics;
	struct dict *polls;           /* client id -> its held long-poll */
	struct dict *senders;         /* client id -> newest send seq seen */
	struct event *senders_sweep;

	struct client_list clients;   /* not yet told to go */
	struct client_list notified;  /* told to go, still closing */
	int nclients;
	unsigned long next_client_id;

	/* common timeouts (libevent keeps one queue per distinct value) */
	const struct timeval *tv_ws_ping, *tv_ws_pong, *tv_close, *tv_heartbeat, *tv_poll;

	int draining;
	int drain_total;              /* long-lived clients when the drain began */
	int drain_closed;
	struct timeval drain_start;
	struct event *drain_tick, *drain_deadline;
};

/* peer ("IP:PORT", or NULL) is counted against --max-connections-per-ip
 * until the link is removed: a connection that changes hands (an HTTP
 * connection upgrading) is removed by one owner and added by the next. */
void ferry_client_add(struct ferry *f, struct client_link *link, const struct client_link_ops *ops,
		      int long_lived, const char *peer);
void ferry_client_remove(struct ferry *f, struct client_link *link);
/* "1.2.3.4:5678" or "[::1]:5678" (a connection's peer) -> the address alone */
void ferry_peer_address(const char *peer, char *out, size_t outsz);
/* 1 when peer's address has --max-connections-per-ip connections open. */
int ferry_ip_full(struct ferry *f, const char *peer);
void ferry_ip_free(struct ferry *f);

/* Start draining: stop accepting, tell clients to go, exit within the bound. */
void ferry_drain(struct ferry *f);
/* At exit: destroy every client that is left. */
void ferry_close_all(struct ferry *f);

/* Called when a client is gone; ends the loop when draining and none is left. */
void ferry_client_gone(struct ferry *f);

#endif
