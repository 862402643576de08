/* llhttp_http.c -- compiles Debian's llhttp source http.c (package node-llhttp) into ferry */
#include "http.c"
