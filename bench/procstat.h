/* procstat.h -- memory and CPU of a process and all its descendants, read
 * from /proc (Linux only). */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

struct proc_sample {
	uint64_t rss_kib;   /* sum of VmRSS over the tree */
	double cpu_seconds; /* sum of utime+stime over the tree (all threads) */
	int processes;	    /* how many processes were summed; 0 if root is gone */
};

/* Sample the tree rooted at root (the root and every process whose parent
 * chain leads to it). Returns 0, or -1 if root does not exist (then *out
 * is zeroed). Processes that exit during the scan are skipped. */
int procstat_sample(pid_t root, struct proc_sample *out);

#endif
