/* send.c -- batched, numbered upstream messages.
 * The body is text/plain (so XDomainRequest and CORS-simple requests can
 * send it) holding JSON: {"client":ID,"ops":[{"seq":N,...}]}. The client
 * numbers its operations; ferry remembers, per client, the highest seq it
 * has published, so a POST retried after a lost answer publishes nothing
 * twice. The memory of a client lasts SENDER_TTL_MS after its last send.
 * (Across instances the same memory belongs in the shared backend.) */
#include "send.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "ferry.h"
#include "http.h"
#include "httpconn.h"
#include "hub.h"
#include "log.h"
#include "origin.h"
#include "protocol.h"
#include "xmalloc.h"

#define SENDER_TTL_MS (10 * 60 * 1000)
#define MAX_SENDERS 100000

struct sender {
	char id[PROTO_MAX_CLIENT_ID + 1];
	long long seq;      /* highest seq published (acknowledged by the backend) */
	long long inflight; /* highest seq handed to the backend, answer pending */
	struct timeval last;
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
		dict_del(sc->f->senders, s->id);
		free(s);
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sweep_ctx sc = { .f = arg };
	event_base_gettimeofday_cached(sc.f->base, &sc.now);
	dict_foreach(sc.f->senders, sweep_one, &sc);
}

void send_init(struct ferry *f)
{
	f->senders = dict_new();
	f->senders_sweep = event_new(f->base, -1, EV_PERSIST, sweep_cb, f);
	struct timeval minute = { 60, 0 };
	event_add(f->senders_sweep, &minute);
}

static void free_one(void *value, void *arg)
{
	free(value);
}

void send_free(struct ferry *f)
{
	event_free(f->senders_sweep);
	dict_foreach(f->senders, free_one, NULL);
	dict_free(f->senders);
}

/* One POST in flight: answered when the backend has answered every op. */
struct batch {
	struct ferry *f;
	struct httpconn *c;
	char client[PROTO_MAX_CLIENT_ID + 1];
	long long seq[PROTO_MAX_SEND_OPS];
	int ok[PROTO_MAX_SEND_OPS];
	int n, pending;
};

struct op_ctx {
	struct batch *b;
	int index;
};

static void respond_json(struct httpconn *c, int status, const char *body);

static void batch_done(struct batch *b)
{
	struct sender *s = dict_get(b->f->senders, b->client);
	/* acknowledged: everything up to the first op the backend refused */
	int failed = 0;
	for (int i = 0; i < b->n && !failed; i++) {
		if (b->ok[i] && s && b->seq[i] > s->seq)
			s->seq = b->seq[i];
		failed = !b->ok[i];
	}
	if (s)
		s->inflight = s->seq; /* nothing of ours is pending any more */
	long long ack = s ? s->seq : 0;
	if (!httpconn_gone(b->c)) {
		char body[96];
		if (failed) {
			b->f->metrics.errors[ERR_PUBLISH]++;
			snprintf(body, sizeof(body), "{\"ack\":%lld,\"error\":\"publish_failed\"}", ack);
			respond_json(b->c, 503, body);
		} else {
			snprintf(body, sizeof(body), "{\"ack\":%lld}", ack);
			respond_json(b->c, 200, body);
		}
	}
	httpconn_release(b->c);
	free(b);
}

static void published(void *arg, const char *id, const char *err)
{
	struct op_ctx *oc = arg;
	struct batch *b = oc->b;
	b->ok[oc->index] = err == NULL;
	free(oc);
	if (--b->pending == 0)
		batch_done(b);
}

static void respond_json(struct httpconn *c, int status, const char *body)
{
	char headers[300] = "Cache-Control: no-store\r\n";
	const char *cors = httpconn_cors_origin(c);
	if (cors)
		snprintf(headers, sizeof(headers),
			 "Cache-Control: no-store\r\nAccess-Control-Allow-Origin: %s\r\nVary: Origin\r\n",
			 cors);
	httpconn_respond(c, status, headers, "application/json", body, strlen(body));
}

void send_handle(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	if (strcmp(req->method, "POST") != 0) {
		httpconn_respond(c, 405, "Allow: POST\r\n", "text/plain; charset=utf-8",
				 "method not allowed\n", 19);
		return;
	}
	if (!origin_allowed(f->cfg, http_request_header(req, "Origin"),
			    http_request_header(req, "Host"))) {
		httpconn_error(c, 403, "origin not allowed");
		return;
	}
	if (!f->cfg->client_publish) {
		respond_json(c, 403, "{\"error\":\"forbidden\",\"message\":\"publishing from clients is disabled\"}");
		return;
	}
	struct proto_send batch;
	const char *err;
	if (proto_decode_send(req->body, req->body_len, &batch, &err) < 0) {
		char body[160];
		snprintf(body, sizeof(body), "{\"error\":\"bad_request\",\"message\":\"%s\"}", err);
		log_info("send %s: 400 %s", httpconn_peer(c), err);
		respond_json(c, 400, body);
		return;
	}
	struct sender *s = dict_get(f->senders, batch.client);
	if (!s) {
		if (dict_count(f->senders) >= MAX_SENDERS) {
			proto_send_release(&batch);
			httpconn_error(c, 503, "too many clients sending");
			return;
		}
		s = xcalloc(1, sizeof(*s));
		strcpy(s->id, batch.client);
		dict_put(f->senders, s->id, s);
	}
	event_base_gettimeofday_cached(f->base, &s->last);
	/* Ops at or below what is published or on its way are retries: skip
	 * them. The rest go to the backend in order; the answer waits for all. */
	struct batch *b = xcalloc(1, sizeof(*b));
	b->f = f;
	b->c = c;
	strcpy(b->client, batch.client);
	long long floor = s->inflight > s->seq ? s->inflight : s->seq;
	for (size_t i = 0; i < batch.nops; i++)
		if (batch.ops[i].seq > floor)
			b->seq[b->n++] = batch.ops[i].seq;
	httpconn_hold(c);
	b->pending = b->n + 1; /* +1 until every op is handed over */
	int k = 0;
	for (size_t i = 0; i < batch.nops; i++) {
		const struct proto_send_op *op = &batch.ops[i];
		if (op->seq <= floor)
			continue;
		s->inflight = op->seq;
		struct op_ctx *oc = xmalloc(sizeof(*oc));
		oc->b = b;
		oc->index = k++;
		hub_publish(f->hub, op->channel, op->event, op->data, op->data_len, batch.client,
			    published, oc);
	}
	proto_send_release(&batch);
	if (--b->pending == 0)
		batch_done(b);
}
