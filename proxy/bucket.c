/* bucket.c -- token bucket (see bucket.h) */
#include "bucket.h"

int bucket_take(struct bucket *b, double rate, double burst, const struct timeval *now,
		double *wait_s)
{
	if (!b->started) {
		b->started = 1;
		b->tokens = burst;
	} else {
		double dt = (double)(now->tv_sec - b->last.tv_sec) +
			    (double)(now->tv_usec - b->last.tv_usec) / 1e6;
		if (dt > 0)
			b->tokens += dt * rate;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last = *now;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		*wait_s = 0;
		return 1;
	}
	*wait_s = (1.0 - b->tokens) / rate;
	return 0;
}
