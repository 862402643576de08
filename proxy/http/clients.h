/* clients.h -- every client connection's lifecycle, and the registry of
 * live ones: what the drain walks, what --max-connections and
 * --max-connections-per-ip count, what /ferry/metrics reports.
 *
 * A connection embeds a struct client. It is never freed inside someone
 * else's call (the hub's fan-out, a session, a timer of another object):
 * each of its own callbacks is wrapped in client_enter()/client_leave(), a
 * close anywhere only marks it (client_close()), and it is destroyed when
 * the last callback of its own returns, or at the end of the loop turn when
 * none was running (Redis: callHandler() and CONN_FLAG_CLOSE_SCHEDULED). */
#ifndef FERRY_CLIENTS_H
#define FERRY_CLIENTS_H

#include <sys/queue.h>

struct ferry;
struct dict;
struct event;
struct event_base;
struct client;

struct client_ops {
	/* ferry is draining: tell the client to reconnect after retry_ms and
	 * close (client_close), or do nothing when it cannot be told. */
	void (*drain)(struct client *c, int retry_ms);
	/* Free the connection (client_remove() it first). Called by
	 * client_leave() and the reaper once it is closed and no callback of
	 * its own runs, and at exit for every client left. */
	void (*destroy)(struct client *c);
};

/* What /ferry/metrics counts the connection as; CLIENT_UNCOUNTED for a
 * lingering close. Values are metrics.h's TRANSPORT_*. */
#define CLIENT_UNCOUNTED (-1)

struct ip_count;

struct client {
	const struct client_ops *ops;
	struct ip_count *ip; /* its address's count (--max-connections-per-ip) */
	TAILQ_ENTRY(client) entry;
	TAILQ_ENTRY(client) in_reap;
	int in_callback;	 /* callbacks of its own running: do not free */
	signed char kind;	 /* metrics transport, or CLIENT_UNCOUNTED */
	unsigned closed : 1;	 /* client_close() was called: destroy when possible */
	unsigned registered : 1; /* on the registry (client_add, until client_remove) */
	unsigned counted : 1;	 /* in metrics.connections[kind] */
	unsigned long_lived : 1; /* streams and sockets: closes are spread over the drain window */
	unsigned notified : 1;	 /* told to go by the drain */
	unsigned reaping : 1;	 /* on the reap list */
};

TAILQ_HEAD(client_list, client);

struct clients {
	struct client_list live;     /* not yet told to go */
	struct client_list notified; /* told to go, still closing */
	struct client_list reap;     /* closed outside their own callbacks */
	struct event *reaper;	     /* active while reap is not empty */
	int n;
	struct dict *per_ip; /* address -> open connections */
	/* Called by clients_gone() when the last client has gone (the drain
	 * sets it to end the loop); NULL when nobody waits for that. */
	void (*on_empty)(void *arg);
	void *on_empty_arg;
};

struct clients *clients_new(struct ferry *f);
/* Destroy every client that is left (at exit), then free the registry. */
void clients_free(struct clients *cl);

/* Register c, counted as kind (metrics) and, for peer ("IP:PORT", or
 * NULL), against --max-connections-per-ip until client_remove(). A
 * connection that changes hands (an HTTP connection upgrading) is removed
 * by one owner and added by the next. */
void client_add(struct ferry *f, struct client *c, const struct client_ops *ops, int kind,
		int long_lived, const char *peer);
/* The lifecycle and the count without the registry: for what lives on a
 * registered connection (a held long-poll or GRIP answer on an httpconn),
 * which the drain reaches through that connection. Its ops->destroy is
 * what finishes it (answers and frees) at the end of the turn in which it
 * was client_close()d. */
void client_attach(struct ferry *f, struct client *c, const struct client_ops *ops, int kind);
/* Take c off the registry, the counts and the reap list (idempotent). */
void client_remove(struct ferry *f, struct client *c);

/* Around every callback of the connection's own. client_leave() may
 * destroy c: do not touch it afterwards. */
static inline void client_enter(struct client *c)
{
	c->in_callback++;
}
void client_leave(struct ferry *f, struct client *c);
/* Mark c closed: destroyed when its current callback returns, or at the
 * end of this loop turn when none is running. Idempotent. */
void client_close(struct ferry *f, struct client *c);

/* Called when a client is gone; calls on_empty when none is left. */
void clients_gone(struct ferry *f);
/* 1 when peer's address has --max-connections-per-ip connections open. */
int clients_ip_full(struct ferry *f, const char *peer);
/* Move a live client to the notified list and tell it to go. */
void clients_notify(struct clients *cl, struct client *c, int retry_ms);

#endif
