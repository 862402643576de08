/* sendcost.c -- what one small write to a loopback TCP socket costs the
 * writer, by system call: write(), send(), writev() and sendmsg().
 *
 * N connected pairs on 127.0.0.1; a reader thread on core 1 drains them
 * with epoll, as a load generator would; the writer, on core 0, gives each
 * connection one 80-byte write per round (ferry's frame for a 64-byte
 * message) and counts its own CPU time (CLOCK_THREAD_CPUTIME_ID), user and
 * kernel, over the rounds after a warm-up. The calls are measured in
 * turns, round-robin, so that a busy machine disturbs them alike. This is
 * the figure behind ferry's send() (transports/websocket.c) and the
 * ceiling's (ceiling.c).
 *
 *   cc -O2 -pthread -o sendcost bench/sendcost.c && ./sendcost [N] [ROUNDS]
 *
 * Prints the median over the turns, in microseconds per write. Needs N+10
 * open files (default N 5000); binds only to 127.0.0.1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum call { CALL_WRITE, CALL_SEND, CALL_WRITEV, CALL_SENDMSG, NCALLS };
static const char *const call_names[NCALLS] = { "write", "send", "writev", "sendmsg" };

static int n;
static int *writer_fd, *reader_fd;
static volatile int stop;

static void pin(int core)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(core, &set);
	sched_setaffinity(0, sizeof(set), &set); /* 0: the calling thread */
}

static double thread_cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *reader(void *arg)
{
	(void)arg;
	pin(1);
	int ep = epoll_create1(0);
	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = reader_fd[i] };
		epoll_ctl(ep, EPOLL_CTL_ADD, reader_fd[i], &ev);
	}
	struct epoll_event evs[256];
	char buf[4096];
	while (!stop) {
		int k = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < k; i++)
			if (read(evs[i].data.fd, buf, sizeof(buf)) < 0)
				perror("read");
	}
	close(ep);
	return NULL;
}

static void one_write(enum call c, int fd, char *msg, size_t len)
{
	struct iovec v = { msg, len };
	struct msghdr mh = { .msg_iov = &v, .msg_iovlen = 1 };
	ssize_t r = -1;
	switch (c) {
	case CALL_WRITE:
		r = write(fd, msg, len);
		break;
	case CALL_SEND:
		r = send(fd, msg, len, MSG_NOSIGNAL);
		break;
	case CALL_WRITEV:
		r = writev(fd, &v, 1);
		break;
	case CALL_SENDMSG:
		r = sendmsg(fd, &mh, MSG_NOSIGNAL);
		break;
	default:
		break;
	}
	if (r != (ssize_t)len)
		perror("write");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	n = argc > 1 ? atoi(argv[1]) : 5000;
	int rounds = argc > 2 ? atoi(argv[2]) : 24;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (n < 1 || rounds < 2 || (rlim_t)(2 * n + 16) > rl.rlim_cur) {
		fprintf(stderr, "sendcost: N too large for the open-files limit (%lu)\n",
			(unsigned long)rl.rlim_cur);
		return 2;
	}
	writer_fd = calloc((size_t)n, sizeof(int));
	reader_fd = calloc((size_t)n, sizeof(int));
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
		perror("listen");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		reader_fd[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(reader_fd[i], (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    (writer_fd[i] = accept(lfd, NULL, NULL)) < 0) {
			perror("connect");
			return 1;
		}
		int one = 1;
		setsockopt(writer_fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	pthread_t t;
	pthread_create(&t, NULL, reader, NULL);
	pin(0);

	char msg[80];
	memset(msg, 'x', sizeof(msg));
	double *us[NCALLS];
	for (int c = 0; c < NCALLS; c++)
		us[c] = calloc((size_t)rounds, sizeof(double));
	for (int r = -2; r < rounds; r++) { /* two warm-up rounds */
		for (int c = 0; c < NCALLS; c++) {
			usleep(50000); /* the reader drains; the writer starts cold, as in a fan-out */
			double t0 = thread_cpu();
			for (int i = 0; i < n; i++)
				one_write((enum call)c, writer_fd[i], msg, sizeof(msg));
			if (r >= 0)
				us[c][r] = (thread_cpu() - t0) / n * 1e6;
		}
	}
	stop = 1;
	pthread_join(t, NULL);
	printf("%d connections, %d rounds; CPU per 80-byte write, median (us):\n", n, rounds);
	for (int c = 0; c < NCALLS; c++) {
		qsort(us[c], (size_t)rounds, sizeof(double), cmp_double);
		printf("  %-8s %.3f\n", call_names[c], us[c][rounds / 2]);
		free(us[c]);
	}
	for (int i = 0; i < n; i++) {
		close(writer_fd[i]);
		close(reader_fd[i]);
	}
	close(lfd);
	free(writer_fd);
	free(reader_fd);
	return 0;
}
