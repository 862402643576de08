/* clients.h -- every client connection's lifecycle, and the registry of
 * live ones: what the drain walks, what --max-connections and
 * --max-connections-per-ip count, what /ferry/metrics reports; and the
 * descriptor budget that client sockets and connections to the app share.
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

struct config;
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
	int n;			     /* registered: each holds one client socket */
	int app_fds;	     /* connections to the app: in use, pooled, tunnels, callbacks */
	int fd_budget;	     /* n + app_fds never passes this (clients_fd_plan) */
	int fd_clients;	     /* accepting pauses when n + app_fds reaches this */
	struct dict *per_ip; /* address -> open connections */
	/* Called by clients_gone() when the last client has gone (the drain
	 * sets it to end the loop); NULL when nobody waits for that. */
	void (*on_empty)(void *arg);
	void *on_empty_arg;
	/* Called whenever n or app_fds changes (the listener: it pauses or
	 * resumes accepting); NULL when nobody listens. */
	void (*on_fds)(void *arg);
	void *on_fds_arg;
	long long refused;	  /* app descriptors refused, in all */
	long long refused_logged; /* ...when the last line about them was logged */
	long refused_log_sec;	  /* its time (loop clock, seconds) */
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

/* ---- descriptors ----
 * Every descriptor ferry opens for a client (a registered connection:
 * n) or for the app (app_fds) counts against one budget: the open-files
 * limit nofile less CLIENTS_FD_OVERHEAD and the listening sockets. With
 * --upstream, --app-descriptors percent of it is kept for the app side:
 * accepting pauses when n + app_fds reaches the rest (the clients' share),
 * so a connection already open still gets a descriptor to the app, and one
 * to the app is refused only at the whole budget. */

/* stdio, the loop's own descriptors, the access log, Redis, a refused
 * connection's 503: never counted, always left free */
#define CLIENTS_FD_OVERHEAD 64

/* The clients' share of the budget for nofile descriptors under cfg; the
 * whole budget in *budget. Both at least 1. */
int clients_fd_plan(long nofile, const struct config *cfg, int *budget);
/* 1 when a new client would pass the clients' share: stop accepting. */
int clients_accept_full(const struct clients *cl);
/* 1 when the whole budget is in use: clients_app_fd_take() would refuse. */
int clients_app_full(const struct clients *cl);
/* Take a descriptor for a connection to the app: 0, or -1 when the budget
 * has none left (counted in ferry_limited_total{limit="descriptors"} and
 * logged at most once a minute; the caller answers 503). */
int clients_app_fd_take(struct ferry *f);
/* Give it back: the connection to the app is closed. */
void clients_app_fd_put(struct ferry *f);
/* The system refused a descriptor the budget allowed (err: EMFILE,
 * ENFILE): counted and logged like a refusal of the budget's. */
void clients_app_fd_refused(struct ferry *f, int err);

#endif
