/*
 * keccak.c: keccak256(data, out), Keccak-256 as Ethereum uses it: the Keccak-f[1600] permutation of FIPS 202 §3
 * (the reference: keccak.team/keccak_specs_summary.html), rate 136 bytes, but with the original Keccak padding
 * 0x01…0x80 rather than FIPS 202's SHA-3 domain bits 0x06 (Ethereum fixed it before FIPS 202 was final). For NTM IDs,
 * Node Transaction digests and the registry's hash chain; ~3 µs where @noble/hashes takes ~20, and
 * tests/unit/native-dataplane compares the two for every length around the rate.
 */
#include "ntmdp.h"

#include <string.h>

static const uint64_t KECCAK_RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL, 0x000000000000808bULL,
    0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL, 0x0000000000000088ULL,
    0x0000000080008009ULL, 0x000000008000000aULL, 0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL};
/* Rotation offsets and lane order of the rho and pi steps, walked along pi's cycle starting at lane 1. */
static const int KECCAK_ROT[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
static const int KECCAK_PI[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

#define ROTL64(x, n) (((x) << (n)) | ((x) >> (64 - (n))))

static void keccak_f1600(uint64_t a[25]) {
  for (int round = 0; round < 24; round++) {
    uint64_t c[5], t;
    for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    for (int x = 0; x < 5; x++) {
      t = c[(x + 4) % 5] ^ ROTL64(c[(x + 1) % 5], 1);
      for (int y = 0; y < 25; y += 5) a[y + x] ^= t;
    }
    t = a[1];
    for (int i = 0; i < 24; i++) {
      int j = KECCAK_PI[i];
      uint64_t b = a[j];
      a[j] = ROTL64(t, KECCAK_ROT[i]);
      t = b;
    }
    for (int y = 0; y < 25; y += 5) {
      for (int x = 0; x < 5; x++) c[x] = a[y + x];
      for (int x = 0; x < 5; x++) a[y + x] = c[x] ^ (~c[(x + 1) % 5] & c[(x + 2) % 5]);
    }
    a[0] ^= KECCAK_RC[round];
  }
}

static void keccak256(const uint8_t *in, size_t len, uint8_t out[32]) {
  uint64_t a[25] = {0};
  const size_t rate = 136;
  uint8_t block[136];
  for (;;) {
    size_t n = len < rate ? len : rate;
    memset(block, 0, rate);
    memcpy(block, in, n);
    if (n < rate) {
      block[n] ^= 0x01;
      block[rate - 1] ^= 0x80;
    }
    for (size_t i = 0; i < rate / 8; i++) {
      uint64_t w = 0;
      for (int b = 7; b >= 0; b--) w = (w << 8) | block[i * 8 + (size_t)b];
      a[i] ^= w;
    }
    keccak_f1600(a);
    if (n < rate) break;
    in += rate;
    len -= rate;
    /* A message that fills its last block exactly gets one more block holding only the padding. */
  }
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 8; b++) out[i * 8 + b] = (uint8_t)(a[i] >> (8 * b));
}

static napi_value keccak_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *in, *out;
  size_t ilen, olen;
  if (argc < 2 || bytes_of(env, argv[0], &in, &ilen) || bytes_of(env, argv[1], &out, &olen) || olen < 32) {
    napi_throw_type_error(env, NULL, "ntmdp: keccak256(Uint8Array, out32)");
    return NULL;
  }
  keccak256(in, ilen, out);
  return NULL;
}

void keccak_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "keccak256", NAPI_AUTO_LENGTH, keccak_js, NULL, &fn);
  napi_set_named_property(env, exports, "keccak256", fn);
}
