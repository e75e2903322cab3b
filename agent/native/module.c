/*
 * module.c: the addon ntmdp, the data plane's native fast path (N-API, C): what the TypeScript data plane cannot do
 * fast enough by itself. Each unit has a TypeScript (or node-nfqueue / node:crypto) counterpart beside it that the
 * tests compare it with, and agent/src/native.ts loads the addon and declares its JavaScript interface. The units are
 * listed in ntmdp.h.
 */
#include "ntmdp.h"

static napi_value init(napi_env env, napi_value exports) {
  nfqueue_register(env, exports);
  inject_register(env, exports);
  tun_register(env, exports);
  gso_register(env, exports);
  aead_register(env, exports);
  udp_register(env, exports);
  keccak_register(env, exports);
  hmac_register(env, exports);
  rxkeys_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
