/* llhttp_llhttp.c -- compiles Debian's llhttp source llhttp.c (package node-llhttp) into ferry */
#include "llhttp.c"
