/* drain.h -- the graceful drain on SIGTERM: stop accepting, close idle HTTP
 * connections at once, spread the closes of long-lived clients over
 * --drain-window, and end the loop when none is left or at --drain-timeout. */
#ifndef FERRY_DRAIN_H
#define FERRY_DRAIN_H

struct ferry;
struct drain;

/* Start draining f (a second call ends the loop at once). The listener is
 * freed here, and f->listener cleared. */
void drain_start(struct ferry *f);
/* Free the drain's timers (at exit; NULL is fine). */
void drain_free(struct drain *d);

#endif
