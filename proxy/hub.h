/* hub.h -- channel -> local subscribers. A subscription replays from its
 * cursor, then goes live; messages from the backend fan out to every live
 * subscription by reference, without copying. */
#ifndef FERRY_HUB_H
#define FERRY_HUB_H

#include <sys/queue.h>

#include "backend.h"
#include "message.h"

struct ferry;
struct session;
struct hub;
struct hub_channel;

struct sub {
	/* what a live delivery reads and writes, first: one or two cache lines */
	LIST_ENTRY(sub) in_channel;
	struct session *session;
	int live;                    /* replay finished */
	int has_last;
	struct msg_pos last;         /* newest position delivered */
	char epoch[24];              /* of that position: positions of two epochs do not compare */

	struct hub_channel *channel;
	const char *name;            /* the channel's name, owned by the hub */
	LIST_ENTRY(sub) in_session;  /* for the session's own list */
	int gone;                    /* unsubscribed; freed when refs drop */
	int refs;
	long long ref;               /* the client's ref of the subscribe op */
	int has_ref;
	struct message **pending;    /* live messages that arrived during replay */
	size_t npending;
};

LIST_HEAD(sub_list, sub);

struct hub *hub_new(struct ferry *f);
void hub_free(struct hub *h);

/* Subscribe s to channel, replaying after cursor (NULL: live only). The sub
 * is put on the session's list; the session hears back through
 * session_replayed(), possibly before this returns (and may unsubscribe
 * there, so nothing is returned to hold on to). */
void hub_subscribe(struct hub *h, struct session *s, struct sub_list *list, const char *channel,
		   const char *cursor, const long long *ref);
/* End a subscription and take it off its session's list; the sub must not
 * be used afterwards. */
void hub_unsubscribe(struct hub *h, struct sub *sub);

/* The callbacks the backend calls into the hub with. */
void hub_events(struct hub *h, struct backend_events *ev);

/* Publish through the backend; cb gets the id or an error (may be NULL). */
void hub_publish(struct hub *h, const char *channel, const char *event, const char *data,
		 size_t len, const struct publish_from *from, backend_publish_cb cb, void *arg);

#endif
