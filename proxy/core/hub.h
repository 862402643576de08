/* hub.h -- channel -> local subscribers. A subscription replays from its
 * cursor, then goes live; messages from the backend fan out to every live
 * subscription by reference, without copying. */
#ifndef FERRY_HUB_H
#define FERRY_HUB_H

#include <stddef.h>
#include <sys/queue.h>

#include "backend.h"
#include "message.h"

struct ferry;
struct hub;
struct hub_channel;
struct sub;

/* What the hub tells a subscriber. Each runs from the loop, never from
 * inside hub_subscribe or hub_unsubscribe. */
struct hub_sub_ops {
	/* The history after the subscriber's cursor (or an error), once; it may
	 * hub_unsubscribe here. Live messages that came meanwhile follow
	 * through deliver, and may repeat what the history held. */
	void (*replayed)(struct sub *sub, const struct history_result *res);
	/* A live message of the channel, shared: take a reference to keep it. */
	void (*deliver)(struct sub *sub, struct message *m);
	/* The hub no longer refers to sub (unsubscribed, and no answer from
	 * the backend pending): the owner may free it. */
	void (*release)(struct sub *sub);
};

/* A subscription: the hub's part, embedded in its owner's struct (the
 * session keeps its cursor beside it). Read-only outside the hub. */
struct sub {
	/* what a live delivery reads, first */
	LIST_ENTRY(sub) in_channel;
	const struct hub_sub_ops *ops;
	int live; /* replay finished */
	int gone; /* unsubscribed; released when refs drop */
	int refs;
	struct hub_channel *channel;
	const char *name;	  /* the channel's name, owned by the hub */
	struct message **pending; /* live messages that arrived during replay */
	size_t npending;
};

struct hub *hub_new(struct ferry *f);
void hub_free(struct hub *h);

/* Subscribe sub (zeroed, owned by the caller) to channel, replaying after
 * cursor (NULL: live only). ops->replayed follows from the loop. */
void hub_subscribe(struct hub *h, struct sub *sub, const struct hub_sub_ops *ops,
		   const char *channel, const char *cursor);
/* End a subscription. Nothing more is delivered to sub; ops->release
 * follows, now or when the backend's pending answer comes. */
void hub_unsubscribe(struct hub *h, struct sub *sub);

/* The callbacks the backend calls into the hub with. */
void hub_events(struct hub *h, struct backend_events *ev);

/* Publish through the backend; cb gets the id or an error (may be NULL). */
void hub_publish(struct hub *h, const char *channel, const char *event, const char *data,
		 size_t len, enum msg_kind kind, const struct publish_from *from,
		 backend_publish_cb cb, void *arg);

#endif
