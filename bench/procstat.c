/* procstat.c -- walk /proc for a process tree; a server such as nginx is a
 * master and its workers, so every figure is summed over the tree. */
#include "procstat.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct proc_entry {
	pid_t pid, ppid;
	uint64_t ticks; /* utime + stime */
};

/* Fields of /proc/PID/stat after the command name, which is in parentheses
 * and may itself hold spaces and parentheses: parse from the last ')'. */
static int read_stat(pid_t pid, struct proc_entry *e)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *fp = fopen(path, "r");
	if (!fp)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* field 3 is state, 4 ppid, ... 14 utime, 15 stime */
	char state;
	int ppid;
	unsigned long utime, stime;
	if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state, &ppid,
		   &utime, &stime) != 4)
		return -1;
	e->pid = pid;
	e->ppid = ppid;
	e->ticks = (uint64_t)utime + stime;
	return 0;
}

static uint64_t read_rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *fp = fopen(path, "r");
	if (!fp)
		return 0;
	uint64_t kib = 0;
	while (fgets(line, sizeof(line), fp)) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kib = strtoull(line + 6, NULL, 10);
			break;
		}
	}
	fclose(fp);
	return kib;
}

int procstat_sample(pid_t root, struct proc_sample *out)
{
	memset(out, 0, sizeof(*out));
	DIR *dir = opendir("/proc");
	if (!dir)
		return -1;
	size_t n = 0, cap = 256;
	struct proc_entry *all = malloc(cap * sizeof(*all));
	if (!all) {
		closedir(dir);
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (n == cap) {
			struct proc_entry *bigger = realloc(all, 2 * cap * sizeof(*all));
			if (!bigger)
				break;
			all = bigger;
			cap *= 2;
		}
		if (read_stat((pid_t)atoi(de->d_name), &all[n]) == 0)
			n++;
	}
	closedir(dir);

	/* mark the tree: repeat until no new member is found (trees are shallow) */
	char *member = calloc(n ? n : 1, 1);
	int found_root = 0, grew = 1;
	for (size_t i = 0; i < n; i++)
		if (all[i].pid == root)
			member[i] = 1, found_root = 1;
	while (found_root && grew) {
		grew = 0;
		for (size_t i = 0; i < n; i++) {
			if (member[i])
				continue;
			for (size_t j = 0; j < n; j++) {
				if (member[j] && all[j].pid == all[i].ppid) {
					member[i] = 1;
					grew = 1;
					break;
				}
			}
		}
	}
	long hz = sysconf(_SC_CLK_TCK);
	for (size_t i = 0; i < n; i++) {
		if (!member[i])
			continue;
		out->rss_kib += read_rss_kib(all[i].pid);
		out->cpu_seconds += (double)all[i].ticks / (double)(hz > 0 ? hz : 100);
		out->processes++;
	}
	free(member);
	free(all);
	return found_root ? 0 : -1;
}
