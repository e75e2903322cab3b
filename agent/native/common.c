/*
 * common.c: the N-API helpers every unit uses: errors thrown with errno's text, stats() objects, external ArrayBuffers
 * over the units' arenas, class definitions. Not on the per-packet path (bytes_of and unwrap_this, which are, are
 * inline in ntmdp.h).
 */
#include "ntmdp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

napi_value stats_object(napi_env env, const char *const *names, const double *stats, int n) {
  napi_value o, v;
  napi_create_object(env, &o);
  for (int i = 0; i < n; i++) {
    napi_create_double(env, stats[i], &v);
    napi_set_named_property(env, o, names[i], v);
  }
  return o;
}

void free_block(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

napi_value define_class(napi_env env, napi_value exports, const char *name, napi_callback ctor, const napi_property_descriptor *props,
                        size_t n) {
  napi_value cls;
  if (napi_define_class(env, name, NAPI_AUTO_LENGTH, ctor, NULL, n, props, &cls) != napi_ok) return NULL;
  napi_set_named_property(env, exports, name, cls);
  return cls;
}
