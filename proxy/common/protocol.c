/* protocol.c -- JSON encoding and decoding of ferry's frames with jansson */
#include "protocol.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "xmalloc.h"

static int name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == ':' || c == '@' || c == '/' || c == '=';
}

static int name_valid(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!name_char((unsigned char)s[i]))
			return 0;
	return 1;
}

int proto_channel_valid(const char *name, size_t len)
{
	return name_valid(name, len, PROTO_MAX_CHANNEL);
}

int proto_event_valid(const char *name, size_t len)
{
	return name_valid(name, len, PROTO_MAX_EVENT);
}

static const char *get_string(json_t *root, const char *key, size_t *len)
{
	json_t *v = json_object_get(root, key);
	if (!json_is_string(v))
		return NULL;
	if (len)
		*len = json_string_length(v);
	return json_string_value(v);
}

/* A publish's data: a string (text), an object or array (JSON, kept
 * compact in *owned), a base64 string with "encoding":"base64" (binary,
 * decoded into *owned), or with allow_follow and "encoding":"binary" none
 * here (the next WebSocket message). */
static int payload_of(json_t *o, const char **data, size_t *len, enum msg_kind *kind, int *follows,
		      char **owned, int allow_follow, const char **err)
{
	json_t *d = json_object_get(o, "data");
	json_t *enc = json_object_get(o, "encoding");
	*kind = MSG_TEXT;
	if (enc && !json_is_null(enc)) {
		const char *e = json_is_string(enc) ? json_string_value(enc) : "";
		if (strcmp(e, "base64") == 0) {
			if (!json_is_string(d)) {
				*err = "base64 data must be a string";
				return -1;
			}
			*owned = base64_decode(json_string_value(d), json_string_length(d), len);
			if (!*owned) {
				*err = "data is not valid base64";
				return -1;
			}
			*data = *owned;
			*kind = MSG_BINARY;
			return 0;
		}
		if (allow_follow && strcmp(e, "binary") == 0) {
			if (d && !json_is_null(d)) {
				*err = "encoding binary: the data is the next binary message";
				return -1;
			}
			*kind = MSG_BINARY;
			*follows = 1;
			*data = NULL;
			*len = 0;
			return 0;
		}
		*err = allow_follow ? "encoding must be base64 or binary"
				    : "encoding must be base64";
		return -1;
	}
	if (json_is_object(d) || json_is_array(d)) {
		*owned = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!*owned)
			abort();
		*data = *owned;
		*len = strlen(*owned);
		*kind = MSG_JSON;
		return 0;
	}
	if (!json_is_string(d)) {
		*err = "publish needs a string, object or array data";
		return -1;
	}
	*data = json_string_value(d);
	*len = json_string_length(d);
	return 0;
}

int proto_decode(const char *buf, size_t len, struct proto_op *op, const char **err)
{
	memset(op, 0, sizeof(*op));
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (!root) {
		*err = "frame is not valid JSON";
		return -1;
	}
	if (!json_is_object(root)) {
		*err = "frame must be a JSON object";
		goto fail;
	}
	json_t *ref = json_object_get(root, "ref");
	if (ref) {
		if (!json_is_integer(ref)) {
			*err = "ref must be an integer";
			goto fail;
		}
		op->ref = json_integer_value(ref);
		op->has_ref = 1;
	}
	const char *type = get_string(root, "type", NULL);
	if (!type) {
		*err = "missing type";
		goto fail;
	}
	if (strcmp(type, "ping") == 0) {
		op->type = PROTO_PING;
		op->json = root;
		return 0;
	}
	if (strcmp(type, "auth") == 0) {
		op->type = PROTO_AUTH;
		op->data = get_string(root, "token", &op->data_len);
		if (!op->data) {
			*err = "auth needs a string token";
			goto fail;
		}
		op->json = root;
		return 0;
	}
	if (strcmp(type, "subscribe") == 0)
		op->type = PROTO_SUBSCRIBE;
	else if (strcmp(type, "unsubscribe") == 0)
		op->type = PROTO_UNSUBSCRIBE;
	else if (strcmp(type, "publish") == 0)
		op->type = PROTO_PUBLISH;
	else {
		*err = "unknown type";
		goto fail;
	}
	size_t clen = 0;
	op->channel = get_string(root, "channel", &clen);
	if (!op->channel || !proto_channel_valid(op->channel, clen)) {
		*err = "missing or invalid channel";
		goto fail;
	}
	json_t *cursor = json_object_get(root, "cursor");
	if (op->type == PROTO_SUBSCRIBE && cursor && !json_is_null(cursor)) {
		size_t n = 0;
		op->cursor = get_string(root, "cursor", &n);
		if (!op->cursor || n == 0 || n > PROTO_MAX_CURSOR) {
			*err = "cursor must be a message id string";
			goto fail;
		}
	}
	if (op->type == PROTO_PUBLISH) {
		if (payload_of(root, &op->data, &op->data_len, &op->kind, &op->binary_follows,
			       &op->owned, 1, err) < 0)
			goto fail;
		json_t *event = json_object_get(root, "event");
		if (event && !json_is_null(event)) {
			size_t n = 0;
			op->event = get_string(root, "event", &n);
			if (!op->event || !proto_event_publishable(op->event, n)) {
				*err = "invalid event name";
				goto fail;
			}
		}
	}
	op->json = root;
	return 0;
fail:
	json_decref(root);
	free(op->owned);
	/* keep ref and has_ref, so the error can name the request */
	op->channel = op->cursor = op->event = op->data = NULL;
	op->owned = NULL;
	op->data_len = 0;
	op->binary_follows = 0;
	op->json = NULL;
	return -1;
}

void proto_op_release(struct proto_op *op)
{
	json_decref(op->json);
	free(op->owned);
	op->json = NULL;
	op->owned = NULL;
}

/* Serialize and free obj. */
static char *dump(json_t *obj, size_t *len_out)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!s)
		abort(); /* only on allocation failure: all input was checked */
	if (len_out)
		*len_out = strlen(s);
	return s;
}

static json_t *frame(const char *type)
{
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string(type));
	return o;
}

static void set_ref(json_t *o, const long long *ref)
{
	if (ref)
		json_object_set_new(o, "ref", json_integer(*ref));
}

static void set_str_or_null(json_t *o, const char *key, const char *v)
{
	json_object_set_new(o, key, v ? json_string(v) : json_null());
}

static json_t *message_head(const char *channel, const char *id, const char *event)
{
	json_t *o = frame("message");
	json_object_set_new(o, "channel", json_string(channel));
	json_object_set_new(o, "id", json_string(id));
	if (event)
		json_object_set_new(o, "event", json_string(event));
	return o;
}

/* The envelope with raw (JSON text, compact) as the value of "data": spliced
 * in after the head, so the value is never parsed again. */
static char *splice_data(json_t *o, const char *raw, size_t raw_len, size_t *len_out)
{
	size_t hlen;
	char *head = dump(o, &hlen); /* "{...}" */
	char *out = malloc(hlen + raw_len + 9);
	if (!out)
		abort();
	memcpy(out, head, hlen - 1);
	memcpy(out + hlen - 1, ",\"data\":", 8);
	memcpy(out + hlen + 7, raw, raw_len);
	out[hlen + 7 + raw_len] = '}';
	out[hlen + 8 + raw_len] = '\0';
	free(head);
	if (len_out)
		*len_out = hlen + 8 + raw_len;
	return out;
}

char *proto_message_binary_head(const char *channel, const char *id, const char *event,
				size_t data_len, size_t *len_out)
{
	json_t *o = message_head(channel, id, event);
	json_object_set_new(o, "encoding", json_string("binary"));
	json_object_set_new(o, "size", json_integer((json_int_t)data_len));
	return dump(o, len_out);
}

int proto_json_valid(const char *data, size_t len)
{
	json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_decref(v);
	return v != NULL;
}

char *proto_json_compact(const char *data, size_t len, size_t *len_out, char *err, size_t errsz)
{
	json_error_t e;
	json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!v) {
		snprintf(err, errsz, "invalid JSON at line %d column %d: %s", e.line, e.column,
			 e.text);
		return NULL;
	}
	char *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	if (!out)
		abort();
	*len_out = strlen(out);
	return out;
}

char *proto_message(const char *channel, const char *id, const char *event, enum msg_kind kind,
		    const char *data, size_t data_len, size_t *len_out)
{
	json_t *o = message_head(channel, id, event);
	if (kind == MSG_JSON)
		return splice_data(o, data, data_len, len_out);
	if (kind == MSG_BINARY) {
		size_t blen;
		char *b64 = base64_encode(data, data_len, &blen);
		json_object_set_new(o, "encoding", json_string("base64"));
		json_object_set_new(o, "data", json_stringn_nocheck(b64, blen));
		free(b64);
		return dump(o, len_out);
	}
	json_t *d = json_stringn(data, data_len);
	if (!d) { /* not UTF-8: callers validate first, so this is a bug */
		json_decref(o);
		return NULL;
	}
	json_object_set_new(o, "data", d);
	return dump(o, len_out);
}

char *proto_open(const char *session_id, unsigned heartbeat_s, size_t *len_out)
{
	json_t *o = frame("open");
	json_object_set_new(o, "session", json_string(session_id));
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "heartbeat", json_integer(heartbeat_s));
	return dump(o, len_out);
}

char *proto_subscribed(const char *channel, const char *cursor, const long long *ref,
		       size_t *len_out)
{
	json_t *o = frame("subscribed");
	json_object_set_new(o, "channel", json_string(channel));
	set_str_or_null(o, "cursor", cursor);
	set_ref(o, ref);
	return dump(o, len_out);
}

char *proto_unsubscribed(const char *channel, const long long *ref, size_t *len_out)
{
	json_t *o = frame("unsubscribed");
	json_object_set_new(o, "channel", json_string(channel));
	set_ref(o, ref);
	return dump(o, len_out);
}

char *proto_reset(const char *channel, const char *reason, const char *cursor, size_t *len_out)
{
	json_t *o = frame("reset");
	json_object_set_new(o, "channel", json_string(channel));
	json_object_set_new(o, "reason", json_string(reason));
	set_str_or_null(o, "cursor", cursor);
	return dump(o, len_out);
}

char *proto_ack(const long long *ref, const char *channel, const char *id, const char *reply,
		size_t *len_out)
{
	json_t *o = frame("ack");
	set_ref(o, ref);
	json_object_set_new(o, "channel", json_string(channel));
	if (id)
		json_object_set_new(o, "id", json_string(id));
	if (reply)
		json_object_set_new(o, "reply", json_string(reply));
	return dump(o, len_out);
}

char *proto_authenticated(const long long *ref, const char *identity, size_t *len_out)
{
	json_t *o = frame("authenticated");
	set_ref(o, ref);
	json_object_set_new(o, "identity", json_string(identity));
	return dump(o, len_out);
}

char *proto_error(const long long *ref, const char *code, const char *message, size_t *len_out)
{
	json_t *o = frame("error");
	set_ref(o, ref);
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(message));
	return dump(o, len_out);
}

char *proto_pong(const long long *ref, size_t *len_out)
{
	json_t *o = frame("pong");
	set_ref(o, ref);
	return dump(o, len_out);
}

char *proto_object1(const char *key, const char *value, size_t *len_out)
{
	json_t *o = json_object();
	json_object_set_new(o, key, json_string(value));
	return dump(o, len_out);
}

char *proto_event_json(const struct proto_event *ev, size_t *len_out)
{
	switch (ev->type) {
	case PEV_OPEN:
		return proto_open(ev->session, ev->heartbeat, len_out);
	case PEV_SUBSCRIBED:
		return proto_subscribed(ev->channel, ev->cursor, ev->ref, len_out);
	case PEV_RESET:
		return proto_reset(ev->channel, ev->reason, ev->cursor, len_out);
	case PEV_UNSUBSCRIBED:
		return proto_unsubscribed(ev->channel, ev->ref, len_out);
	case PEV_ACK:
		return proto_ack(ev->ref, ev->channel, ev->id, ev->reply, len_out);
	case PEV_ERROR:
		return proto_error(ev->ref, ev->code, ev->message, len_out);
	case PEV_PONG:
		return proto_pong(ev->ref, len_out);
	case PEV_AUTHENTICATED:
		return proto_authenticated(ev->ref, ev->id, len_out);
	}
	abort(); /* every type is handled above */
}

int proto_event_publishable(const char *name, size_t len)
{
	if (!proto_event_valid(name, len))
		return 0;
	return !(len >= 5 && memcmp(name, "ferry", 5) == 0 && (len == 5 || name[5] == '.'));
}

int proto_client_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > PROTO_MAX_CLIENT_ID)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

char *proto_poll_tail(const char *const *channels, const char *const *ids, int n,
		      const char *const *reset_channels, const char *const *reset_reasons,
		      int nresets, int more, size_t *len_out)
{
	json_t *cursors = json_object();
	for (int i = 0; i < n; i++)
		json_object_set_new(cursors, channels[i],
				    ids[i] ? json_string(ids[i]) : json_null());
	json_t *resets = json_array();
	for (int i = 0; i < nresets; i++) {
		json_t *r = json_object();
		json_object_set_new(r, "channel", json_string(reset_channels[i]));
		json_object_set_new(r, "reason", json_string(reset_reasons[i]));
		json_array_append_new(resets, r);
	}
	char *c = json_dumps(cursors, JSON_COMPACT);
	char *r = json_dumps(resets, JSON_COMPACT);
	json_decref(cursors);
	json_decref(resets);
	if (!c || !r)
		abort();
	size_t cap = strlen(c) + strlen(r) + 64;
	char *out = malloc(cap);
	if (!out)
		abort();
	int len = snprintf(out, cap, "],\"cursors\":%s,\"resets\":%s,\"more\":%s}", c, r,
			   more ? "true" : "false");
	free(c);
	free(r);
	if (len_out)
		*len_out = (size_t)len;
	return out;
}

int proto_decode_send(const char *buf, size_t len, struct proto_send *out, const char **err)
{
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (!root) {
		*err = "body is not valid JSON";
		return -1;
	}
	json_t *ops = json_object_get(root, "ops");
	out->client = get_string(root, "client", NULL);
	if (!json_is_object(root) || !out->client || !proto_client_id_valid(out->client)) {
		*err = "missing or invalid client";
		goto fail;
	}
	if (!json_is_array(ops) || json_array_size(ops) > PROTO_MAX_SEND_OPS) {
		*err = "ops must be an array of at most 100 operations";
		goto fail;
	}
	long long prev = 0;
	for (size_t i = 0; i < json_array_size(ops); i++) {
		json_t *o = json_array_get(ops, i);
		struct proto_send_op *op = &out->ops[i];
		json_t *seq = json_object_get(o, "seq");
		const char *type = get_string(o, "type", NULL);
		size_t clen = 0, elen = 0;
		if (!json_is_integer(seq) || json_integer_value(seq) <= prev) {
			*err = "seq must be an increasing positive integer";
			goto fail;
		}
		op->seq = prev = json_integer_value(seq);
		if (!type || strcmp(type, "publish") != 0) {
			*err = "only publish operations can be sent";
			goto fail;
		}
		op->channel = get_string(o, "channel", &clen);
		if (!op->channel || !proto_channel_valid(op->channel, clen)) {
			*err = "publish needs a valid channel";
			goto fail;
		}
		int follows = 0;
		if (payload_of(o, &op->data, &op->data_len, &op->kind, &follows, &op->owned, 0,
			       err) < 0)
			goto fail;
		json_t *ev = json_object_get(o, "event");
		if (ev && !json_is_null(ev)) {
			op->event = get_string(o, "event", &elen);
			if (!op->event || !proto_event_publishable(op->event, elen)) {
				*err = "invalid event name";
				goto fail;
			}
		}
	}
	out->nops = json_array_size(ops);
	out->json = root;
	return 0;
fail:
	json_decref(root);
	for (size_t i = 0; i < PROTO_MAX_SEND_OPS; i++)
		free(out->ops[i].owned);
	memset(out, 0, sizeof(*out));
	return -1;
}

void proto_send_release(struct proto_send *s)
{
	json_decref(s->json);
	for (size_t i = 0; i < s->nops; i++) {
		free(s->ops[i].owned);
		s->ops[i].owned = NULL;
	}
	s->json = NULL;
}

char *proto_callback_request(const char *event, const char *channel, const char *event_name,
			     const char *data, size_t data_len, const char *client,
			     const char *identity, size_t *len_out)
{
	json_t *o = json_object();
	json_object_set_new(o, "event", json_string(event));
	json_object_set_new(o, "channel", json_string(channel));
	if (event_name)
		json_object_set_new(o, "event_name", json_string(event_name));
	if (data)
		json_object_set_new(o, "data", json_stringn(data, data_len));
	json_object_set_new(o, "client", json_string(client));
	json_object_set_new(o, "identity",
			    identity && *identity ? json_string(identity) : json_null());
	return dump(o, len_out);
}

static char *dup_member(json_t *root, const char *key, int *bad)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = 1;
		return NULL;
	}
	size_t n = json_string_length(v);
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, json_string_value(v), n);
	s[n] = '\0';
	return s;
}

int proto_callback_answer(const char *buf, size_t len, struct proto_callback_answer *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return 0;
	json_t *root = json_loadb(buf, len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return -1;
	}
	int bad = 0;
	out->reply = dup_member(root, "reply", &bad);
	out->publish = dup_member(root, "publish", &bad);
	out->identity = dup_member(root, "identity", &bad);
	json_decref(root);
	/* jansson has checked the strings are UTF-8 */
	if (bad || (out->identity && strlen(out->identity) > 128)) {
		proto_callback_answer_free(out);
		return -1;
	}
	return 0;
}

void proto_callback_answer_free(struct proto_callback_answer *a)
{
	free(a->reply);
	free(a->publish);
	free(a->identity);
	memset(a, 0, sizeof(*a));
}

char *proto_json_string(const char *s, size_t *len_out)
{
	json_t *v = json_string(s);
	if (!v)
		abort(); /* callers pass UTF-8 that jansson has already read */
	char *out = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(v);
	if (!out)
		abort();
	if (len_out)
		*len_out = strlen(out);
	return out;
}

/* base64 (base64.h), with OpenSSL's block coder, checked strictly first
 * (EVP_DecodeBlock skips whitespace and cannot say how much padding it ate).
 * Here rather than in a file of its own: proxy/common is at its 12 files. */
char *base64_encode(const void *data, size_t len, size_t *len_out)
{
	size_t n = 4 * ((len + 2) / 3);
	char *out = xmalloc(n + 1);
	/* EVP_EncodeBlock takes an int: encode in whole groups of 3 bytes */
	const unsigned char *p = data;
	size_t done = 0, at = 0;
	while (done < len) {
		size_t chunk = len - done;
		if (chunk > 3 * (1u << 28))
			chunk = 3 * (1u << 28);
		at += (size_t)EVP_EncodeBlock((unsigned char *)out + at, p + done, (int)chunk);
		done += chunk;
	}
	out[at] = '\0';
	if (len_out)
		*len_out = at;
	return out;
}

/* The character's 6-bit value, or -1 outside the alphabet. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

char *base64_decode(const char *text, size_t len, size_t *len_out)
{
	if (len % 4 != 0 || len / 4 * 3 > (size_t)INT_MAX)
		return NULL;
	size_t pad = 0;
	if (len >= 1 && text[len - 1] == '=')
		pad++;
	if (len >= 2 && text[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (b64_value((unsigned char)text[i]) < 0)
			return NULL;
	/* one encoding per byte string: the bits padding drops must be zero */
	if (pad && (b64_value((unsigned char)text[len - pad - 1]) & (pad == 1 ? 0x3 : 0xf)))
		return NULL;
	char *out = xmalloc(len / 4 * 3 + 1);
	if (len > 0 &&
	    EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)text, (int)len) < 0) {
		free(out);
		return NULL;
	}
	size_t n = len / 4 * 3 - pad;
	out[n] = '\0';
	*len_out = n;
	return out;
}
