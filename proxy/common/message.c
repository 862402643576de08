/* message.c -- refcounted messages; strings live in the same allocation */
#include "message.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct message *message_new(const char *channel, const char *id, struct msg_pos pos,
			    const char *event, enum msg_kind kind, const char *data,
			    size_t data_len)
{
	size_t clen = strlen(channel) + 1, ilen = strlen(id) + 1;
	size_t elen = event ? strlen(event) + 1 : 0;
	struct message *m = xcalloc(1, sizeof(*m) + clen + ilen + elen + data_len + 1);
	char *p = (char *)(m + 1);
	m->channel = memcpy(p, channel, clen);
	p += clen;
	m->id = memcpy(p, id, ilen);
	/* found once here rather than at each subscriber's epoch check */
	const char *colon = strrchr(id, ':');
	m->epoch_len = colon ? (size_t)(colon - id) : 0;
	p += ilen;
	if (event) {
		m->event = memcpy(p, event, elen);
		p += elen;
	}
	memcpy(p, data, data_len);
	p[data_len] = '\0';
	m->data = p;
	m->data_len = data_len;
	m->pos = pos;
	m->kind = kind;
	m->refs = 1;
	return m;
}

struct message *message_ref(struct message *m)
{
	m->refs++;
	return m;
}

void message_unref(struct message *m)
{
	if (!m || --m->refs > 0)
		return;
	for (int w = 0; w < WIRE_COUNT; w++)
		free(m->wire[w].bytes);
	free(m);
}

const char *message_wire(const struct message *m, enum wire w, size_t *len)
{
	*len = m->wire[w].len;
	return m->wire[w].bytes;
}

void message_set_wire(struct message *m, enum wire w, char *bytes, size_t len)
{
	free(m->wire[w].bytes);
	m->wire[w].bytes = bytes;
	m->wire[w].len = len;
}

int msg_pos_cmp(struct msg_pos a, struct msg_pos b)
{
	if (a.major != b.major)
		return a.major < b.major ? -1 : 1;
	if (a.minor != b.minor)
		return a.minor < b.minor ? -1 : 1;
	return 0;
}

void message_release_ref(const void *data, size_t len, void *m)
{
	message_unref(m);
}

static const char *const kind_names[] = {
	[MSG_TEXT] = "text", [MSG_BINARY] = "binary", [MSG_JSON] = "json"
};

const char *msg_kind_name(enum msg_kind kind)
{
	return kind_names[kind];
}

int msg_kind_parse(const char *name, size_t len, enum msg_kind *out)
{
	for (int k = MSG_TEXT; k <= MSG_JSON; k++)
		if (strlen(kind_names[k]) == len && memcmp(kind_names[k], name, len) == 0) {
			*out = (enum msg_kind)k;
			return 0;
		}
	return -1;
}

/* libevent spends a chain of at least 1 KiB on every reference, and the
 * next evbuffer_add after one allocates up to twice the referenced length:
 * queued by reference, 16-byte messages cost 65 times their size and 1 MiB
 * ones twice theirs, all outside what --out-queue-max counts. So small
 * frames are copied (they pack into chains of up to 4 KiB), and a large one
 * is referenced but for its last byte, which goes into a chain of its own,
 * sized for what follows: reserve_space allocates by the size asked for,
 * not by the chain before it. */
void message_queue(struct evbuffer *out, struct message *m, const char *bytes, size_t len)
{
	if (len <= MESSAGE_COPY_MAX) {
		evbuffer_add(out, bytes, len);
		return;
	}
	evbuffer_add_reference(out, bytes, len - 1, message_release_ref, message_ref(m));
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, 1, &v, 1) == 1) {
		*(char *)v.iov_base = bytes[len - 1];
		v.iov_len = 1;
		evbuffer_commit_space(out, &v, 1);
	} else {
		evbuffer_add(out, bytes + len - 1, 1);
	}
}
