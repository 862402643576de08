/* flush.h -- write what connections queued once per loop turn, straight to
 * their sockets. A bufferevent arms a write event (two epoll_ctl calls)
 * around every write; with many mostly idle sockets that costs more than
 * the write itself. Here a socket's write event is armed only when the
 * kernel did not take everything (Redis does the same before it sleeps). */
#ifndef FERRY_FLUSH_H
#define FERRY_FLUSH_H

#include <stddef.h>
#include <sys/queue.h>

struct ferry;
struct bufferevent;

struct flush_entry {
	void (*cb)(void *arg); /* writes the connection's output; set by its owner */
	void *arg;
	int queued;
	TAILQ_ENTRY(flush_entry) entry;
};

TAILQ_HEAD(flush_list, flush_entry);

/* Module init and teardown (main.c); init returns 0, or -1 with err. */
int flush_init(struct ferry *f, char *err, size_t errsz);
void flush_free(struct ferry *f);

/* The connection has output: run e->cb(e->arg) once, at the end of this
 * loop turn, however often it is marked meanwhile. */
void flush_mark(struct ferry *f, struct flush_entry *e);
/* Run what is marked now rather than at the end of the turn (the hub's
 * fan-out, every so many subscribers). */
void flush_run(struct ferry *f);
/* Forget e before its connection is freed or handed on. */
void flush_cancel(struct ferry *f, struct flush_entry *e);

/* For a bufferevent enabled for reading only: write its output to the
 * socket unless it already waits for writability, and arm EV_WRITE for
 * whatever the kernel did not take (for TLS, all of it). flush_written
 * disarms it again. Returns 1 if output is left, 0 if none. */
int flush_bufferevent(struct bufferevent *bev);

/* Write what bev's output holds to its socket now, if it is a plain one;
 * what the kernel does not take stays queued for the bufferevent. */
void flush_now(struct bufferevent *bev);

/* The write callback of such a bufferevent (or call it from one): once its
 * output is empty, stop watching the socket for writability. Returns 1 if
 * it was empty. */
int flush_written(struct bufferevent *bev);

#endif
