/* histogram.c -- log-linear histogram: exact below 128, then 64 buckets per
 * power of two, which is what HdrHistogram does with 2 significant digits. */
#include "histogram.h"

#include <stdio.h>
#include <stdlib.h>

#define SUB_COUNT  (1u << HISTOGRAM_SUB_BITS) /* 128 exact values */
#define HALF_COUNT (SUB_COUNT / 2)	      /* 64 buckets per octave above */
/* the octaves of values >= SUB_COUNT: msb from HISTOGRAM_SUB_BITS to 63 */
#define BUCKETS (SUB_COUNT + (64 - HISTOGRAM_SUB_BITS) * HALF_COUNT)

struct histogram {
	uint64_t count;
	uint64_t min, max;
	long double sum;
	uint64_t buckets[BUCKETS];
};

static unsigned bucket_of(uint64_t v)
{
	if (v < SUB_COUNT)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - (HISTOGRAM_SUB_BITS - 1);
	unsigned mantissa = (unsigned)(v >> shift); /* in [HALF_COUNT, SUB_COUNT) */
	return SUB_COUNT + (shift - 1) * HALF_COUNT + (mantissa - HALF_COUNT);
}

/* The largest value that lands in bucket b. */
static uint64_t bucket_top(unsigned b)
{
	if (b < SUB_COUNT)
		return b;
	unsigned shift = (b - SUB_COUNT) / HALF_COUNT + 1;
	uint64_t mantissa = HALF_COUNT + (b - SUB_COUNT) % HALF_COUNT;
	return ((mantissa + 1) << shift) - 1;
}

struct histogram *histogram_new(void)
{
	struct histogram *h = calloc(1, sizeof(*h));
	if (!h) {
		fputs("histogram: out of memory\n", stderr);
		abort();
	}
	return h;
}

void histogram_free(struct histogram *h)
{
	free(h);
}

void histogram_record(struct histogram *h, uint64_t value)
{
	if (h->count == 0 || value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
	h->count++;
	h->sum += value;
	h->buckets[bucket_of(value)]++;
}

uint64_t histogram_count(const struct histogram *h)
{
	return h->count;
}

uint64_t histogram_min(const struct histogram *h)
{
	return h->count ? h->min : 0;
}

uint64_t histogram_max(const struct histogram *h)
{
	return h->max;
}

double histogram_mean(const struct histogram *h)
{
	return h->count ? (double)(h->sum / h->count) : 0.0;
}

uint64_t histogram_percentile(const struct histogram *h, double pct)
{
	if (h->count == 0)
		return 0;
	if (pct <= 0)
		return h->min;
	/* rank of the wanted value, 1-based, rounded up so p100 is the last */
	long double want = (long double)pct / 100.0L * h->count;
	uint64_t rank = (uint64_t)want;
	if ((long double)rank < want)
		rank++;
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (unsigned b = 0; b < BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			uint64_t top = bucket_top(b);
			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}
