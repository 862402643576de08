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

/* Take one token even when there is none (the bucket goes into debt) and
 * return the seconds until it is out of debt: 0 when it never was. For a
 * limit applied after the fact (a message already read). */
double bucket_charge(struct bucket *b, double rate, double burst, const struct timeval *now);

#endif
