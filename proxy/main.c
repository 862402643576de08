/* main.c -- ferryd: configuration, the event loop, signals */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "accesslog.h"
#include "auth.h"
#include "backend.h"
#include "callback.h"
#include "clients.h"
#include "drain.h"
#include "flush.h"
#include "ferry.h"
#include "hub.h"
#include "listener.h"
#include "log.h"
#include "origin.h"
#include "publish.h"
#include "pubrate.h"
#include "router.h"
#include "tls.h"
#include "upstream.h"
#include "longpoll.h"
#include "send.h"
#include "websocket.h"

extern char **environ;

static void sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct ferry *f = arg;
	if (f->tls)
		tls_reload(f->tls);
	if (f->access_log && accesslog_reopen(f->access_log) < 0)
		log_warn("cannot reopen --access-log %s: %s", f->cfg->access_log, strerror(errno));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct ferry *f = arg;
	log_info("received %s, draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	drain_start(f);
}

/* Take as many descriptors as the hard limit allows, and keep
 * --max-connections within the clients' share of the descriptor budget
 * derived from it (clients.h; clients_new() derives the same). */
static void fit_connections_to_fd_limit(struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return;
	int budget, clients = clients_fd_plan((long)rl.rlim_cur, cfg, &budget);
	if (cfg->max_connections > clients) {
		log_warn("--max-connections %d is over the clients' share of the descriptor budget "
			 "(%d of %d under an open-files limit of %ld); using %d",
			 cfg->max_connections, clients, budget, (long)rl.rlim_cur, clients);
		cfg->max_connections = clients;
	}
}

static const struct timeval *common_timeout(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return event_base_init_common_timeout(base, &tv);
}

/* What ferryd is made of, started in this order and stopped in the
 * reverse one. Each init returns 0, or -1 with a message in err. */

static int clients_start(struct ferry *f, char *err, size_t errsz)
{
	f->clients = clients_new(f);
	return 0;
}

static void clients_stop(struct ferry *f)
{
	clients_free(f->clients); /* every client left goes here, before what it uses */
	f->clients = NULL;
}

static int hub_start(struct ferry *f, char *err, size_t errsz)
{
	f->hub = hub_new(f);
	return 0;
}

static void hub_stop(struct ferry *f)
{
	hub_free(f->hub);
}

static int backend_start(struct ferry *f, char *err, size_t errsz)
{
	struct backend_events events;
	hub_events(f->hub, &events);
	events.metrics = &f->metrics;
	const struct backend_ops *ops =
		f->cfg->redis_url ? &backend_redis_ops : &backend_memory_ops;
	f->backend = ops->create(f->base, f->cfg, &events); /* it logs why it failed */
	return f->backend ? 0 : -1;
}

static void backend_stop(struct ferry *f)
{
	f->backend->ops->destroy(f->backend);
}

static int upstream_start(struct ferry *f, char *err, size_t errsz)
{
	if (!f->cfg->upstream_url)
		return 0;
	f->upstream = upstream_new(f, f->cfg->upstream_url, err, errsz);
	return f->upstream ? 0 : -1;
}

static void upstream_stop(struct ferry *f)
{
	upstream_free(f->upstream);
}

static int accesslog_start(struct ferry *f, char *err, size_t errsz)
{
	if (!f->cfg->access_log)
		return 0;
	f->access_log = accesslog_open(f->cfg->access_log);
	if (!f->access_log)
		snprintf(err, errsz, "cannot open --access-log %s: %s", f->cfg->access_log,
			 strerror(errno));
	return f->access_log ? 0 : -1;
}

static void accesslog_stop(struct ferry *f)
{
	accesslog_close(f->access_log);
}

static int tls_start(struct ferry *f, char *err, size_t errsz)
{
	if (!f->cfg->ntls_listen)
		return 0;
	f->tls = tls_new(f->cfg); /* it logs why it failed */
	return f->tls ? 0 : -1;
}

static void tls_stop(struct ferry *f)
{
	tls_free(f->tls);
}

static const struct module {
	int (*init)(struct ferry *f, char *err, size_t errsz); /* err: "" if it logged */
	void (*free)(struct ferry *f);
	int exit_code; /* when it does not start */
} modules[] = {
	/* the TLS context and the access log outlive every connection */
	{ tls_start, tls_stop, 1 },
	{ accesslog_start, accesslog_stop, 2 },
	{ flush_init, flush_free, 2 },
	{ hub_start, hub_stop, 2 },
	{ backend_start, backend_stop, 2 },
	{ longpoll_init, longpoll_free, 2 },
	{ websocket_init, websocket_free, 2 },
	{ send_init, send_free, 2 },
	{ publish_init, publish_free, 2 },
	{ pubrate_init, pubrate_free, 2 },
	{ auth_init, auth_free, 2 },
	{ upstream_start, upstream_stop, 2 },
	{ callback_init, callback_free_rules, 2 },
	/* last: it goes first at exit, while what its clients use is there */
	{ clients_start, clients_stop, 2 },
};

int main(int argc, char **argv)
{
	struct config cfg;
	int rc = config_load(&cfg, argc, argv, environ);
	if (rc != 0) {
		config_free(&cfg);
		return rc < 0 ? 2 : 0;
	}
	if (log_set_level_name(cfg.log_level) < 0) {
		fprintf(stderr, "ferryd: unknown --log-level '%s'\n", cfg.log_level);
		config_free(&cfg);
		return 2;
	}
	char err[256];
	if (origin_check_config(&cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ferryd: %s\n", err);
		config_free(&cfg);
		return 2;
	}
	fit_connections_to_fd_limit(&cfg);
	signal(SIGPIPE, SIG_IGN);

	struct ferry f;
	memset(&f, 0, sizeof(f));
	f.cfg = &cfg;
	f.base = event_base_new();
	if (!f.base) {
		log_error("cannot create the event loop");
		return 1;
	}
	f.tv_ws_ping = common_timeout(f.base, cfg.ws_ping_ms);
	f.tv_ws_pong = common_timeout(f.base, cfg.ws_pong_timeout_ms);
	f.tv_close = common_timeout(f.base, 5000);
	f.tv_heartbeat = common_timeout(f.base, cfg.heartbeat_ms);
	f.tv_poll = common_timeout(f.base, cfg.poll_timeout_ms);

	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
	size_t started = 0;
	for (; started < sizeof(modules) / sizeof(modules[0]); started++) {
		err[0] = '\0';
		if (modules[started].init(&f, err, sizeof(err)) < 0) {
			if (err[0])
				log_error("%s", err);
			rc = modules[started].exit_code;
			goto out;
		}
	}
	/* Signals are caught before the port opens: a SIGTERM sent as soon as
	 * ferryd accepts connections must drain it, not kill it. They are
	 * handled once the loop runs, with the listener in place. */
	sigterm = evsignal_new(f.base, SIGTERM, signal_cb, &f);
	sigint = evsignal_new(f.base, SIGINT, signal_cb, &f);
	sighup = evsignal_new(f.base, SIGHUP, sighup_cb, &f);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(sighup, NULL);
	f.listener = listener_new(&f, &router_handler);
	if (!f.listener) {
		rc = 1;
		goto out;
	}
	log_info("ferryd %s ready: backend %s, prefix %s%s%s%s", PACKAGE_VERSION,
		 f.backend->ops->name, cfg.prefix, cfg.echo ? ", echo on" : "",
		 cfg.upstream_url ? ", upstream " : "", cfg.upstream_url ? cfg.upstream_url : "");

	event_base_dispatch(f.base);

	log_info("ferryd stopped");
out:
	listener_free(f.listener);
	drain_free(f.drain);
	while (started > 0)
		modules[--started].free(&f);
	/* the signal events go last: a signal during teardown stays caught */
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	/* A bufferevent freed while a deferred callback of its output was due
	 * is released by that callback, and libevent's finalizers: let them
	 * run (nothing of ferry's is left to call). */
	for (int i = 0; i < 4; i++)
		event_base_loop(f.base, EVLOOP_NONBLOCK);
	event_base_free(f.base);
	config_free(&cfg);
	return rc;
}
