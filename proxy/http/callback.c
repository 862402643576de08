/* callback.c -- JSON POSTs to the app and their answers (see callback.h).
 * They go over the same kept-alive connections as proxied requests. The
 * body is small and kept, so a connection found dead before any answer is
 * retried once on a fresh one. Answers over MAX_ANSWER bytes are refused. */
#include "callback.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "glob.h"
#include "http_response.h"
#include "jwt.h"
#include "log.h"
#include "peer.h"
#include "upstream.h"
#include "xmalloc.h"

#define MAX_ANSWER (64 * 1024)
#define MAX_RULES  CONFIG_MAX_LIST

struct rule {
	enum callback_event event;
	char *pattern;
	char *path;
};

struct callback_rules {
	struct rule r[MAX_RULES];
	int n;
};

struct callback {
	struct ferry *f;
	struct bufferevent *up;
	struct http_response_parser *rp;
	struct event *timer;
	struct evbuffer *request;
	struct evbuffer *answer;
	callback_cb cb;
	void *arg;
	int status;
	int reused, retried, started, ended, keep_alive;
	int unreachable; /* no socket at all: reported from the loop */
	int no_fd;	 /* ...because no descriptor was left (clients.h) */
};

int callback_init(struct ferry *f, char *err, size_t errsz)
{
	const struct config *cfg = f->cfg;
	if (!cfg->ncallbacks)
		return 0;
	if (!cfg->upstream_url) {
		snprintf(err, errsz, "--callback needs --upstream (the app it calls)");
		return -1;
	}
	struct callback_rules *rules = xcalloc(1, sizeof(*rules));
	f->callbacks = rules;
	for (int i = 0; i < cfg->ncallbacks; i++) {
		const char *spec = cfg->callbacks[i];
		const char *colon = strchr(spec, ':'), *eq = strchr(spec, '=');
		struct rule *r = &rules->r[rules->n];
		if (!colon || !eq || eq < colon || eq[1] != '/') {
			snprintf(err, errsz,
				 "--callback '%s': want subscribe:PATTERN=/path or "
				 "publish:PATTERN=/path",
				 spec);
			return -1;
		}
		size_t elen = (size_t)(colon - spec);
		if (elen == 9 && strncmp(spec, "subscribe", 9) == 0)
			r->event = CALLBACK_SUBSCRIBE;
		else if (elen == 7 && strncmp(spec, "publish", 7) == 0)
			r->event = CALLBACK_PUBLISH;
		else {
			snprintf(err, errsz, "--callback '%s': the event is subscribe or publish",
				 spec);
			return -1;
		}
		r->pattern = xstrndup(colon + 1, (size_t)(eq - colon - 1));
		r->path = xstrdup(eq + 1);
		rules->n++;
	}
	return 0;
}

void callback_free_rules(struct ferry *f)
{
	struct callback_rules *rules = f->callbacks;
	if (!rules)
		return;
	for (int i = 0; i < rules->n; i++) {
		free(rules->r[i].pattern);
		free(rules->r[i].path);
	}
	free(rules);
	f->callbacks = NULL;
}

const char *callback_find(const struct ferry *f, enum callback_event ev, const char *channel)
{
	const struct callback_rules *rules = f->callbacks;
	if (!rules)
		return NULL;
	for (int i = 0; i < rules->n; i++)
		if (rules->r[i].event == ev && glob_match(rules->r[i].pattern, channel))
			return rules->r[i].path;
	return NULL;
}

static void cb_free(struct callback *c)
{
	if (c->up)
		upstream_close(c->f->upstream, c->up);
	http_response_parser_free(c->rp);
	event_free(c->timer);
	evbuffer_free(c->request);
	evbuffer_free(c->answer);
	free(c);
}

/* Tell the asker and end. */
static void done(struct callback *c, const char *err)
{
	struct callback_result r = { .status = c->status, .err = err };
	if (!err) {
		size_t len = evbuffer_get_length(c->answer);
		if (c->status >= 200 && c->status < 300 &&
		    proto_callback_answer((const char *)evbuffer_pullup(c->answer, -1), len,
					  &r.answer) < 0)
			r.err = "the app's answer is not the expected JSON";
	}
	if (r.err && !c->no_fd) /* that one is logged by the budget, at most once a minute */
		log_warn("callback: %s", r.err);
	if (c->up && !err && c->ended) {
		upstream_put(c->f->upstream, c->up, c->keep_alive);
		c->up = NULL;
	}
	c->cb(c->arg, &r);
	proto_callback_answer_free(&r.answer);
	cb_free(c);
}

static int on_head(void *arg, const struct http_response_head *head)
{
	struct callback *c = arg;
	if (head->status >= 100 && head->status < 200)
		return 0;
	c->status = head->status;
	return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
	struct callback *c = arg;
	if (evbuffer_get_length(c->answer) + len > MAX_ANSWER)
		return -1;
	evbuffer_add(c->answer, data, len);
	return 0;
}

static void on_end(void *arg, int keep_alive)
{
	struct callback *c = arg;
	if (!c->status) { /* an interim 1xx: the real answer follows */
		http_response_expect(c->rp, 0);
		return;
	}
	c->ended = 1;
	c->keep_alive = keep_alive;
}

static const struct http_response_cbs response_cbs = { on_head, on_body, on_end };

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct callback *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	while (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len) {
		c->started = 1;
		size_t used;
		if (http_response_feed(c->rp, v.iov_base, v.iov_len, &used) < 0) {
			done(c, "the app's answer is malformed or too large");
			return;
		}
		evbuffer_drain(in, used);
		if (c->ended) {
			done(c, NULL);
			return;
		}
	}
}

static void send_now(struct callback *c);

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct callback *c = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if (c->started) {
		if (http_response_eof(c->rp) && c->ended) {
			c->keep_alive = 0;
			done(c, NULL);
		} else {
			done(c, "the app closed the connection mid-answer");
		}
		return;
	}
	upstream_close(c->f->upstream, c->up);
	c->up = NULL;
	if (c->reused && !c->retried) {
		c->retried = 1; /* an idle connection the app had closed */
		send_now(c);
		return;
	}
	done(c, "the app is unreachable");
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct callback *c = arg;
	done(c, c->no_fd	 ? "no descriptor free for a connection to the app"
		: c->unreachable ? "the app is unreachable"
				 : "the app did not answer in time (--upstream-timeout)");
}

static void send_now(struct callback *c)
{
	c->up = upstream_get(c->f->upstream, 0, &c->reused);
	if (!c->up) {
		struct timeval zero = { 0, 0 };
		c->no_fd = errno == EMFILE || errno == ENFILE;
		c->unreachable = 1;
		event_add(c->timer, &zero);
		return;
	}
	bufferevent_setcb(c->up, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->up, EV_READ | EV_WRITE);
	evbuffer_add(bufferevent_get_output(c->up), evbuffer_pullup(c->request, -1),
		     evbuffer_get_length(c->request));
}

/* Nothing here may call cb before callback_post returns: failures at the
 * start are reported from the loop (a zero timeout). */
enum callback_verdict callback_verdict(const struct callback_result *r)
{
	if (r->err || r->status < 200 || r->status >= 500 || (r->status >= 300 && r->status < 400))
		return CALLBACK_UNAVAILABLE;
	return r->status < 300 ? CALLBACK_ALLOW : CALLBACK_FORBIDDEN;
}

struct callback *callback_post(struct ferry *f, const char *path, const char *body, size_t len,
			       const char *cookie, const char *peer, callback_cb cb, void *arg)
{
	struct callback *c = xcalloc(1, sizeof(*c));
	c->f = f;
	c->cb = cb;
	c->arg = arg;
	c->answer = evbuffer_new();
	c->request = evbuffer_new();
	c->rp = http_response_parser_new(16 * 1024, &response_cbs, c);
	http_response_expect(c->rp, 0);
	evbuffer_add_printf(c->request,
			    "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
			    "Content-Length: %zu\r\nUser-Agent: ferry\r\n",
			    path, upstream_authority(f->upstream), len);
	if (cookie)
		evbuffer_add_printf(c->request, "Cookie: %s\r\n", cookie);
	if (peer) {
		char ip[64];
		peer_address(peer, ip, sizeof(ip));
		evbuffer_add_printf(c->request, "X-Forwarded-For: %s\r\n", ip);
	}
	evbuffer_add(c->request, "\r\n", 2);
	evbuffer_add(c->request, body, len);
	c->timer = evtimer_new(f->base, timeout_cb, c);
	struct timeval tv = { f->cfg->upstream_timeout_ms / 1000,
			      (f->cfg->upstream_timeout_ms % 1000) * 1000 };
	event_add(c->timer, &tv);
	send_now(c);
	return c;
}

void callback_cancel(struct callback *c)
{
	cb_free(c); /* the app's connection is mid-exchange: closed, not pooled */
}
