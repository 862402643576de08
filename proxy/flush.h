/* flush.h -- write what connections queued once per loop turn, straight to
 * their sockets. A bufferevent arms a write event (two epoll_ctl calls)
 * around every write; with many mostly idle sockets that costs more than
 * the write itself. Here a socket's write event is armed only when the
 * kernel did not take everything (Redis does the same before it sleeps). */
#ifndef FERRY_FLUSH_H
#define FERRY_FLUSH_H

#include <sys/queue.h>

struct ferry;
struct bufferevent;

struct flush_entry {
	struct bufferevent *bev;
	int queued;
	TAILQ_ENTRY(flush_entry) entry;
};

TAILQ_HEAD(flush_list, flush_entry);

void flush_init(struct ferry *f);
void flush_free(struct ferry *f);

/* bev's output grew: write it at the end of this loop turn. bev must be
 * enabled for reading only; flush_write_cb disables writing again. */
void flush_mark(struct ferry *f, struct flush_entry *e, struct bufferevent *bev);
/* Forget e before its bufferevent is freed or handed on. */
void flush_cancel(struct ferry *f, struct flush_entry *e);

/* Write what bev's output holds to its socket now, if it is a plain one;
 * what the kernel does not take stays queued for the bufferevent. */
void flush_now(struct bufferevent *bev);

/* The write callback of such a bufferevent (or call it from one): once its
 * output is empty, stop watching the socket for writability. */
void flush_written(struct bufferevent *bev);

#endif
