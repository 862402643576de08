/* llhttp_api.c -- compiles Debian's llhttp source api.c (package node-llhttp) into ferry */
#include "api.c"
