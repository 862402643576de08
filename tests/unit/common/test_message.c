/* test_message.c -- what an output queue of messages really holds.
 * libevent's allocations are counted through event_set_mem_functions, so
 * the figure is what the queue costs in memory, chains and bookkeeping
 * included, against what evbuffer_get_length (and so --out-queue-max)
 * counts. The referenced bytes of a large frame belong to the message,
 * which is shared by every subscriber; they are counted once here, as if
 * this queue held the message alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

/* Each block carries its size in front, so free knows what it returns. */
#define HDR 16
static size_t live;

static void *count_malloc(size_t n)
{
	char *p = malloc(n + HDR);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof(n));
	live += n;
	return p + HDR;
}

static void count_free(void *q)
{
	if (!q)
		return;
	char *p = (char *)q - HDR;
	size_t n;
	memcpy(&n, p, sizeof(n));
	live -= n;
	free(p);
}

static void *count_realloc(void *q, size_t n)
{
	if (!q)
		return count_malloc(n);
	char *p = (char *)q - HDR;
	size_t old;
	memcpy(&old, p, sizeof(old));
	char *r = realloc(p, n + HDR);
	if (!r)
		return NULL;
	memcpy(r, &n, sizeof(n));
	live = live - old + n;
	return r + HDR;
}

/* What queueing `count` messages of `size` bytes costs per queued byte,
 * each behind a small per-client piece (an SSE id: line, a pong) when
 * `interleave` is set. */
static double cost_ratio(size_t size, int count, int interleave)
{
	struct message *m =
		message_new("c", "e:1", (struct msg_pos){ 1, 0 }, NULL, MSG_TEXT, "", 0);
	char *frame = malloc(size);
	assert_non_null(frame);
	memset(frame, 'x', size);
	size_t before = live;
	struct evbuffer *out = evbuffer_new();
	for (int i = 0; i < count; i++) {
		if (interleave)
			evbuffer_add(out, "id: c:e:1\n", 10);
		message_queue(out, m, frame, size);
	}
	size_t queued = evbuffer_get_length(out);
	/* the shared frame, counted once (see above) */
	size_t held = live - before + (size > MESSAGE_COPY_MAX ? size : 0);
	evbuffer_free(out); /* drops the references */
	assert_int_equal(live, before);
	free(frame);
	message_unref(m);
	return (double)held / (double)queued;
}

static void check(size_t size, int count)
{
	for (int interleave = 0; interleave < 2; interleave++) {
		double r = cost_ratio(size, count, interleave);
		if (r > 1.13)
			fail_msg("%zu-byte messages%s cost %.2f bytes per queued byte", size,
				 interleave ? " behind small pieces" : "", r);
	}
}

static void small_messages_pack(void **state)
{
	check(16, 20000); /* by reference: 1 KiB of chain each */
	check(100, 10000);
	check(1024, 2000);
}

static void copy_limit(void **state)
{
	check(MESSAGE_COPY_MAX, 200);
	check(MESSAGE_COPY_MAX + 1, 200);
}

static void large_messages_are_shared(void **state)
{
	/* by reference, then a small add: a chain twice the frame's size */
	check(64 * 1024, 100);
	check(1024 * 1024, 20);
}

/* The bytes come out as they went in, in order, whatever way they went. */
static void bytes_unchanged(void **state)
{
	size_t sizes[] = { 1, 15, MESSAGE_COPY_MAX, MESSAGE_COPY_MAX + 1, 100000 };
	struct message *m =
		message_new("c", "e:1", (struct msg_pos){ 1, 0 }, NULL, MSG_TEXT, "", 0);
	struct evbuffer *out = evbuffer_new();
	size_t total = 0;
	char *frames[5];
	for (int i = 0; i < 5; i++) {
		frames[i] = malloc(sizes[i]);
		for (size_t j = 0; j < sizes[i]; j++)
			frames[i][j] = (char)(i * 31 + j * 7);
		message_queue(out, m, frames[i], sizes[i]);
		evbuffer_add(out, "|", 1);
		total += sizes[i] + 1;
	}
	assert_int_equal(evbuffer_get_length(out), total);
	for (int i = 0; i < 5; i++) {
		char *got = malloc(sizes[i] + 1);
		assert_int_equal(evbuffer_remove(out, got, sizes[i] + 1), (int)(sizes[i] + 1));
		assert_memory_equal(got, frames[i], sizes[i]);
		assert_int_equal(got[sizes[i]], '|');
		free(got);
		free(frames[i]);
	}
	evbuffer_free(out);
	message_unref(m);
}

int main(void)
{
	event_set_mem_functions(count_malloc, count_realloc, count_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_messages_pack),
		cmocka_unit_test(copy_limit),
		cmocka_unit_test(large_messages_are_shared),
		cmocka_unit_test(bytes_unchanged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
