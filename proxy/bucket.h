/* bucket.h -- a token bucket: rate tokens a second, up to burst saved up.
 * Used by every rate limit (--rate-messages, --publish-rate). */
#ifndef FERRY_BUCKET_H
#define FERRY_BUCKET_H

#include <sys/time.h>

struct bucket {
	double tokens;
	struct timeval last;
	int started;
};

/* Take one token at time now: 1 if there was one; else 0 and *wait_s the
 * seconds until there will be. */
int bucket_take(struct bucket *b, double rate, double burst, const struct timeval *now,
		double *wait_s);

#endif
