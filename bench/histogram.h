/* histogram.h -- a log-linear (HDR-style) histogram of 64-bit values with a
 * bounded relative error, for latency percentiles in the load generator. */
#ifndef BENCH_HISTOGRAM_H
#define BENCH_HISTOGRAM_H

#include <stdint.h>

/* Values below 2^HISTOGRAM_SUB_BITS are counted exactly; above, each power
 * of two is split into 2^(HISTOGRAM_SUB_BITS-1) equal buckets, so a reported
 * value is within 1/64 (1.6%) of a recorded one. */
#define HISTOGRAM_SUB_BITS 7

struct histogram;

/* A new, empty histogram; the caller frees it with histogram_free(). Aborts
 * if memory runs out. */
struct histogram *histogram_new(void);
void histogram_free(struct histogram *h);

void histogram_record(struct histogram *h, uint64_t value);

uint64_t histogram_count(const struct histogram *h);
uint64_t histogram_min(const struct histogram *h); /* 0 when empty */
uint64_t histogram_max(const struct histogram *h); /* exact, 0 when empty */
double histogram_mean(const struct histogram *h);  /* of the exact values */

/* The smallest value V such that at least pct percent of the recorded values
 * are <= V, reported as the upper bound of V's bucket (never above the exact
 * maximum). pct in [0, 100]; 0 when the histogram is empty. */
uint64_t histogram_percentile(const struct histogram *h, double pct);

#endif
