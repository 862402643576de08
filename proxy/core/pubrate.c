/* pubrate.c -- per-channel and per-publisher publish limits.
 *
 * A bucket lives while it is in use: one that has been full for a while
 * (2 s: a burst's worth at the rate) says nothing a fresh one would not,
 * so a full table drops those, at most once a second. A table still full
 * after that refuses newcomers: PUBRATE_MAX_KEYS channels or publishers
 * publishing within two seconds is an attack or a misconfiguration. */
#include "pubrate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bucket.h"
#include "dict.h"
#include "ferry.h"
#include "log.h"
#include "peer.h"
#include "xmalloc.h"

#define PUBRATE_MAX_KEYS 65536

struct rate_entry {
	struct bucket bucket;
	char key[];
};

struct rate_table {
	struct dict *keys;
	long swept; /* second of the last sweep */
};

struct pubrate {
	struct rate_table channels, publishers;
	long logged; /* second of the last refusal logged */
};

int pubrate_init(struct ferry *f, char *err, size_t errsz)
{
	f->pubrate = xcalloc(1, sizeof(*f->pubrate));
	f->pubrate->channels.keys = dict_new();
	f->pubrate->publishers.keys = dict_new();
	return 0;
}

static void entry_free(void *value, void *arg)
{
	struct rate_table *t = arg;
	struct rate_entry *e = value;
	dict_del(t->keys, e->key);
	free(e);
}

void pubrate_free(struct ferry *f)
{
	if (!f->pubrate)
		return;
	dict_foreach(f->pubrate->channels.keys, entry_free, &f->pubrate->channels);
	dict_foreach(f->pubrate->publishers.keys, entry_free, &f->pubrate->publishers);
	dict_free(f->pubrate->channels.keys);
	dict_free(f->pubrate->publishers.keys);
	free(f->pubrate);
	f->pubrate = NULL;
}

void pubrate_publisher(const char *identity, const char *peer, char *out, size_t outsz)
{
	if (identity && identity[0]) {
		if (snprintf(out, outsz, "u %s", identity) >= (int)outsz)
			out[outsz - 1] = '\0'; /* a cut name is still the same key */
		return;
	}
	char addr[64];
	peer_address(peer ? peer : "", addr, sizeof(addr));
	if (snprintf(out, outsz, "a %s", addr) >= (int)outsz)
		out[outsz - 1] = '\0';
}

struct sweep {
	struct rate_table *t;
	struct timeval now;
};

static void sweep_one(void *value, void *arg)
{
	struct sweep *sw = arg;
	struct rate_entry *e = value;
	if (sw->now.tv_sec - e->bucket.last.tv_sec > 2)
		entry_free(e, sw->t);
}

static struct rate_entry *entry_get(struct rate_table *t, const char *key,
				    const struct timeval *now)
{
	struct rate_entry *e = dict_get(t->keys, key);
	if (e)
		return e;
	if (dict_count(t->keys) >= PUBRATE_MAX_KEYS && t->swept != (long)now->tv_sec) {
		t->swept = (long)now->tv_sec;
		struct sweep sw = { t, *now };
		dict_foreach(t->keys, sweep_one, &sw);
	}
	if (dict_count(t->keys) >= PUBRATE_MAX_KEYS)
		return NULL;
	size_t len = strlen(key);
	e = xcalloc(1, sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	dict_put(t->keys, e->key, e);
	return e;
}

/* 0 when a token was there, else the seconds to wait (1 with the table full) */
static double take(struct rate_table *t, const char *key, int rate, const struct timeval *now)
{
	struct rate_entry *e = entry_get(t, key, now);
	if (!e)
		return 1;
	double wait_s = 0;
	if (bucket_take(&e->bucket, rate, 2.0 * rate, now, &wait_s))
		return 0;
	return wait_s > 0 ? wait_s : 0.001;
}

double pubrate_take(struct ferry *f, enum metric_publish_path path, const char *channel,
		    const char *publisher, const char **limit)
{
	const struct config *cfg = f->cfg;
	if (!cfg->publish_rate_per_channel && !cfg->publish_rate_per_publisher)
		return 0;
	struct pubrate *r = f->pubrate;
	struct timeval now;
	event_base_gettimeofday_cached(f->base, &now);
	double wait_s = 0;
	int which = 0;
	/* the publisher first: a refused publisher spends no channel token */
	if (cfg->publish_rate_per_publisher)
		wait_s = take(&r->publishers, publisher, cfg->publish_rate_per_publisher, &now);
	if (wait_s > 0)
		which = 1;
	else if (cfg->publish_rate_per_channel)
		wait_s = take(&r->channels, channel, cfg->publish_rate_per_channel, &now);
	if (wait_s <= 0)
		return 0;
	f->metrics.publish_refused[path][which]++;
	*limit = which ? "publisher" : "channel";
	if (r->logged != (long)now.tv_sec) {
		r->logged = (long)now.tv_sec;
		log_info("publish to %s by %s: over --publish-rate-per-%s (logged once a second)",
			 channel, publisher, *limit);
	}
	return wait_s;
}
