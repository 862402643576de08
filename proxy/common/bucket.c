/* bucket.c -- token bucket (see bucket.h) */
#include "bucket.h"

static void refill(struct bucket *b, double rate, double burst, const struct timeval *now)
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
}

double bucket_charge(struct bucket *b, double rate, double burst, const struct timeval *now)
{
	refill(b, rate, burst, now);
	b->tokens -= 1.0;
	return b->tokens >= 0 ? 0 : -b->tokens / rate;
}

int bucket_take(struct bucket *b, double rate, double burst, const struct timeval *now,
		double *wait_s)
{
	refill(b, rate, burst, now);
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		*wait_s = 0;
		return 1;
	}
	*wait_s = (1.0 - b->tokens) / rate;
	return 0;
}
