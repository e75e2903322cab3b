/*
 * aead.c: ChaChaPoly, ChaCha20-Poly1305 (RFC 8439 §2.8) on one reused OpenSSL context per direction, with WireGuard's
 * nonce layout: 4 zero bytes ‖ the counter as uint64 little-endian (docs/protocol.md §3.3). node:crypto builds a new
 * cipher object per packet; this re-keys the same one. Its reference is @noble/ciphers (agent/src/crypto/aead.ts),
 * which tests/unit/native-dataplane compares it with.
 *
 * seal(key, counter, src, dst[, aad]) → bytes written (src.length + 16); open(key, counter, src, dst[, aad]) →
 * plaintext length or -1. `dst` may be `src`'s memory only at the same offset. Empty AAD unless given.
 */
#include "ntmdp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

typedef struct {
  EVP_CIPHER_CTX *enc, *dec;
} aead;

static void aead_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  aead *a = data;
  EVP_CIPHER_CTX_free(a->enc);
  EVP_CIPHER_CTX_free(a->dec);
  free(a);
}

static napi_value aead_new(napi_env env, napi_callback_info info) {
  napi_value self;
  size_t argc = 0;
  CHECK(napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  aead *a = calloc(1, sizeof *a);
  if (!a) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  a->enc = EVP_CIPHER_CTX_new();
  a->dec = EVP_CIPHER_CTX_new();
  if (!a->enc || !a->dec || EVP_EncryptInit_ex(a->enc, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1 ||
      EVP_DecryptInit_ex(a->dec, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) {
    napi_throw_error(env, NULL, "ntmdp: OpenSSL has no ChaCha20-Poly1305");
    return NULL;
  }
  CHECK(napi_wrap(env, self, a, aead_free, NULL, NULL));
  return self;
}

static napi_value aead_run(napi_env env, napi_callback_info info, int encrypt) {
  size_t argc = 5;
  napi_value argv[5], self, ret;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  aead *a = NULL;
  CHECK(napi_unwrap(env, self, (void **)&a));
  uint8_t *key, *src, *dst, *aad = NULL;
  size_t klen, slen, dlen, alen = 0;
  double counter = 0;
  napi_valuetype aad_type = napi_undefined;
  if (argc > 4) napi_typeof(env, argv[4], &aad_type);
  int has_aad = argc > 4 && aad_type != napi_undefined && aad_type != napi_null;
  if (argc < 4 || bytes_of(env, argv[0], &key, &klen) || klen != 32 || napi_get_value_double(env, argv[1], &counter) != napi_ok ||
      bytes_of(env, argv[2], &src, &slen) || bytes_of(env, argv[3], &dst, &dlen) || (has_aad && bytes_of(env, argv[4], &aad, &alen))) {
    napi_throw_type_error(env, NULL, "ntmdp: seal/open(key32, counter, src, dst[, aad])");
    return NULL;
  }
  if (counter < 0 || counter > 9007199254740991.0) {
    napi_throw_range_error(env, NULL, "ntmdp: counter out of range");
    return NULL;
  }
  uint8_t nonce[12] = {0};
  uint64_t c = (uint64_t)counter;
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(c >> (8 * i));
  int out = -1, n = 0, f = 0;
  if (encrypt) {
    if (dlen < slen + 16) {
      napi_throw_range_error(env, NULL, "ntmdp: seal output too small");
      return NULL;
    }
    if (EVP_EncryptInit_ex(a->enc, NULL, NULL, key, nonce) == 1 && (alen == 0 || EVP_EncryptUpdate(a->enc, NULL, &n, aad, (int)alen) == 1) &&
        EVP_EncryptUpdate(a->enc, dst, &n, src, (int)slen) == 1 && EVP_EncryptFinal_ex(a->enc, dst + n, &f) == 1 &&
        EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_GET_TAG, 16, dst + slen) == 1)
      out = (int)slen + 16;
  } else {
    if (slen < 16 || dlen < slen - 16) {
      napi_create_int32(env, -1, &ret);
      return ret;
    }
    size_t ct = slen - 16;
    uint8_t tag[16];
    memcpy(tag, src + ct, 16);
    if (EVP_DecryptInit_ex(a->dec, NULL, NULL, key, nonce) == 1 && (alen == 0 || EVP_DecryptUpdate(a->dec, NULL, &n, aad, (int)alen) == 1) &&
        EVP_DecryptUpdate(a->dec, dst, &n, src, (int)ct) == 1 && EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 &&
        EVP_DecryptFinal_ex(a->dec, dst + n, &f) == 1)
      out = (int)ct;
    else if (dlen >= ct)
      memset(dst, 0, ct); /* never leave unauthenticated plaintext behind */
  }
  napi_create_int32(env, out, &ret);
  return ret;
}

static napi_value aead_seal(napi_env env, napi_callback_info info) { return aead_run(env, info, 1); }
static napi_value aead_open(napi_env env, napi_callback_info info) { return aead_run(env, info, 0); }

void aead_register(napi_env env, napi_value exports) {
  static const napi_property_descriptor methods[] = {
      {"seal", NULL, aead_seal, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, aead_open, NULL, NULL, NULL, napi_default, NULL},
  };
  define_class(env, exports, "ChaChaPoly", aead_new, methods, sizeof methods / sizeof methods[0]);
}
