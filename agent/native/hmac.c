/*
 * hmac.c: hmacSha256(key, data, out), HMAC-SHA256 (RFC 2104) in one OpenSSL call. What a DC under a flood does for
 * every datagram it refuses is a mac1 check and a cookie (docs/protocol.md §3.2; WireGuard §5.4.4, §5.4.7), and
 * node:crypto's createHmac builds and frees a hash object for each (~2.1 µs); this is ~0.6 µs.
 * tests/unit/native-dataplane compares it with node:crypto.
 */
#include "ntmdp.h"

#include <string.h>

#include <openssl/sha.h>

/* RFC 2104 §2 over OpenSSL's SHA-256 block functions: no EVP lookup or context allocation per call (HMAC() does both,
 * and took ~1.1 µs of the ~1.2). SHA256_* are deprecated in OpenSSL 3 for EVP, which is what costs here. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *in, size_t ilen, uint8_t out[32]) {
  uint8_t pad[64], inner[32];
  SHA256_CTX c;
  memset(pad, 0x36, sizeof pad);
  for (size_t i = 0; i < klen; i++) pad[i] ^= key[i];
  SHA256_Init(&c);
  SHA256_Update(&c, pad, sizeof pad);
  SHA256_Update(&c, in, ilen);
  SHA256_Final(inner, &c);
  memset(pad, 0x5c, sizeof pad);
  for (size_t i = 0; i < klen; i++) pad[i] ^= key[i];
  SHA256_Init(&c);
  SHA256_Update(&c, pad, sizeof pad);
  SHA256_Update(&c, inner, sizeof inner);
  SHA256_Final(out, &c);
}

static napi_value hmac_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key, *in, *out;
  size_t klen, ilen, olen;
  if (argc < 3 || bytes_of(env, argv[0], &key, &klen) || bytes_of(env, argv[1], &in, &ilen) ||
      bytes_of(env, argv[2], &out, &olen) || olen < 32 || klen > 64) {
    napi_throw_type_error(env, NULL, "ntmdp: hmacSha256(key ≤ 64 bytes, Uint8Array, out32)");
    return NULL;
  }
  hmac_sha256(key, klen, in, ilen, out);
  return NULL;
}

void hmac_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "hmacSha256", NAPI_AUTO_LENGTH, hmac_js, NULL, &fn);
  napi_set_named_property(env, exports, "hmacSha256", fn);
}
