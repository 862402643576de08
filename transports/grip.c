/* grip.c -- holding a client's request on channels, as the app's GRIP
 * headers say (see grip.h). A hold is a session like any transport's: it
 * subscribes (from Grip-Channel's prev-id when given, so nothing published
 * since the app looked is missed) and is handed messages by the hub.
 *   response: the first message's data becomes the body of the app's
 *             answer (its status and headers kept); nothing within
 *             Grip-Timeout seconds (default 55) -> the app's own body.
 *   stream:   the app's head and body go out at once, chunked, then each
 *             message's data; Grip-Keep-Alive data after its timeout of
 *             silence. */
#include "grip.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clients.h"
#include "container.h"
#include "ferry.h"
#include "http.h"
#include "http_response.h"
#include "httpconn.h"
#include "jwt.h"
#include "log.h"
#include "message.h"
#include "protocol.h"
#include "session.h"
#include "transport.h"
#include "xmalloc.h"

#define GRIP_MAX_CHANNELS      16
#define GRIP_MAX_BODY	       (1024 * 1024)
#define GRIP_DEFAULT_TIMEOUT_S 55

struct grip_hold {
	struct client life; /* on its httpconn: finished at the end of a turn */
	struct ferry *f;
	struct httpconn *c;
	int stream;
	int status;
	char reason[64];
	char ctype[128];
	struct evbuffer *headers; /* the app's, less framing, hop-by-hop and Grip-* */
	struct evbuffer *body;
	char channel[GRIP_MAX_CHANNELS][PROTO_MAX_CHANNEL + 1];
	char prev[GRIP_MAX_CHANNELS][PROTO_MAX_CURSOR + 1];
	int nchannels;
	int timeout_s;
	char *keepalive;
	size_t keepalive_len;
	int keepalive_s;
	int chunked; /* stream framing: chunked, or to the close (HTTP/1.0) */
	struct session *session;
	struct event *timer;
	int started, done;
};

int grip_wants(const struct http_response_head *head)
{
	for (unsigned i = 0; i < head->nheaders; i++)
		if (strcasecmp(head->headers[i].name, "Grip-Hold") == 0)
			return 1;
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* "a, b; prev-id=3" -> channels with their prev-ids */
static int parse_channels(struct grip_hold *g, const char *value)
{
	char *copy = xstrdup(value), *save = NULL;
	int rc = 0;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *psave = NULL;
		char *name = trim(strtok_r(item, ";", &psave));
		if (!*name)
			continue;
		if (g->nchannels == GRIP_MAX_CHANNELS || !proto_channel_valid(name, strlen(name))) {
			rc = -1;
			break;
		}
		xsnprintf(g->channel[g->nchannels], sizeof(g->channel[0]), "%s", name);
		for (char *p = strtok_r(NULL, ";", &psave); p; p = strtok_r(NULL, ";", &psave)) {
			p = trim(p);
			if (strncasecmp(p, "prev-id=", 8) == 0 && strlen(p + 8) <= PROTO_MAX_CURSOR)
				xsnprintf(g->prev[g->nchannels], sizeof(g->prev[0]), "%s", p + 8);
		}
		g->nchannels++;
	}
	free(copy);
	return rc;
}

/* Grip-Keep-Alive: DATA; format=raw|cstring|base64; timeout=N */
static int parse_keepalive(struct grip_hold *g, const char *value)
{
	char *copy = xstrdup(value), *save = NULL;
	const char *data = value;
	size_t data_len = strcspn(value, ";");
	const char *format = "raw";
	int timeout = 20;
	strtok_r(copy, ";", &save);
	for (char *p = strtok_r(NULL, ";", &save); p; p = strtok_r(NULL, ";", &save)) {
		p = trim(p);
		if (strncasecmp(p, "format=", 7) == 0)
			format = value + (p - copy) + 7;
		else if (strncasecmp(p, "timeout=", 8) == 0)
			timeout = atoi(p + 8);
	}
	int rc = 0;
	free(g->keepalive); /* the last Grip-Keep-Alive wins */
	g->keepalive = xmalloc(data_len + 1);
	if (strncasecmp(format, "cstring", 7) == 0) {
		size_t n = 0;
		for (size_t i = 0; i < data_len; i++) {
			char ch = data[i];
			if (ch == '\\' && i + 1 < data_len) {
				char e = data[++i];
				ch = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
			}
			g->keepalive[n++] = ch;
		}
		g->keepalive_len = n;
	} else if (strncasecmp(format, "base64", 6) == 0) {
		int n = EVP_DecodeBlock((unsigned char *)g->keepalive, (const unsigned char *)data,
					(int)data_len);
		if (n < 0 || data_len % 4) {
			rc = -1;
		} else {
			while (data_len &&
			       data[data_len - 1] == '=') { /* padding decodes to zeros */
				data_len--;
				n--;
			}
			g->keepalive_len = (size_t)n;
		}
	} else {
		memcpy(g->keepalive, data, data_len);
		g->keepalive_len = data_len;
	}
	g->keepalive_s = timeout > 0 ? timeout : 20;
	free(copy);
	return rc;
}

void grip_hold_free(struct grip_hold *g)
{
	if (g->session)
		session_free(g->session);
	client_remove(g->f, &g->life);
	if (g->timer)
		event_free(g->timer);
	evbuffer_free(g->headers);
	evbuffer_free(g->body);
	free(g->keepalive);
	httpconn_release(g->c);
	free(g);
}

struct grip_hold *grip_hold_new(struct httpconn *c, const struct http_response_head *head)
{
	struct grip_hold *g = xcalloc(1, sizeof(*g));
	g->f = httpconn_ferry(c);
	g->c = c;
	httpconn_hold(c);
	g->status = head->status;
	/* the app's reason phrase, if it fits (it is optional: none beats a cut one) */
	if (strlen(head->reason) < sizeof(g->reason))
		strcpy(g->reason, head->reason);
	xsnprintf(g->ctype, sizeof(g->ctype), "text/plain");
	g->headers = evbuffer_new();
	g->body = evbuffer_new();
	g->timeout_s = GRIP_DEFAULT_TIMEOUT_S;
	const char *bad = NULL, *connection = NULL;
	int hold = 0;
	for (unsigned i = 0; i < head->nheaders; i++)
		if (strcasecmp(head->headers[i].name, "Connection") == 0)
			connection = head->headers[i].value;
	for (unsigned i = 0; i < head->nheaders && !bad; i++) {
		const char *name = head->headers[i].name, *value = head->headers[i].value;
		if (strcasecmp(name, "Grip-Hold") == 0) {
			if (strcasecmp(value, "response") == 0)
				hold = 1;
			else if (strcasecmp(value, "stream") == 0)
				hold = g->stream = 1;
			else
				bad = "Grip-Hold is neither response nor stream";
		} else if (strcasecmp(name, "Grip-Channel") == 0) {
			if (parse_channels(g, value) < 0)
				bad = "invalid Grip-Channel";
		} else if (strcasecmp(name, "Grip-Timeout") == 0) {
			g->timeout_s = atoi(value);
			if (g->timeout_s <= 0)
				bad = "invalid Grip-Timeout";
		} else if (strcasecmp(name, "Grip-Keep-Alive") == 0) {
			if (parse_keepalive(g, value) < 0)
				bad = "invalid Grip-Keep-Alive";
		} else if (strcasecmp(name, "Content-Type") == 0) {
			if (strlen(value) >= sizeof(g->ctype))
				bad = "Content-Type too long";
			else
				strcpy(g->ctype, value);
		} else if (!http_hop_by_hop(name, connection) && strcasecmp(name, "Server") != 0 &&
			   strncasecmp(name, "Grip-", 5) != 0) {
			/* (Server: a held answer is ferry's own, which names itself) */
			evbuffer_add_printf(g->headers, "%s: %s\r\n", name, value);
		}
	}
	if (!bad && (!hold || g->nchannels == 0))
		bad = "Grip-Hold needs at least one Grip-Channel";
	if (bad) {
		log_warn("grip: the app's answer to %s: %s", httpconn_peer(c), bad);
		grip_hold_free(g);
		return NULL;
	}
	const struct http_request *req = httpconn_request(c);
	g->chunked = !(req->http_major == 1 && req->http_minor == 0);
	return g;
}

int grip_hold_body(struct grip_hold *g, const char *data, size_t len)
{
	if (evbuffer_get_length(g->body) + len > GRIP_MAX_BODY)
		return -1;
	evbuffer_add(g->body, data, len);
	return 0;
}

/* ---- the held request as a transport ---- */

static void stream_write(struct grip_hold *g, const void *data, size_t len)
{
	struct evbuffer *out = httpconn_output(g->c);
	if (!out || !len)
		return;
	if (g->chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (g->chunked)
		evbuffer_add(out, "\r\n", 2);
	g->f->metrics.bytes_out += len;
}

static void arm_keepalive(struct grip_hold *g)
{
	if (g->keepalive) {
		struct timeval tv = { g->keepalive_s, 0 };
		event_add(g->timer, &tv);
	}
}

/* Answer the held response (data NULL: the app's own body) and end. */
static void respond(struct grip_hold *g, const char *data, size_t len)
{
	g->done = 1;
	size_t hlen = evbuffer_get_length(g->headers);
	char *headers = xmalloc(hlen + 1);
	evbuffer_copyout(g->headers, headers, hlen);
	headers[hlen] = '\0';
	if (data)
		httpconn_respond(g->c, g->status, headers, g->ctype, data, len);
	else
		httpconn_respond_buffer(g->c, g->status, headers, g->ctype, g->body);
	free(headers);
	grip_hold_free(g);
}

/* End a stream: its last chunk, then the connection goes on or closes. */
static void end_stream(struct grip_hold *g)
{
	g->done = 1;
	struct evbuffer *out = httpconn_output(g->c);
	if (out && g->chunked)
		evbuffer_add(out, "0\r\n\r\n", 5);
	httpconn_stream_done(g->c, g->chunked);
	grip_hold_free(g);
}

/* The hub delivers inside its fan-out: finish at the end of the turn. */
static void finish_later(struct grip_hold *g, const char *data, size_t len);

static void t_send_message(void *t, struct message *m)
{
	struct grip_hold *g = t;
	if (g->done)
		return;
	if (g->stream) {
		stream_write(g, m->data, m->data_len);
		arm_keepalive(g);
		return;
	}
	finish_later(g, m->data, m->data_len);
}

static void t_send_event(void *t, const struct proto_event *ev)
{
	/* subscribed, reset...: ferry's protocol, which a GRIP client does not speak */
}

static size_t t_queued(void *t)
{
	struct grip_hold *g = t;
	struct evbuffer *out = httpconn_output(g->c);
	return out ? evbuffer_get_length(out) : 0;
}

static void t_close(void *t, enum transport_close why, const char *reason, int retry_ms)
{
	struct grip_hold *g = t;
	log_info("grip %s: %s", httpconn_peer(g->c), reason);
	g->chunked = 0; /* cut, not ended: the client must see it did not finish */
	finish_later(g, NULL, 0);
}

static const struct transport_ops grip_transport = {
	.name = "grip",
	.send_message = t_send_message,
	.send_event = t_send_event,
	.queued = t_queued,
	.close = t_close,
};

static void finish(struct client *life)
{
	struct grip_hold *g = container_of(life, struct grip_hold, life);
	if (g->stream)
		end_stream(g);
	else
		respond(g, NULL, 0);
}

static void finish_later(struct grip_hold *g, const char *data, size_t len)
{
	g->done = 1;
	if (data) {
		/* the message becomes the body */
		evbuffer_drain(g->body, evbuffer_get_length(g->body));
		evbuffer_add(g->body, data, len);
	}
	event_del(g->timer);
	client_close(g->f, &g->life);
}

static void no_drain(struct client *life, int retry_ms)
{
	/* drained through its httpconn (waiter_drain) */
}

static const struct client_ops grip_life_ops = { .drain = no_drain, .destroy = finish };

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct grip_hold *g = arg;
	if (g->stream) {
		stream_write(g, g->keepalive, g->keepalive_len);
		arm_keepalive(g);
	} else {
		respond(g, NULL, 0); /* Grip-Timeout: the app's own answer */
	}
}

static void waiter_gone(void *arg)
{
	struct grip_hold *g = arg;
	grip_hold_free(g);
}

static void waiter_drain(void *arg, int retry_ms)
{
	struct grip_hold *g = arg;
	if (!g->done)
		finish_later(g, NULL, 0); /* a stream ends cleanly; a hold answers now */
}

static const struct httpconn_waiter_ops grip_waiter = { .gone = waiter_gone,
							.drain = waiter_drain };

void grip_hold_start(struct grip_hold *g)
{
	struct ferry *f = g->f;
	struct httpconn *c = g->c;
	if (httpconn_gone(c)) {
		grip_hold_free(g);
		return;
	}
	g->started = 1;
	client_attach(f, &g->life, &grip_life_ops, TRANSPORT_GRIP);
	g->timer = evtimer_new(f->base, timer_cb, g);
	httpconn_wait(c, &grip_waiter, g);
	if (g->stream) {
		struct evbuffer *out = httpconn_output(c);
		httpconn_set_status(c, g->status);
		evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", g->status,
				    g->reason[0] ? g->reason : http_status_text(g->status),
				    g->ctype);
		evbuffer_add_buffer(out, g->headers);
		evbuffer_add_printf(out, "%s\r\n",
				    g->chunked ? "Transfer-Encoding: chunked\r\n"
					       : "Connection: close\r\n");
		size_t len = evbuffer_get_length(g->body);
		if (len)
			stream_write(g, evbuffer_pullup(g->body, -1), len);
		arm_keepalive(g);
	} else {
		struct timeval tv = { g->timeout_s, 0 };
		event_add(g->timer, &tv);
	}
	g->session = session_new(f, &grip_transport, g);
	session_app_vouches(g->session); /* the app's hold: its channels are its to grant */
	for (int i = 0; i < g->nchannels && !g->done; i++)
		session_subscribe(g->session, g->channel[i], g->prev[i][0] ? g->prev[i] : NULL,
				  NULL);
}

void grip_sign_request(struct ferry *f, struct evbuffer *head)
{
	if (!f->cfg->grip_key)
		return;
	char claims[96];
	xsnprintf(claims, sizeof(claims), "{\"iss\":\"ferry\",\"exp\":%lld}",
		  (long long)time(NULL) + 3600);
	char *token = jwt_sign_hs256(f->cfg->grip_key, claims);
	if (token) {
		evbuffer_add_printf(head, "Grip-Sig: %s\r\n", token);
		free(token);
	}
}
