/* pubrate.h -- --publish-rate-per-channel and --publish-rate-per-publisher:
 * one token bucket per channel and one per publisher, taken by every local
 * publish path (the publish API, client publishes, POST send). Backend
 * services publishing through Redis are limited by ferry's Redis function. */
#ifndef FERRY_PUBRATE_H
#define FERRY_PUBRATE_H

#include <stddef.h>

#include "metrics.h"

struct ferry;

int pubrate_init(struct ferry *f, char *err, size_t errsz);
void pubrate_free(struct ferry *f);

/* The key a publisher is limited by, from what it cannot choose: its
 * identity (a token's subject, or the app's word) when it has one, else
 * the address of peer ("ADDR:PORT"). out gets at most outsz bytes. */
void pubrate_publisher(const char *identity, const char *peer, char *out, size_t outsz);

/* Take one publish to channel by publisher (pubrate_publisher) on path:
 * 0 when both limits allow it, else the seconds until they will and
 * *limit is "channel" or "publisher". A refusal is counted in the metrics
 * and logged at most once a second. */
double pubrate_take(struct ferry *f, enum metric_publish_path path, const char *channel,
		    const char *publisher, const char **limit);

#endif
