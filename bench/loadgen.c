/* loadgen.c -- load generator for ferryd, the ceiling broadcaster and Nchan:
 * N subscribers over WebSocket, SSE or long-poll, messages published over
 * HTTP at a fixed rate or as fast as accepted, and one JSON report on stdout.
 *
 * Each payload starts with "#<seq>:<CLOCK_MONOTONIC ns>#", so any transport
 * and either envelope (ferry's JSON, Nchan's raw data) yields the message and
 * its send time; a bitmap per subscriber finds duplicates. Everything is
 * bounded: subscribers, messages, publishing time, the drain and the run. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"
#include "procstat.h"

#define NS_PER_S	 1000000000ull
#define BIN_NS		 10000000ull	/* deliveries are binned per 10 ms */
#define TICK_MS		 50		/* housekeeping period */
#define STEP_SETTLE_MS	 300		/* idle mode: pause before a step's sample */
#define WINDOW_STALL_NS	 NS_PER_S	/* a message missing for this long is given up */
#define PUBLISH_GRACE_NS (5 * NS_PER_S) /* answers still awaited after the duration */
#define SEEN_BITS_BUDGET (256ull << 20) /* default M keeps the bitmap near 32 MiB */

uint64_t loadgen_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static double seconds(uint64_t ns)
{
	return (double)ns / 1e9;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) {
		fputs("loadgen: out of memory\n", stderr);
		abort();
	}
	return p;
}

static double self_cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void take_sample(struct loadgen *lg, struct server_sample *s)
{
	struct proc_sample ps = { 0 };
	if (lg->opt.server_pid > 0)
		procstat_sample((pid_t)lg->opt.server_pid, &ps);
	s->at_ns = loadgen_clock_ns();
	s->rss_kib = ps.rss_kib;
	s->cpu_seconds = ps.cpu_seconds;
	s->processes = ps.processes;
	s->self_cpu_seconds = self_cpu_seconds();
}

int loadgen_connect_socket(struct loadgen *lg, uint32_t source_index)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in dst = { .sin_family = AF_INET,
				   .sin_port = htons((uint16_t)lg->opt.port) };
	inet_pton(AF_INET, lg->opt.host, &dst.sin_addr);
	/* Loopback: spread over 127.0.0.1..K so that N may exceed the ephemeral
	 * ports of one address; the port is picked at connect(), not bind(). */
	if ((ntohl(dst.sin_addr.s_addr) >> 24) == 127 && lg->opt.sources > 0) {
		int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
		struct sockaddr_in src = { .sin_family = AF_INET };
		src.sin_addr.s_addr = htonl(0x7f000001u + source_index % lg->opt.sources);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			goto fail;
	}
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
		goto fail;
	return fd;
fail:;
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static void finish(struct loadgen *lg);
static void pump(struct loadgen *lg);
static void check_connect_done(struct loadgen *lg);
static void check_publish_end(struct loadgen *lg, uint64_t now);

static uint32_t live_subscribers(const struct loadgen *lg)
{
	return lg->subscribed - lg->dropped;
}

/* ---- connect phase ---- */

static void launch_more(struct loadgen *lg)
{
	if (lg->launching)
		return; /* a start that fails at once resolves inside this loop */
	lg->launching = 1;
	while (lg->phase == PHASE_CONNECT && lg->launched < lg->step_target &&
	       lg->in_flight < lg->opt.connect_concurrency) {
		struct conn *c = &lg->subs[lg->launched];
		c->lg = lg;
		c->index = lg->launched;
		lg->launched++;
		lg->in_flight++;
		subscriber_start(c);
	}
	lg->launching = 0;
	check_connect_done(lg);
}

static void resolve(struct loadgen *lg, struct conn *c)
{
	c->resolved = 1;
	lg->in_flight--;
	launch_more(lg);
}

void loadgen_subscribed(struct loadgen *lg, struct conn *c)
{
	c->subscribed = 1;
	lg->subscribed++;
	resolve(lg, c);
}

void loadgen_sub_failed(struct loadgen *lg, struct conn *c, enum fail_reason why)
{
	if (!c->resolved) {
		lg->failed++;
		lg->fail_reasons[why]++;
		resolve(lg, c);
	} else if (c->subscribed) {
		lg->dropped++;
	}
}

static void start_publishing(struct loadgen *lg);

static void begin_step(struct loadgen *lg)
{
	const struct options *o = &lg->opt;
	uint32_t steps = o->idle ? o->idle_steps : 1;
	uint32_t done = lg->idle_sample_count; /* steps sampled so far */
	lg->step_target = (uint32_t)((uint64_t)o->connections * (done + 1) / steps);
	launch_more(lg);
}

static void step_sampled(evutil_socket_t fd, short what, void *arg)
{
	struct loadgen *lg = arg;
	take_sample(lg, &lg->idle_samples[lg->idle_sample_count]);
	/* the sample's "processes" field is reused for the connections held */
	lg->idle_samples[lg->idle_sample_count].processes = (int)live_subscribers(lg);
	lg->idle_sample_count++;
	if (lg->step_target < lg->opt.connections) {
		begin_step(lg);
		return;
	}
	finish(lg);
}

static void check_connect_done(struct loadgen *lg)
{
	if (lg->phase != PHASE_CONNECT || lg->launching)
		return;
	if (lg->subscribed + lg->failed < lg->step_target)
		return;
	if (lg->opt.idle) {
		int last = lg->step_target >= lg->opt.connections;
		if (last) {
			lg->t_connected = loadgen_clock_ns();
			lg->phase = PHASE_SETTLE;
		}
		struct timeval tv = { 0, STEP_SETTLE_MS * 1000 };
		if (last) {
			tv.tv_sec = (time_t)lg->opt.settle;
			tv.tv_usec = (suseconds_t)((lg->opt.settle - (double)tv.tv_sec) * 1e6);
		}
		evtimer_assign(&lg->step_timer, lg->base, step_sampled, lg);
		event_priority_set(&lg->step_timer, 0);
		evtimer_add(&lg->step_timer, &tv);
		return;
	}
	lg->t_connected = loadgen_clock_ns();
	start_publishing(lg);
}

/* The connect phase ran out of time: whoever is not subscribed has failed. */
static void connect_deadline(struct loadgen *lg)
{
	for (uint32_t i = 0; i < lg->launched; i++) {
		struct conn *c = &lg->subs[i];
		if (!c->resolved) {
			subscriber_close(c);
			loadgen_sub_failed(lg, c, FAIL_TIMEOUT);
		}
	}
	lg->step_target = lg->launched; /* and nobody else is started */
	if (lg->opt.idle) {
		lg->opt.connections = lg->launched;
		if (lg->phase == PHASE_CONNECT) {
			lg->phase = PHASE_SETTLE;
			lg->t_connected = loadgen_clock_ns();
			step_sampled(-1, 0, lg);
		}
		return;
	}
	check_connect_done(lg);
}

static void start_connecting(struct loadgen *lg)
{
	lg->phase = PHASE_CONNECT;
	lg->t_connect0 = loadgen_clock_ns();
	begin_step(lg);
}

/* ---- publishing ---- */

static void start_publishing(struct loadgen *lg)
{
	const struct options *o = &lg->opt;
	lg->subscribed_at_start = live_subscribers(lg);
	if (lg->subscribed_at_start == 0) {
		finish(lg);
		return;
	}
	lg->seen_row = (size_t)(o->messages / 8 + 1);
	lg->seen = xcalloc(o->connections, lg->seen_row);
	lg->seq_deliveries = xcalloc((size_t)o->messages + 2, sizeof(uint32_t));
	lg->delivery_bin_count = (size_t)((o->duration + o->drain + 10.0) * 1e9 / BIN_NS) + 1;
	lg->delivery_bins = xcalloc(lg->delivery_bin_count, sizeof(uint32_t));
	lg->window_head = 1;
	take_sample(lg, &lg->before);
	lg->phase = PHASE_PUBLISH;
	lg->t_pub0 = loadgen_clock_ns();
	pump(lg);
}

/* How many messages may be out by now under the rate, or UINT64_MAX. */
static uint64_t rate_due(const struct loadgen *lg, uint64_t now)
{
	if (lg->opt.rate <= 0)
		return UINT64_MAX;
	return (uint64_t)(seconds(now - lg->t_pub0) * lg->opt.rate) + 1;
}

static int publishing_over(const struct loadgen *lg, uint64_t now)
{
	return lg->issued >= lg->opt.messages ||
	       now - lg->t_pub0 >= (uint64_t)(lg->opt.duration * 1e9);
}

static void rate_timer_fired(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
}

static void pump(struct loadgen *lg)
{
	if (lg->pumping) {
		lg->pump_again = 1;
		return;
	}
	lg->pumping = 1;
	uint64_t now;
	do {
		lg->pump_again = 0;
		now = loadgen_clock_ns();
		while (lg->phase == PHASE_PUBLISH && !publishing_over(lg, now) &&
		       lg->issued < rate_due(lg, now)) {
			if (lg->opt.window && lg->issued + 1 - lg->window_head >= lg->opt.window) {
				if (!lg->window_blocked_since)
					lg->window_blocked_since = now;
				break;
			}
			lg->issued++;
			lg->publish_in_flight++;
			if (publisher_send(lg, lg->issued) < 0) {
				lg->issued--;
				lg->publish_in_flight--;
				break;
			}
		}
	} while (lg->pump_again);
	lg->pumping = 0;

	if (lg->phase == PHASE_PUBLISH && lg->opt.rate > 0 && !publishing_over(lg, now)) {
		/* wake when the next message is due */
		double due = (double)lg->issued / lg->opt.rate;
		double wait = due - seconds(now - lg->t_pub0);
		if (wait < 0.0005)
			wait = 0.0005;
		struct timeval tv = { (time_t)wait, (suseconds_t)((wait - floor(wait)) * 1e6) };
		evtimer_del(&lg->rate_timer);
		evtimer_add(&lg->rate_timer, &tv);
	}
	check_publish_end(lg, now);
}

static void advance_window(struct loadgen *lg)
{
	uint32_t target = live_subscribers(lg);
	uint64_t before = lg->window_head;
	while (lg->window_head <= lg->issued && lg->seq_deliveries[lg->window_head] >= target)
		lg->window_head++;
	if (lg->window_head != before) {
		lg->window_blocked_since = 0;
		pump(lg);
	}
}

static void check_publish_end(struct loadgen *lg, uint64_t now)
{
	if (lg->phase != PHASE_PUBLISH || !publishing_over(lg, now))
		return;
	int grace_over = now - lg->t_pub0 >= (uint64_t)(lg->opt.duration * 1e9) + PUBLISH_GRACE_NS;
	if (lg->publish_in_flight && !grace_over)
		return;
	lg->t_pub_end = now;
	take_sample(lg, &lg->pub_end_sample);
	lg->phase = PHASE_DRAIN;
}

void loadgen_publisher_ready(struct loadgen *lg)
{
	if (lg->phase == PHASE_PRIME) {
		if (lg->publish_in_flight)
			return; /* one prime is enough */
		lg->publish_in_flight++;
		if (publisher_send(lg, 0) < 0)
			lg->publish_in_flight--;
		return;
	}
	pump(lg);
}

void loadgen_publish_done(struct loadgen *lg, uint64_t seq, int ok)
{
	lg->publish_in_flight--;
	if (lg->phase == PHASE_PRIME) {
		if (ok) {
			start_connecting(lg);
		} else {
			fputs("loadgen: the prime message was not accepted\n", stderr);
			finish(lg);
		}
		return;
	}
	if (ok) {
		lg->published_ok++;
	} else {
		lg->publish_failed++;
		if (seq && seq <= lg->opt.messages)
			lg->seq_deliveries[seq] = UINT32_MAX; /* nobody will get it */
	}
	if (lg->opt.window)
		advance_window(lg);
	pump(lg);
}

void loadgen_delivery(struct loadgen *lg, struct conn *c, uint64_t seq, uint64_t sent_ns)
{
	if (lg->phase != PHASE_PUBLISH && lg->phase != PHASE_DRAIN) {
		lg->unexpected++;
		return;
	}
	if (seq > lg->issued || seq > lg->opt.messages) {
		lg->unexpected++;
		return;
	}
	uint8_t *byte = lg->seen + (size_t)c->index * lg->seen_row + seq / 8;
	uint8_t bit = (uint8_t)(1u << (seq & 7));
	if (*byte & bit) {
		lg->duplicates++;
		return;
	}
	*byte |= bit;
	lg->received++;
	if (lg->seq_deliveries[seq] != UINT32_MAX)
		lg->seq_deliveries[seq]++;
	uint64_t now = lg->now_ns;
	histogram_record(lg->latency, now > sent_ns ? now - sent_ns : 0);
	if (!lg->first_delivery_ns)
		lg->first_delivery_ns = now;
	lg->last_delivery_ns = now;
	size_t bin = (size_t)((now - lg->t_pub0) / BIN_NS);
	if (now >= lg->t_pub0 && bin < lg->delivery_bin_count)
		lg->delivery_bins[bin]++;
}

void loadgen_sub_progress(struct loadgen *lg)
{
	if (lg->phase == PHASE_PUBLISH && lg->opt.window)
		advance_window(lg);
	else if (lg->phase == PHASE_DRAIN &&
		 lg->received >= lg->published_ok * lg->subscribed_at_start)
		finish(lg);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct loadgen *lg = arg;
	uint64_t now = loadgen_clock_ns();
	const struct options *o = &lg->opt;
	switch (lg->phase) {
	case PHASE_CONNECT:
		if (now - lg->t_connect0 >= (uint64_t)(o->connect_timeout * 1e9))
			connect_deadline(lg);
		break;
	case PHASE_PUBLISH:
		if (o->window && lg->window_blocked_since &&
		    now - lg->window_blocked_since >= WINDOW_STALL_NS) {
			lg->window_head++; /* give the oldest message up */
			lg->window_stalls++;
			lg->window_blocked_since = 0;
		}
		pump(lg);
		break;
	case PHASE_DRAIN: {
		uint64_t last =
			lg->last_delivery_ns > lg->t_pub_end ? lg->last_delivery_ns : lg->t_pub_end;
		if (lg->received >= lg->published_ok * lg->subscribed_at_start ||
		    now - last >= (uint64_t)(o->drain_quiet * 1e9) ||
		    now - lg->t_pub_end >= (uint64_t)(o->drain * 1e9))
			finish(lg);
		break;
	}
	default:
		break;
	}
}

static void run_timed_out(evutil_socket_t fd, short what, void *arg)
{
	struct loadgen *lg = arg;
	lg->timed_out = 1;
	finish(lg);
}

/* ---- report ---- */

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void print_report(struct loadgen *lg)
{
	const struct options *o = &lg->opt;
	static const char *const kinds[] = { "ferry", "nchan" };
	static const char *const transports[] = { "ws", "sse", "poll" };
	static const char *const reasons[] = { "connect",  "status", "closed",
					       "protocol", "write",  "timeout" };
	FILE *out = stdout;
	fprintf(out, "{\n  \"label\": \"%s\",\n  \"mode\": \"%s\",\n", o->label ? o->label : "",
		o->idle ? "idle" : "publish");
	fprintf(out, "  \"server_kind\": \"%s\",\n  \"transport\": \"%s\",\n", kinds[o->kind],
		transports[o->transport]);
	fprintf(out,
		"  \"options\": {\"connections\": %u, \"sources\": %u, \"messages\": %llu, "
		"\"rate\": %g, \"duration_s\": %g, \"publishers\": %u, \"window\": %llu, "
		"\"payload\": %u},\n",
		o->connections, o->sources, (unsigned long long)o->messages, o->rate, o->duration,
		o->publishers, (unsigned long long)o->window, o->payload);

	fprintf(out,
		"  \"connections\": {\"attempted\": %u, \"made\": %u, \"failed\": %u, "
		"\"dropped\": %u, \"reconnects\": %u, \"slow_consumer_closes\": %u, "
		"\"fail_reasons\": {",
		lg->launched, lg->subscribed, lg->failed, lg->dropped, lg->reconnects,
		lg->slow_consumer_closes);
	for (int i = 0; i < FAIL_REASONS; i++)
		fprintf(out, "%s\"%s\": %u", i ? ", " : "", reasons[i], lg->fail_reasons[i]);
	fprintf(out, "}},\n");
	uint64_t connected_at = lg->t_connected ? lg->t_connected : lg->t_end;
	fprintf(out, "  \"connect_seconds\": %.3f,\n",
		lg->t_connect0 ? seconds(connected_at - lg->t_connect0) : 0.0);

	struct server_sample *b = &lg->base_sample, *a = &lg->after;
	if (o->idle) {
		uint32_t held = live_subscribers(lg);
		double per_conn =
			held ? ((double)a->rss_kib - (double)b->rss_kib) * 1024.0 / held : 0;
		/* the slope from the first step's sample to the last: what one more
		 * connection costs, without one-time costs of the first ones */
		double marginal = per_conn;
		if (lg->idle_sample_count >= 2) {
			struct server_sample *s0 = &lg->idle_samples[0];
			struct server_sample *s1 = &lg->idle_samples[lg->idle_sample_count - 1];
			if (s1->processes > s0->processes)
				marginal = ((double)s1->rss_kib - (double)s0->rss_kib) * 1024.0 /
					   (s1->processes - s0->processes);
		}
		fprintf(out,
			"  \"idle\": {\"connections\": %u, \"rss_base_kib\": %llu, \"rss_kib\": %llu, "
			"\"bytes_per_connection\": %.1f, \"marginal_bytes_per_connection\": %.1f, "
			"\"samples\": [[0, %llu]",
			held, (unsigned long long)b->rss_kib, (unsigned long long)a->rss_kib,
			per_conn, marginal, (unsigned long long)b->rss_kib);
		for (uint32_t i = 0; i < lg->idle_sample_count; i++)
			fprintf(out, ", [%d, %llu]", lg->idle_samples[i].processes,
				(unsigned long long)lg->idle_samples[i].rss_kib);
		fprintf(out, "]},\n");
		fprintf(out,
			"  \"server\": {\"pid\": %d, \"processes\": %d, \"rss_base_kib\": %llu, "
			"\"rss_after_kib\": %llu, \"cpu_seconds\": %.3f},\n",
			o->server_pid, a->processes, (unsigned long long)b->rss_kib,
			(unsigned long long)a->rss_kib, a->cpu_seconds - b->cpu_seconds);
	} else {
		uint64_t expected = lg->published_ok * lg->subscribed_at_start;
		uint64_t pub_end = lg->t_pub_end ? lg->t_pub_end : lg->t_end;
		double pub_s = lg->t_pub0 ? seconds(pub_end - lg->t_pub0) : 0;
		fprintf(out,
			"  \"publish\": {\"issued\": %llu, \"ok\": %llu, \"failed\": %llu, "
			"\"seconds\": %.3f, \"per_s\": %.1f, \"window_stalls\": %llu, "
			"\"publisher_reconnects\": %u},\n",
			(unsigned long long)lg->issued, (unsigned long long)lg->published_ok,
			(unsigned long long)lg->publish_failed, pub_s,
			pub_s > 0 ? lg->published_ok / pub_s : 0.0,
			(unsigned long long)lg->window_stalls, lg->publisher_reconnects);

		/* steady state: the middle of the publishing interval */
		double steady = 0, overall = 0;
		if (lg->t_pub0 && lg->last_delivery_ns > lg->t_pub0)
			overall = lg->received / seconds(lg->last_delivery_ns - lg->t_pub0);
		if (pub_s >= 2.0) {
			size_t from = (size_t)(pub_s * 0.2 / 0.01),
			       to = (size_t)(pub_s * 0.9 / 0.01);
			uint64_t sum = 0;
			for (size_t i = from; i < to && i < lg->delivery_bin_count; i++)
				sum += lg->delivery_bins[i];
			steady = sum / ((double)(to - from) * 0.01);
		} else {
			steady = overall;
		}
		fprintf(out,
			"  \"deliveries\": {\"subscribers\": %llu, \"expected\": %llu, \"received\": %llu, "
			"\"duplicates\": %llu, \"unexpected\": %llu, \"share\": %.6f, "
			"\"per_s_steady\": %.1f, \"per_s_overall\": %.1f, \"poll_errors\": %llu},\n",
			(unsigned long long)lg->subscribed_at_start, (unsigned long long)expected,
			(unsigned long long)lg->received, (unsigned long long)lg->duplicates,
			(unsigned long long)lg->unexpected,
			expected ? (double)lg->received / (double)expected : 0.0, steady, overall,
			(unsigned long long)lg->poll_errors);

		/* deliveries per 100 ms from the start of publishing, to see stalls */
		size_t used_bins =
			lg->last_delivery_ns > lg->t_pub0
				? (size_t)((lg->last_delivery_ns - lg->t_pub0) / BIN_NS) + 1
				: 0;
		if (used_bins > lg->delivery_bin_count)
			used_bins = lg->delivery_bin_count;
		fprintf(out, "  \"deliveries_per_100ms\": [");
		for (size_t i = 0; i < used_bins; i += 10) {
			uint64_t sum = 0;
			for (size_t j = i; j < i + 10 && j < used_bins; j++)
				sum += lg->delivery_bins[j];
			fprintf(out, "%s%llu", i ? ", " : "", (unsigned long long)sum);
		}
		fprintf(out, "],\n");

		struct histogram *h = lg->latency;
		fprintf(out,
			"  \"latency_ms\": {\"count\": %llu, \"min\": %.3f, \"p50\": %.3f, "
			"\"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f, \"mean\": %.3f},\n",
			(unsigned long long)histogram_count(h), ms(histogram_min(h)),
			ms(histogram_percentile(h, 50)), ms(histogram_percentile(h, 90)),
			ms(histogram_percentile(h, 99)), ms(histogram_percentile(h, 99.9)),
			ms(histogram_max(h)), histogram_mean(h) / 1e6);
		/* for plots: percentiles spaced evenly on a log(1/(1-p)) axis */
		fprintf(out, "  \"latency_percentiles\": [");
		for (int k = 0; k <= 50; k++) {
			double p = 100.0 * (1.0 - pow(10.0, -k / 10.0));
			fprintf(out, "%s[%.5f, %.3f]", k ? ", " : "", p,
				ms(histogram_percentile(h, p)));
		}
		fprintf(out, ", [100, %.3f]],\n", ms(histogram_max(h)));

		struct server_sample *bf = &lg->before, *pe = &lg->pub_end_sample;
		double cpu = a->cpu_seconds - bf->cpu_seconds;
		double wall = seconds(a->at_ns - bf->at_ns);
		double pub_cpu = pe->at_ns ? pe->cpu_seconds - bf->cpu_seconds : cpu;
		double pub_wall = pe->at_ns ? seconds(pe->at_ns - bf->at_ns) : wall;
		double self_pub = pe->at_ns ? pe->self_cpu_seconds - bf->self_cpu_seconds : 0;
		fprintf(out,
			"  \"server\": {\"pid\": %d, \"processes\": %d, \"rss_base_kib\": %llu, "
			"\"rss_before_kib\": %llu, \"rss_after_kib\": %llu, \"cpu_seconds\": %.3f, "
			"\"cpu_util\": %.3f, \"cpu_util_publishing\": %.3f, \"cpu_us_per_delivery\": %.3f},\n",
			o->server_pid, a->processes, (unsigned long long)b->rss_kib,
			(unsigned long long)bf->rss_kib, (unsigned long long)a->rss_kib, cpu,
			wall > 0 ? cpu / wall : 0, pub_wall > 0 ? pub_cpu / pub_wall : 0,
			lg->received ? cpu * 1e6 / (double)lg->received : 0.0);
		fprintf(out,
			"  \"loadgen\": {\"cpu_seconds\": %.3f, \"cpu_util\": %.3f, "
			"\"cpu_util_publishing\": %.3f},\n",
			a->self_cpu_seconds - bf->self_cpu_seconds,
			wall > 0 ? (a->self_cpu_seconds - bf->self_cpu_seconds) / wall : 0,
			pub_wall > 0 ? self_pub / pub_wall : 0);
	}
	fprintf(out, "  \"timed_out\": %s,\n  \"elapsed_s\": %.3f\n}\n",
		lg->timed_out ? "true" : "false", seconds(lg->t_end - lg->t_start));
	fflush(out);
}

static void finish(struct loadgen *lg)
{
	if (lg->phase == PHASE_DONE)
		return;
	lg->phase = PHASE_DONE;
	lg->t_end = loadgen_clock_ns();
	take_sample(lg, &lg->after);
	if (!lg->pub_end_sample.at_ns && lg->t_pub0)
		lg->pub_end_sample = lg->after;
	print_report(lg);
	event_base_loopbreak(lg->base);
}

/* ---- options ---- */

static void usage(FILE *to)
{
	fputs("Usage: loadgen --port PORT [OPTION]...\n"
	      "Open N subscribers to ferryd (or the ceiling, or Nchan), publish, report JSON.\n\n"
	      "  --host ADDR              server IPv4 address [127.0.0.1]\n"
	      "  --port PORT              server port (required)\n"
	      "  --server-kind KIND       ferry (ferryd, the ceiling) or nchan [ferry]\n"
	      "  --transport T            ws, sse or poll [ws]\n"
	      "  --channel NAME           channel [bench]\n"
	      "  -n, --connections N      subscribers [1000]\n"
	      "  --sources K              source addresses 127.0.0.1..127.0.0.K [4]\n"
	      "  --connect-concurrency C  handshakes in flight [256]\n"
	      "  -m, --messages M         publish at most M messages [rate*duration, or so\n"
	      "                           that the duplicate bitmap stays near 32 MiB]\n"
	      "  -r, --rate R             messages per second; 0 = as fast as accepted [0]\n"
	      "  -d, --duration S         publish for at most S seconds [10]\n"
	      "  --publishers P           concurrent publish requests [4]\n"
	      "  --window W               messages published but not yet delivered to\n"
	      "                           every subscriber, at most; 0 = no limit [0]\n"
	      "  --payload BYTES          message size [64]\n"
	      "  --content-type TYPE      of each publish [text/plain] (application/octet-stream:\n"
	      "                           binary messages; application/json with --json-payload)\n"
	      "  --json-payload           fill messages with JSON text, not 'x'\n"
	      "  --deflate                WebSocket subscribers negotiate permessage-deflate\n"
	      "  --timeout S              the whole run, at most [120]\n"
	      "  --connect-timeout S      the connect phase, at most [60]\n"
	      "  --drain S                after publishing, wait at most S for deliveries [10]\n"
	      "  --drain-quiet S          ... or until none arrived for S [2]\n"
	      "  --idle                   only connect and measure the server's memory\n"
	      "  --idle-steps K           memory samples while connecting [1]\n"
	      "  --settle S               idle: wait S before the last sample [2]\n"
	      "  --server-pid PID         process tree to sample for RSS and CPU\n"
	      "  --label TEXT             copied into the report\n"
	      "  -h, --help\n",
	      to);
}

static double parse_number(const char *name, const char *s, double min, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "loadgen: bad %s: %s\n", name, s);
		exit(2);
	}
	return v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	enum {
		OPT_HOST = 256,
		OPT_PORT,
		OPT_KIND,
		OPT_TRANSPORT,
		OPT_CHANNEL,
		OPT_SOURCES,
		OPT_CONCURRENCY,
		OPT_PUBLISHERS,
		OPT_WINDOW,
		OPT_PAYLOAD,
		OPT_CONTENT_TYPE,
		OPT_JSON_PAYLOAD,
		OPT_DEFLATE,
		OPT_TIMEOUT,
		OPT_CONNECT_TIMEOUT,
		OPT_DRAIN,
		OPT_QUIET,
		OPT_IDLE,
		OPT_STEPS,
		OPT_SETTLE,
		OPT_PID,
		OPT_LABEL,
	};
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "server-kind", required_argument, NULL, OPT_KIND },
		{ "transport", required_argument, NULL, OPT_TRANSPORT },
		{ "channel", required_argument, NULL, OPT_CHANNEL },
		{ "connections", required_argument, NULL, 'n' },
		{ "sources", required_argument, NULL, OPT_SOURCES },
		{ "connect-concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "messages", required_argument, NULL, 'm' },
		{ "rate", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "publishers", required_argument, NULL, OPT_PUBLISHERS },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "payload", required_argument, NULL, OPT_PAYLOAD },
		{ "content-type", required_argument, NULL, OPT_CONTENT_TYPE },
		{ "json-payload", no_argument, NULL, OPT_JSON_PAYLOAD },
		{ "deflate", no_argument, NULL, OPT_DEFLATE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
		{ "drain", required_argument, NULL, OPT_DRAIN },
		{ "drain-quiet", required_argument, NULL, OPT_QUIET },
		{ "idle", no_argument, NULL, OPT_IDLE },
		{ "idle-steps", required_argument, NULL, OPT_STEPS },
		{ "settle", required_argument, NULL, OPT_SETTLE },
		{ "server-pid", required_argument, NULL, OPT_PID },
		{ "label", required_argument, NULL, OPT_LABEL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct options){
		.host = "127.0.0.1",
		.kind = SERVER_FERRY,
		.transport = TRANSPORT_WS,
		.channel = "bench",
		.connections = 1000,
		.sources = 4,
		.connect_concurrency = 256,
		.duration = 10,
		.publishers = 4,
		.payload = 64,
		.timeout = 120,
		.connect_timeout = 60,
		.drain = 10,
		.drain_quiet = 2,
		.settle = 2,
		.idle_steps = 1,
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "n:m:r:d:h", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_HOST:
			o->host = optarg;
			break;
		case OPT_PORT:
			o->port = (int)parse_number("port", optarg, 1, 65535);
			break;
		case OPT_KIND:
			if (strcmp(optarg, "ferry") == 0)
				o->kind = SERVER_FERRY;
			else if (strcmp(optarg, "nchan") == 0)
				o->kind = SERVER_NCHAN;
			else
				parse_number("server kind", "", 0, 0);
			break;
		case OPT_TRANSPORT:
			if (strcmp(optarg, "ws") == 0)
				o->transport = TRANSPORT_WS;
			else if (strcmp(optarg, "sse") == 0)
				o->transport = TRANSPORT_SSE;
			else if (strcmp(optarg, "poll") == 0)
				o->transport = TRANSPORT_POLL;
			else
				parse_number("transport", "", 0, 0);
			break;
		case OPT_CHANNEL:
			o->channel = optarg;
			break;
		case 'n':
			o->connections = (uint32_t)parse_number("connections", optarg, 1, 1e7);
			break;
		case OPT_SOURCES:
			o->sources = (uint32_t)parse_number("sources", optarg, 1, 250);
			break;
		case OPT_CONCURRENCY:
			o->connect_concurrency =
				(uint32_t)parse_number("concurrency", optarg, 1, 1e6);
			break;
		case 'm':
			o->messages = (uint64_t)parse_number("messages", optarg, 1, 1e9);
			break;
		case 'r':
			o->rate = parse_number("rate", optarg, 0, 1e7);
			break;
		case 'd':
			o->duration = parse_number("duration", optarg, 0.01, 86400);
			break;
		case OPT_PUBLISHERS:
			o->publishers = (uint32_t)parse_number("publishers", optarg, 1, 1024);
			break;
		case OPT_WINDOW:
			o->window = (uint64_t)parse_number("window", optarg, 0, 1e9);
			break;
		case OPT_PAYLOAD:
			o->payload = (uint32_t)parse_number("payload", optarg, 1, 1 << 20);
			break;
		case OPT_CONTENT_TYPE:
			o->content_type = optarg;
			break;
		case OPT_JSON_PAYLOAD:
			o->json_payload = 1;
			break;
		case OPT_DEFLATE:
			o->deflate = 1;
			break;
		case OPT_TIMEOUT:
			o->timeout = parse_number("timeout", optarg, 0.1, 86400);
			break;
		case OPT_CONNECT_TIMEOUT:
			o->connect_timeout = parse_number("connect timeout", optarg, 0.1, 86400);
			break;
		case OPT_DRAIN:
			o->drain = parse_number("drain", optarg, 0, 3600);
			break;
		case OPT_QUIET:
			o->drain_quiet = parse_number("drain quiet", optarg, 0.05, 3600);
			break;
		case OPT_IDLE:
			o->idle = 1;
			break;
		case OPT_STEPS:
			o->idle_steps = (uint32_t)parse_number("idle steps", optarg, 1, 1000);
			break;
		case OPT_SETTLE:
			o->settle = parse_number("settle", optarg, 0, 3600);
			break;
		case OPT_PID:
			o->server_pid = (int)parse_number("server pid", optarg, 1, 1 << 30);
			break;
		case OPT_LABEL:
			o->label = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (!o->port || optind != argc) {
		usage(stderr);
		exit(2);
	}
	struct in_addr a;
	if (inet_pton(AF_INET, o->host, &a) != 1) {
		fprintf(stderr, "loadgen: --host takes an IPv4 address: %s\n", o->host);
		exit(2);
	}
	if (!o->messages) {
		if (o->rate > 0)
			o->messages = (uint64_t)ceil(o->rate * o->duration);
		else
			o->messages = SEEN_BITS_BUDGET / o->connections;
		if (o->messages < 1000 && o->rate <= 0)
			o->messages = 1000;
		if (o->messages > 1000000)
			o->messages = 1000000;
		if (o->messages < 1)
			o->messages = 1;
	}
	if ((double)o->connections * (double)(o->messages / 8 + 1) > 2e9) {
		fputs("loadgen: connections x messages too large for the duplicate bitmap\n",
		      stderr);
		exit(2);
	}
}

/* As many descriptors as the hard limit allows; N is cut to fit. */
static void raise_fd_limit(struct options *o)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		uint64_t spare = 32 + o->publishers;
		if (rl.rlim_cur != RLIM_INFINITY && o->connections + spare > rl.rlim_cur) {
			uint32_t fit = rl.rlim_cur > spare ? (uint32_t)(rl.rlim_cur - spare) : 1;
			fprintf(stderr, "loadgen: open-files limit %llu: %u subscribers, not %u\n",
				(unsigned long long)rl.rlim_cur, fit, o->connections);
			o->connections = fit;
		}
	}
}

int main(int argc, char **argv)
{
	static struct loadgen run; /* large and zeroed; main owns it */
	struct loadgen *lg = &run;
	parse_options(argc, argv, &lg->opt);
	raise_fd_limit(&lg->opt);
	signal(SIGPIPE, SIG_IGN);

	const struct options *o = &lg->opt;
	snprintf(lg->host_header, sizeof(lg->host_header), "%s:%d", o->host, o->port);
	snprintf(lg->cursor_key, sizeof(lg->cursor_key), "\"cursors\":{\"%s\":\"", o->channel);
	lg->base = event_base_new();
	if (!lg->base) {
		fputs("loadgen: event_base_new failed\n", stderr);
		return 1;
	}
	/* priority 0: publishers and timers; 1: subscribers (conn_watch's default) */
	event_base_priority_init(lg->base, 2);
	lg->rbuf_size = 1 << 20;
	lg->rbuf = xcalloc(1, lg->rbuf_size);
	lg->pub_buf_size = (size_t)o->payload + 1024;
	lg->pub_buf = xcalloc(1, lg->pub_buf_size);
	lg->subs = xcalloc(o->connections, sizeof(*lg->subs));
	lg->pubs = xcalloc(o->publishers, sizeof(*lg->pubs));
	lg->idle_samples = xcalloc(o->idle_steps + 1, sizeof(*lg->idle_samples));
	lg->latency = histogram_new();
	for (uint32_t i = 0; i < o->connections; i++)
		lg->subs[i].fd = -1;

	lg->t_start = loadgen_clock_ns();
	take_sample(lg, &lg->base_sample);

	struct timeval tick_tv = { 0, TICK_MS * 1000 };
	event_assign(&lg->tick, lg->base, -1, EV_PERSIST, tick, lg);
	event_priority_set(&lg->tick, 0);
	event_add(&lg->tick, &tick_tv);
	struct timeval to = { (time_t)o->timeout,
			      (suseconds_t)((o->timeout - floor(o->timeout)) * 1e6) };
	evtimer_assign(&lg->timeout_timer, lg->base, run_timed_out, lg);
	event_priority_set(&lg->timeout_timer, 0);
	evtimer_add(&lg->timeout_timer, &to);
	evtimer_assign(&lg->rate_timer, lg->base, rate_timer_fired, lg);
	event_priority_set(&lg->rate_timer, 0);

	int need_publishers = !o->idle || o->kind == SERVER_NCHAN;
	if (o->kind == SERVER_NCHAN)
		lg->phase = PHASE_PRIME; /* connect once the prime is in */
	else
		start_connecting(lg);
	if (need_publishers)
		publisher_start_all(lg);

	event_base_dispatch(lg->base);
	if (lg->phase != PHASE_DONE)
		finish(lg); /* every event gone: nothing more can happen */
	return lg->timed_out ? 3 : 0;
}
