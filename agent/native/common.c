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

/* Finalizer of an external ArrayBuffer over a malloc'd block. */
static void free_block(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

napi_status expose_buffer(napi_env env, napi_value self, const char *name, void *block, size_t bytes) {
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(env, block, bytes, free_block, NULL, &ab);
  return st != napi_ok ? st : napi_set_named_property(env, self, name, ab);
}

napi_status expose_array(napi_env env, napi_value self, const char *name, void *block, size_t length, napi_typedarray_type type) {
  napi_value ab, view;
  napi_status st = napi_create_external_arraybuffer(env, block, length * (type == napi_int32_array ? 4 : 1), free_block, NULL, &ab);
  if (st == napi_ok) st = napi_create_typedarray(env, type, length, ab, 0, &view);
  return st != napi_ok ? st : napi_set_named_property(env, self, name, view);
}

napi_value define_class(napi_env env, napi_value exports, const char *name, napi_callback ctor, const napi_property_descriptor *props,
                        size_t n) {
  napi_value cls;
  if (napi_define_class(env, name, NAPI_AUTO_LENGTH, ctor, NULL, n, props, &cls) != napi_ok) return NULL;
  napi_set_named_property(env, exports, name, cls);
  return cls;
}
