/* router.h -- maps a complete request to the handler that answers it */
#ifndef FERRY_ROUTER_H
#define FERRY_ROUTER_H

/* The handler of every client connection (httpconn.h): ferry's own routes
 * under --prefix are answered here or by a transport; with --upstream the
 * app's requests are taken at their head and streamed (proxy/app/revproxy.c). */
extern const struct httpconn_handler router_handler;

#endif
