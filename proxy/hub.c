/* hub.c -- local fan-out */
#include "hub.h"

#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "ferry.h"
#include "session.h"
#include "xmalloc.h"

struct hub_channel {
	char *name;
	LIST_HEAD(, sub) subs;
	int nsubs;
};

struct hub {
	struct ferry *f;
	struct dict *channels;
};

struct hub *hub_new(struct ferry *f)
{
	struct hub *h = xcalloc(1, sizeof(*h));
	h->f = f;
	h->channels = dict_new();
	return h;
}

void hub_free(struct hub *h)
{
	if (!h)
		return;
	/* Sessions unsubscribe before the hub goes; what is left is empty. */
	dict_free(h->channels);
	free(h);
}

static void sub_release(struct sub *sub)
{
	if (--sub->refs > 0)
		return;
	for (size_t i = 0; i < sub->npending; i++)
		message_unref(sub->pending[i]);
	free(sub->pending);
	free(sub);
}

static void history_done(void *arg, const struct history_result *res)
{
	struct sub *sub = arg;
	if (!sub->gone) {
		session_replayed(sub->session, sub, res);
		/* Messages that went live while the history was read: the session
		 * drops any it already got from the replay. */
		for (size_t i = 0; i < sub->npending && !sub->gone; i++)
			session_deliver(sub->session, sub, sub->pending[i]);
		sub->live = 1;
	}
	for (size_t i = 0; i < sub->npending; i++)
		message_unref(sub->pending[i]);
	free(sub->pending);
	sub->pending = NULL;
	sub->npending = 0;
	sub_release(sub);
}

void hub_subscribe(struct hub *h, struct session *s, struct sub_list *list, const char *channel,
		   const char *cursor, const long long *ref)
{
	struct hub_channel *ch = dict_get(h->channels, channel);
	if (!ch) {
		ch = xcalloc(1, sizeof(*ch));
		ch->name = xstrdup(channel);
		LIST_INIT(&ch->subs);
		dict_put(h->channels, ch->name, ch);
	}
	struct sub *sub = xcalloc(1, sizeof(*sub));
	sub->session = s;
	sub->channel = ch;
	sub->name = ch->name;
	sub->refs = 2; /* membership + the pending history answer */
	if (ref) {
		sub->ref = *ref;
		sub->has_ref = 1;
	}
	LIST_INSERT_HEAD(&ch->subs, sub, in_channel);
	LIST_INSERT_HEAD(list, sub, in_session);
	if (ch->nsubs++ == 0)
		h->f->backend->ops->watch(h->f->backend, ch->name);
	h->f->backend->ops->history(h->f->backend, ch->name, cursor, history_done, sub);
}

void hub_unsubscribe(struct hub *h, struct sub *sub)
{
	struct hub_channel *ch = sub->channel;
	sub->gone = 1;
	LIST_REMOVE(sub, in_channel);
	LIST_REMOVE(sub, in_session);
	if (--ch->nsubs == 0) {
		h->f->backend->ops->unwatch(h->f->backend, ch->name);
		dict_del(h->channels, ch->name);
		free(ch->name);
		free(ch);
	}
	sub->channel = NULL;
	sub->name = NULL;
	sub_release(sub);
}

void hub_publish(struct hub *h, const char *channel, const char *event, const char *data,
		 size_t len, const struct publish_from *from, backend_publish_cb cb, void *arg)
{
	h->f->metrics.messages_in++;
	h->f->backend->ops->publish(h->f->backend, channel, event, data, len, from, cb, arg);
}

static void deliver(void *arg, struct message *m)
{
	struct hub *h = arg;
	struct hub_channel *ch = dict_get(h->channels, m->channel);
	if (!ch)
		return;
	struct sub *sub, *next;
	for (sub = LIST_FIRST(&ch->subs); sub; sub = next) {
		next = LIST_NEXT(sub, in_channel); /* delivery never unsubscribes, but be safe */
		if (sub->live) {
			session_deliver(sub->session, sub, m);
		} else {
			sub->pending = xrealloc(sub->pending, (sub->npending + 1) * sizeof(*sub->pending));
			sub->pending[sub->npending++] = message_ref(m);
		}
	}
}

void hub_events(struct hub *h, struct backend_events *ev)
{
	ev->deliver = deliver;
	ev->arg = h;
}
