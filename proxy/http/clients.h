/* clients.h -- the registry of live client connections: what the drain
 * walks, what --max-connections and --max-connections-per-ip count. */
#ifndef FERRY_CLIENTS_H
#define FERRY_CLIENTS_H

#include <sys/queue.h>

struct ferry;
struct dict;
struct client_link;

/* What ferry does with a live client when it drains (SIGTERM). */
struct client_link_ops {
	/* Tell the client to reconnect after retry_ms and close (or schedule
	 * closing). Must not free the client synchronously. */
	void (*drain)(struct client_link *link, int retry_ms);
	/* Free the client now (at exit, after the drain bound). Called from
	 * the top of the loop, never from inside a callback. */
	void (*destroy)(struct client_link *link);
};

struct ip_count;

/* Embedded in every client connection so ferry can find it to drain. */
struct client_link {
	const struct client_link_ops *ops;
	struct ip_count *ip; /* its address's count (--max-connections-per-ip) */
	int long_lived;      /* streams and sockets: closes are spread over the drain window */
	int notified;
	TAILQ_ENTRY(client_link) entry;
};

TAILQ_HEAD(client_list, client_link);

struct clients {
	struct client_list live;     /* not yet told to go */
	struct client_list notified; /* told to go, still closing */
	int n;
	struct dict *per_ip; /* address -> open connections */
	/* Called by clients_gone() when the last client has gone (the drain
	 * sets it to end the loop); NULL when nobody waits for that. */
	void (*on_empty)(void *arg);
	void *on_empty_arg;
};

struct clients *clients_new(void);
/* Destroy every client that is left (at exit), then free the registry. */
void clients_free(struct clients *cl);

/* peer ("IP:PORT", or NULL) is counted against --max-connections-per-ip
 * until the link is removed: a connection that changes hands (an HTTP
 * connection upgrading) is removed by one owner and added by the next. */
void clients_add(struct ferry *f, struct client_link *link, const struct client_link_ops *ops,
		 int long_lived, const char *peer);
void clients_remove(struct ferry *f, struct client_link *link);
/* Called when a client is gone; calls on_empty when none is left. */
void clients_gone(struct ferry *f);
/* 1 when peer's address has --max-connections-per-ip connections open. */
int clients_ip_full(struct ferry *f, const char *peer);
/* Move a live client to the notified list and tell it to go. */
void clients_notify(struct clients *cl, struct client_link *link, int retry_ms);

#endif
