/* send.c -- batched, numbered upstream messages.
 * The body is text/plain (so XDomainRequest and CORS-simple requests can
 * send it) holding JSON: {"client":ID,"ops":[{"seq":N,...}]}. The client
 * numbers its operations; ferry remembers, per client, the highest seq it
 * has published, so a POST retried after a lost answer publishes nothing
 * twice. The memory of a client lasts SENDER_TTL_MS after its last send.
 * Across instances the backend keeps the same memory per channel
 * (struct publish_from.seq; Redis: ferry:{CH}:sent), so a retry that lands
 * on another instance is recognised there.
 * The client id must be one negotiate issued (auth_client_id_valid): keyed
 * by a name the client chose, another party could stop a victim's messages
 * with a huge seq under its name, and fresh names would each get a fresh
 * rate. Fresh issued ids are free too, so the rate is also kept per address
 * (--rate-messages-per-address) and per token subject (--rate-messages). */
#include "send.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "auth.h"
#include "bucket.h"
#include "callback.h"
#include "dict.h"
#include "ferry.h"
#include "http.h"
#include "httpconn.h"
#include "hub.h"
#include "log.h"
#include "origin.h"
#include "peer.h"
#include "pubrate.h"
#include "protocol.h"
#include "xmalloc.h"

#define SENDER_TTL_MS (10 * 60 * 1000)
#define MAX_SENDERS   100000

struct sender {
	char id[PROTO_MAX_CLIENT_ID + 1];
	long long seq; /* highest seq published (acknowledged by the backend) */
	int busy;      /* a POST of this client is being published */
	struct timeval last;
	struct bucket rate; /* --rate-messages */
};

/* A rate shared by the clients of one address or of one token subject. */
struct limiter {
	char key[JWT_MAX_CLAIM + 3]; /* "a ADDRESS" or "u SUBJECT" */
	struct timeval last;
	struct bucket rate;
};

/* The module's state: every client id that sent lately, swept each minute. */
struct send {
	struct dict *senders;  /* client id -> its newest seq */
	struct dict *limiters; /* "a ADDRESS", "u SUBJECT" -> struct limiter */
	struct event *sweep;
};

struct sweep_ctx {
	struct ferry *f;
	struct timeval now;
};

static void sweep_one(void *value, void *arg)
{
	struct sweep_ctx *sc = arg;
	struct sender *s = value;
	long idle = (sc->now.tv_sec - s->last.tv_sec) * 1000 +
		    (sc->now.tv_usec - s->last.tv_usec) / 1000;
	if (idle > SENDER_TTL_MS) {
		dict_del(sc->f->send->senders, s->id);
		free(s);
	}
}

static void sweep_limiter(void *value, void *arg)
{
	struct sweep_ctx *sc = arg;
	struct limiter *l = value;
	if (sc->now.tv_sec - l->last.tv_sec > 60) { /* a minute refills any bucket */
		dict_del(sc->f->send->limiters, l->key);
		free(l);
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sweep_ctx sc = { .f = arg };
	event_base_gettimeofday_cached(sc.f->base, &sc.now);
	dict_foreach(sc.f->send->senders, sweep_one, &sc);
	dict_foreach(sc.f->send->limiters, sweep_limiter, &sc);
}

int send_init(struct ferry *f, char *err, size_t errsz)
{
	struct send *sd = xcalloc(1, sizeof(*sd));
	sd->senders = dict_new();
	sd->limiters = dict_new();
	sd->sweep = event_new(f->base, -1, EV_PERSIST, sweep_cb, f);
	struct timeval minute = { 60, 0 };
	event_add(sd->sweep, &minute);
	f->send = sd;
	return 0;
}

static void free_one(void *value, void *arg)
{
	free(value);
}

void send_free(struct ferry *f)
{
	struct send *sd = f->send;
	if (!sd)
		return;
	event_free(sd->sweep);
	dict_foreach(sd->senders, free_one, NULL);
	dict_free(sd->senders);
	dict_foreach(sd->limiters, free_one, NULL);
	dict_free(sd->limiters);
	free(sd);
	f->send = NULL;
}

/* One POST in flight. Its new ops are published one after the other, each
 * once the backend acknowledged the one before: then the acknowledged number
 * covers exactly what was published, and a retry repeats nothing. */
struct batch {
	struct ferry *f;
	struct httpconn *c;
	struct proto_send ops; /* keeps the decoded body alive */
	size_t next;	       /* index of the op to publish next */
	long long floor;       /* ops at or below were published before */
	const char *err;
	int err_status;		  /* 503, or 403 when the app refused an op */
	struct evbuffer *replies; /* "SEQ":"reply",... from the app's publish callback */
	char *cookie;		  /* for the app's callbacks */
	char peer[64];
};

static void respond_json(struct httpconn *c, int status, const char *body);
static void publish_next(struct batch *b);

static void batch_done(struct batch *b)
{
	struct sender *s = dict_get(b->f->send->senders, b->ops.client);
	if (s)
		s->busy = 0;
	long long ack = s ? s->seq : 0;
	if (!httpconn_gone(b->c)) {
		struct evbuffer *body = evbuffer_new();
		evbuffer_add_printf(body, "{\"ack\":%lld", ack);
		if (b->err)
			evbuffer_add_printf(body, ",\"error\":\"%s\"",
					    b->err_status == 403 ? "forbidden" : "publish_failed");
		if (b->replies && evbuffer_get_length(b->replies)) {
			evbuffer_add(body, ",\"replies\":{", 12);
			evbuffer_add_buffer(body, b->replies);
			evbuffer_add(body, "}", 1);
		}
		evbuffer_add(body, "}", 1);
		if (b->err && b->err_status != 403)
			b->f->metrics.errors[ERR_PUBLISH]++;
		size_t len = evbuffer_get_length(body);
		char *text = xmalloc(len + 1);
		evbuffer_remove(body, text, len);
		text[len] = '\0';
		respond_json(b->c, b->err ? b->err_status : 200, text);
		free(text);
		evbuffer_free(body);
	}
	if (b->replies)
		evbuffer_free(b->replies);
	free(b->cookie);
	proto_send_release(&b->ops);
	httpconn_release(b->c);
	free(b);
}

static void published(void *arg, const char *id, const char *err)
{
	struct batch *b = arg;
	const struct proto_send_op *op = &b->ops.ops[b->next++];
	struct sender *s = dict_get(b->f->send->senders, b->ops.client);
	if (err) {
		b->err = err;
		b->err_status = 503;
	} else if (s && op->seq > s->seq) {
		s->seq = op->seq;
	}
	publish_next(b);
}

/* The app's answer to an op its publish callback covers: publish its
 * version, or nothing; keep its reply for the sender. */
static void app_answered(void *arg, const struct callback_result *r)
{
	struct batch *b = arg;
	const struct proto_send_op *op = &b->ops.ops[b->next];
	enum callback_verdict verdict = callback_verdict(r);
	if (verdict != CALLBACK_ALLOW) {
		int no = verdict == CALLBACK_FORBIDDEN;
		b->err = r->err ? r->err : no ? "the app refused" : "the app could not answer";
		b->err_status = no ? 403 : 503;
		publish_next(b);
		return;
	}
	if (r->answer.reply) {
		if (!b->replies)
			b->replies = evbuffer_new();
		size_t qlen;
		char *quoted = proto_json_string(r->answer.reply, &qlen);
		evbuffer_add_printf(b->replies, "%s\"%lld\":%s",
				    evbuffer_get_length(b->replies) ? "," : "", op->seq, quoted);
		free(quoted);
	}
	if (r->answer.publish) {
		struct publish_from from = { .sender = b->ops.client, .seq = op->seq };
		hub_publish(b->f->hub, op->channel, op->event, r->answer.publish,
			    strlen(r->answer.publish), MSG_TEXT, &from, published, b);
		return;
	}
	published(b, NULL, NULL); /* taken by the app: done with this op */
}

static void publish_next(struct batch *b)
{
	while (!b->err && b->next < b->ops.nops && b->ops.ops[b->next].seq <= b->floor)
		b->next++; /* a retry of something already published */
	if (b->err || b->next == b->ops.nops) {
		batch_done(b);
		return;
	}
	const struct proto_send_op *op = &b->ops.ops[b->next];
	const char *path = callback_find(b->f, CALLBACK_PUBLISH, op->channel);
	if (path && op->kind == MSG_BINARY) {
		b->err = "binary messages do not go through the app's publish callback";
		b->err_status = 415;
		batch_done(b);
		return;
	}
	if (path) { /* JSON goes to the app as its text; the answer is text */
		size_t len;
		char *body = proto_callback_request("publish", op->channel, op->event, op->data,
						    op->data_len, b->ops.client, NULL, &len);
		callback_post(b->f, path, body, len, b->cookie, b->peer, app_answered, b);
		free(body);
		return;
	}
	struct publish_from from = { .sender = b->ops.client, .seq = op->seq };
	hub_publish(b->f->hub, op->channel, op->event, op->data, op->data_len, op->kind, &from,
		    published, b);
}

/* The limiter of key, or NULL when there are too many to keep one more
 * (then that rate is not applied: the client's own still is). */
static struct limiter *limiter_get(struct send *sd, char kind, const char *name)
{
	char key[sizeof(((struct limiter *)0)->key)];
	xsnprintf(key, sizeof(key), "%c %s", kind, name);
	struct limiter *l = dict_get(sd->limiters, key);
	if (!l && dict_count(sd->limiters) < MAX_SENDERS) {
		l = xcalloc(1, sizeof(*l));
		strcpy(l->key, key);
		dict_put(sd->limiters, l->key, l);
	}
	return l;
}

/* Take a token for each new op from the client's bucket, its address's and
 * its subject's: 0 when all had one, else the seconds to wait. */
static double take_rate(struct ferry *f, struct sender *s, const struct proto_send *batch,
			const char *peer, const char *subject)
{
	const struct config *cfg = f->cfg;
	char addr[64];
	peer_address(peer, addr, sizeof(addr));
	struct limiter *by_addr =
		cfg->rate_messages_per_address ? limiter_get(f->send, 'a', addr) : NULL;
	struct limiter *by_user =
		cfg->rate_messages && subject[0] ? limiter_get(f->send, 'u', subject) : NULL;
	double wait_s = 0;
	for (size_t i = 0; i < batch->nops; i++) {
		if (batch->ops[i].seq <= s->seq)
			continue; /* a retry: published before, costs nothing */
		if (cfg->rate_messages && !bucket_take(&s->rate, cfg->rate_messages,
						       2.0 * cfg->rate_messages, &s->last, &wait_s))
			break;
		if (by_addr) {
			by_addr->last = s->last;
			if (!bucket_take(&by_addr->rate, cfg->rate_messages_per_address,
					 2.0 * cfg->rate_messages_per_address, &s->last, &wait_s))
				break;
		}
		if (by_user) {
			by_user->last = s->last;
			if (!bucket_take(&by_user->rate, cfg->rate_messages,
					 2.0 * cfg->rate_messages, &s->last, &wait_s))
				break;
		}
	}
	return wait_s;
}

static void respond_json(struct httpconn *c, int status, const char *body)
{
	char cors[HTTPCONN_CORS_MAX], headers[HTTPCONN_CORS_HEADERS_MAX];
	httpconn_cors_headers(c, cors, sizeof(cors));
	xsnprintf(headers, sizeof(headers), "Cache-Control: no-store\r\n%s", cors);
	httpconn_respond(c, status, headers, "application/json", body, strlen(body));
}

void send_handle(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	if (strcmp(req->method, "POST") != 0) {
		httpconn_method_not_allowed(c, "POST");
		return;
	}
	if (!origin_request_allowed(f->cfg, req, httpconn_socket_peer(c), 0)) {
		httpconn_error(c, 403, "origin not allowed");
		return;
	}
	struct identity id = { 0 };
	if (admission_identity(c, req, &id) < 0)
		return;
	struct proto_send batch;
	const char *err;
	if (proto_decode_send(req->body, req->body_len, &batch, &err) < 0) {
		char body[160];
		xsnprintf(body, sizeof(body), "{\"error\":\"bad_request\",\"message\":\"%s\"}",
			  err); /* a constant of protocol.c */
		log_info("send %s: 400 %s", httpconn_peer(c), err);
		identity_clear(&id);
		respond_json(c, 400, body);
		return;
	}
	if (!auth_client_id_valid(f, batch.client)) {
		/* not an id negotiate issued (or issued under another key) */
		log_info("send %s: 400 client id not issued here", httpconn_peer(c));
		proto_send_release(&batch);
		identity_clear(&id);
		respond_json(c, 400,
			     "{\"error\":\"bad_client\",\"message\":\"the client id is not one "
			     "negotiate issued\"}");
		return;
	}
	/* Every operation is allowed, or none is published. */
	for (size_t i = 0; i < batch.nops; i++) {
		const char *path;
		const char *why = auth_publish_decider(f, &id, batch.ops[i].channel, &path);
		if (why) {
			char body[200];
			xsnprintf(body, sizeof(body),
				  "{\"error\":\"forbidden\",\"message\":\"%s\"}", why);
			f->metrics.errors[ERR_FORBIDDEN]++;
			log_info("send %s: 403 %s", httpconn_peer(c), why);
			proto_send_release(&batch);
			identity_clear(&id);
			respond_json(c, 403, body);
			return;
		}
	}
	char subject[JWT_MAX_CLAIM + 1];
	xsnprintf(subject, sizeof(subject), "%s", id.authenticated ? id.name : "");
	identity_clear(&id);
	struct sender *s = dict_get(f->send->senders, batch.client);
	if (!s) {
		if (dict_count(f->send->senders) >= MAX_SENDERS) {
			proto_send_release(&batch);
			httpconn_error(c, 503, "too many clients sending");
			return;
		}
		s = xcalloc(1, sizeof(*s));
		strcpy(s->id, batch.client);
		dict_put(f->send->senders, s->id, s);
	}
	event_base_gettimeofday_cached(f->base, &s->last);
	if (s->busy) {
		/* A retry racing its original: answer with what is acknowledged so
		 * far; the client sends the rest again later. */
		char body[96];
		proto_send_release(&batch);
		xsnprintf(body, sizeof(body), "{\"ack\":%lld,\"error\":\"busy\"}", s->seq);
		respond_json(c, 503, body);
		return;
	}
	{
		/* each new message takes a token; short of them, nothing is
		 * published and the client is told when to send again */
		double wait_s = take_rate(f, s, &batch, httpconn_peer(c), subject);
		if (wait_s > 0) {
			char body[96], cors[HTTPCONN_CORS_MAX], hdr[HTTPCONN_CORS_HEADERS_MAX];
			httpconn_cors_headers(c, cors, sizeof(cors));
			xsnprintf(body, sizeof(body), "{\"ack\":%lld,\"error\":\"rate_limited\"}",
				  s->seq);
			xsnprintf(hdr, sizeof(hdr),
				  "Retry-After: %d\r\nCache-Control: no-store\r\n%s",
				  1 + (int)wait_s, cors);
			f->metrics.limited[LIMIT_CLIENT_RATE]++;
			log_info("send %s: client %s over --rate-messages", httpconn_peer(c),
				 s->id);
			proto_send_release(&batch);
			httpconn_respond(c, 429, hdr, "application/json", body, strlen(body));
			return;
		}
	}
	{
		/* --publish-rate-per-channel/-per-publisher, for each new op;
		 * the publisher is the subject or the address, as on WebSocket */
		char who[JWT_MAX_CLAIM + 8];
		pubrate_publisher(subject, httpconn_peer(c), who, sizeof(who));
		const char *limit = NULL;
		double wait_s = 0;
		for (size_t i = 0; i < batch.nops && wait_s <= 0; i++)
			if (batch.ops[i].seq > s->seq)
				wait_s = pubrate_take(f, PUBLISH_PATH_SEND, batch.ops[i].channel,
						      who, &limit);
		if (wait_s > 0) {
			char body[128], cors[HTTPCONN_CORS_MAX], hdr[HTTPCONN_CORS_HEADERS_MAX];
			httpconn_cors_headers(c, cors, sizeof(cors));
			snprintf(body, sizeof(body),
				 "{\"ack\":%lld,\"error\":\"rate_limited\",\"limit\":\"%s\"}",
				 s->seq, limit);
			snprintf(hdr, sizeof(hdr),
				 "Retry-After: %d\r\nCache-Control: no-store\r\n%s",
				 1 + (int)wait_s, cors);
			proto_send_release(&batch);
			httpconn_respond(c, 429, hdr, "application/json", body, strlen(body));
			return;
		}
	}
	struct batch *b = xcalloc(1, sizeof(*b));
	b->f = f;
	b->c = c;
	const char *cookie = http_request_header(req, "Cookie");
	b->cookie = cookie ? xstrdup(cookie) : NULL;
	xsnprintf(b->peer, sizeof(b->peer), "%s", httpconn_peer(c));
	b->ops = batch;
	b->floor = s->seq;
	s->busy = 1;
	httpconn_hold(c);
	publish_next(b);
}
