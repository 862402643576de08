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
#include "publish.h"
#include "router.h"
#include "tls.h"
#include "upstream.h"
#include "longpoll.h"
#include "send.h"

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

/* Take as many descriptors as the hard limit allows and keep
 * --max-connections below it, leaving room for listeners and the backend. */
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
	long usable = (long)rl.rlim_cur - 64;
	if (rl.rlim_cur != RLIM_INFINITY && cfg->max_connections > usable) {
		log_warn("--max-connections %d is over the open-files limit; using %ld",
			 cfg->max_connections, usable);
		cfg->max_connections = (int)(usable > 1 ? usable : 1);
	}
}

static const struct timeval *common_timeout(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return event_base_init_common_timeout(base, &tv);
}

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

	flush_init(&f);
	f.clients = clients_new(&f);
	f.hub = hub_new(&f);
	struct backend_events events;
	hub_events(f.hub, &events);
	f.backend = (cfg.redis_url ? &backend_redis_ops : &backend_memory_ops)->create(f.base, &cfg,
										       &events);
	if (!f.backend) {
		hub_free(f.hub);
		clients_free(f.clients);
		flush_free(&f);
		event_base_free(f.base);
		config_free(&cfg);
		return 2;
	}
	longpoll_init(&f);
	send_init(&f);
	publish_init(&f);

	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
	char err[256];
	if (auth_init(&f, err, sizeof(err)) < 0) {
		log_error("%s", err);
		rc = 2;
		goto out;
	}
	if (cfg.upstream_url) {
		if (!(f.upstream = upstream_new(&f, cfg.upstream_url, err, sizeof(err)))) {
			log_error("%s", err);
			rc = 2;
			goto out;
		}
	}
	if (callback_init(&f, err, sizeof(err)) < 0) {
		log_error("%s", err);
		rc = 2;
		goto out;
	}
	if (cfg.access_log && !(f.access_log = accesslog_open(cfg.access_log))) {
		log_error("cannot open --access-log %s: %s", cfg.access_log, strerror(errno));
		rc = 2;
		goto out;
	}
	if (cfg.ntls_listen && !(f.tls = tls_new(&cfg))) {
		rc = 1;
		goto out;
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
	clients_free(f.clients);
	upstream_free(f.upstream);
	auth_free(&f);
	callback_free_rules(&f);
	publish_free(&f);
	send_free(&f);
	longpoll_free(&f);
	f.backend->ops->destroy(f.backend);
	hub_free(f.hub);
	flush_free(&f);
	/* the signal events go last: a signal during teardown stays caught */
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	tls_free(f.tls);
	accesslog_close(f.access_log);
	event_base_free(f.base);
	config_free(&cfg);
	return rc;
}
