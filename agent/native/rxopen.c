/*
 * rxopen.c: the receive side's crypto off the JavaScript thread (issue 15). Two parts:
 *
 *   rxKeys     the receive keys of this process's DATA keypairs, by local index (agent/src/crypto/rx-keys.ts adds one
 *              when a TunnelKeypair is made and removes it when the keypair is destroyed). Each entry has a generation
 *              number: JavaScript takes the thread's verdict only for the keypair whose key made it.
 *   rxpipe     one thread per UdpSocket that opens the DATA datagrams (docs/protocol.md §3.3: type 0x04, reserved 0,
 *              receiver index, counter, ChaCha20-Poly1305 of RFC 8439 §2.8, nonce 0x00000000 ‖ counter LE) of a
 *              received burst while the JavaScript thread reads the next burst or handles the one before: udp.c
 *              receives into two halves of its arena in turn and hands each half here; the thread writes the
 *              plaintext of each authentic datagram into the `plain` arena at the datagram's offset + 16, marks it in
 *              the datagram's meta (opened 1 and the key's generation, or 2 when the tag did not verify) and wakes
 *              the loop (uv_async), which calls JavaScript with the half.
 *
 * Only the AEAD moves here: the header checks, the keypair's age and message limits, the replay window (RFC 6479: its
 * check and its update, after authentication as before) and everything after stay in JavaScript, per packet, as on
 * the path without the thread (crypto/session.ts TunnelKeypair.open). A datagram this thread did not open (not DATA,
 * an index without a key, a relayed frame) is opened there as before.
 *
 * Threading: rxKeys is shared by every thread under one mutex. An rxpipe's halves move FREE → QUEUED (the loop
 * thread, after recvmmsg) → OPENED (the opening thread) → FREE (the loop thread, after JavaScript had the half); the
 * state is under the pipe's mutex, the half's memory belongs to whichever side the state names.
 */
#include "ntmdp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---------------------------------------------------------------------------------------------------------------- */
/* rxKeys */

#define RXKEY_SLOTS 4096 /* open addressing; at most half of them live */
enum { SLOT_EMPTY = 0, SLOT_LIVE, SLOT_GONE };

typedef struct {
  uint32_t index, gen;
  int state;
  uint8_t key[32];
} rxkey;

static rxkey keys[RXKEY_SLOTS];
static int keys_live;
/* Slots of removed keys: a lookup walks past them to the next empty slot, so they are cleared out before a
 * long-running agent's rekeys (one key in, one out, every two minutes per tunnel) leave no empty slot at all. */
static int keys_gone;
static uint32_t keys_gen;
static pthread_mutex_t keys_mu = PTHREAD_MUTEX_INITIALIZER;

static inline uint32_t slot_of(uint32_t index) { return (index * 2654435761u) & (RXKEY_SLOTS - 1); }

/* The key and generation for `index`; 0 when there is none. Called with keys_mu held. */
static uint32_t key_find(uint32_t index, uint8_t key[32]) {
  for (uint32_t s = slot_of(index), k = 0; k < RXKEY_SLOTS; k++, s = (s + 1) & (RXKEY_SLOTS - 1)) {
    if (keys[s].state == SLOT_EMPTY) return 0;
    if (keys[s].state == SLOT_LIVE && keys[s].index == index) {
      if (key) memcpy(key, keys[s].key, 32);
      return keys[s].gen;
    }
  }
  return 0;
}

/* Puts the live keys back in a table with no removed slots (each keeps its index, key and generation). Called with
 * keys_mu held, when removed slots are a quarter of the table. */
static void keys_rebuild(void) {
  static rxkey live[RXKEY_SLOTS / 2];
  int n = 0;
  for (int s = 0; s < RXKEY_SLOTS; s++)
    if (keys[s].state == SLOT_LIVE && n < RXKEY_SLOTS / 2) live[n++] = keys[s];
  memset(keys, 0, sizeof keys);
  for (int i = 0; i < n; i++) {
    uint32_t s = slot_of(live[i].index);
    while (keys[s].state == SLOT_LIVE) s = (s + 1) & (RXKEY_SLOTS - 1);
    keys[s] = live[i];
  }
  memset(live, 0, sizeof live);
  keys_gone = 0;
}

static void key_remove(uint32_t index, uint32_t gen) {
  for (uint32_t s = slot_of(index), k = 0; k < RXKEY_SLOTS; k++, s = (s + 1) & (RXKEY_SLOTS - 1)) {
    if (keys[s].state == SLOT_EMPTY) return;
    if (keys[s].state == SLOT_LIVE && keys[s].index == index && (gen == 0 || keys[s].gen == gen)) {
      memset(keys[s].key, 0, 32);
      keys[s].state = SLOT_GONE;
      keys_live--;
      if (++keys_gone >= RXKEY_SLOTS / 4) keys_rebuild();
      return;
    }
  }
}

/* A new key for `index` (replacing the one it had); its generation, or 0 when the table is full. */
static uint32_t key_add(uint32_t index, const uint8_t key[32]) {
  key_remove(index, 0);
  if (keys_live >= RXKEY_SLOTS / 2) return 0;
  uint32_t s = slot_of(index);
  while (keys[s].state == SLOT_LIVE) s = (s + 1) & (RXKEY_SLOTS - 1);
  if (keys[s].state == SLOT_GONE) keys_gone--;
  if (++keys_gen == 0) keys_gen = 1;
  keys[s].index = index;
  keys[s].gen = keys_gen;
  memcpy(keys[s].key, key, 32);
  keys[s].state = SLOT_LIVE;
  keys_live++;
  return keys_gen;
}

/* rxKeyAdd(index, key32) → generation (0: not taken; JavaScript opens that keypair's packets itself). */
static napi_value rxkey_add_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], ret;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t index = 0;
  uint8_t *key;
  size_t klen;
  if (argc < 2 || napi_get_value_uint32(env, argv[0], &index) != napi_ok || bytes_of(env, argv[1], &key, &klen) || klen != 32) {
    napi_throw_type_error(env, NULL, "ntmdp: rxKeyAdd(index, key32)");
    return NULL;
  }
  pthread_mutex_lock(&keys_mu);
  uint32_t gen = key_add(index, key);
  pthread_mutex_unlock(&keys_mu);
  CHECK(napi_create_uint32(env, gen, &ret));
  return ret;
}

/* rxKeyRemove(index, generation): wipes the key if it is still that generation's. */
static napi_value rxkey_remove_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t index = 0, gen = 0;
  if (argc < 2 || napi_get_value_uint32(env, argv[0], &index) != napi_ok || napi_get_value_uint32(env, argv[1], &gen) != napi_ok || gen == 0) {
    napi_throw_type_error(env, NULL, "ntmdp: rxKeyRemove(index, generation)");
    return NULL;
  }
  pthread_mutex_lock(&keys_mu);
  key_remove(index, gen);
  pthread_mutex_unlock(&keys_mu);
  return NULL;
}

/* rxKeyCount() → live keys (tests: every destroyed keypair gave its key back). */
static napi_value rxkey_count_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value ret;
  pthread_mutex_lock(&keys_mu);
  int n = keys_live;
  pthread_mutex_unlock(&keys_mu);
  CHECK(napi_create_int32(env, n, &ret));
  return ret;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Opening a burst */

static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Opens each DATA datagram of meta[0..count) (umeta int32s each: arena offset, length, …, [4] opened, [5] generation)
 * that has a key; the others get opened = 0. */
static void open_burst(void *ctx, const uint8_t *arena, uint8_t *plain, int32_t *meta, int count, int umeta, double *stats) {
  uint8_t key[32], nonce[12] = {0}, tag[16];
  for (int i = 0; i < count; i++) {
    int32_t *m = meta + (size_t)i * umeta;
    m[4] = 0;
    m[5] = 0;
    const uint8_t *d = arena + m[0];
    size_t len = (size_t)m[1];
    if (len < 32 || d[0] != 0x04 || d[1] || d[2] || d[3]) continue;
    pthread_mutex_lock(&keys_mu);
    uint32_t gen = key_find(rd32(d + 4), key);
    pthread_mutex_unlock(&keys_mu);
    if (gen == 0) continue;
    /* The counter is big-endian on the wire (docs/protocol.md §3.3), little-endian in the nonce. */
    for (int k = 0; k < 8; k++) nonce[4 + k] = d[15 - k];
    size_t ct = len - 32;
    uint8_t *dst = plain + m[0] + 16;
    int n = 0, f = 0;
    memcpy(tag, d + len - 16, 16);
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 && EVP_DecryptUpdate(ctx, dst, &n, d + 16, (int)ct) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 && EVP_DecryptFinal_ex(ctx, dst + n, &f) == 1) {
      m[4] = 1;
      stats[0]++;
    } else {
      memset(dst, 0, ct); /* never leave unauthenticated plaintext behind */
      m[4] = 2;
      stats[1]++;
    }
    m[5] = (int32_t)gen;
  }
  memset(key, 0, sizeof key);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* rxpipe */

static void *rxpipe_main(void *arg) {
  rxpipe *p = arg;
  int h = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->state[h] != RX_QUEUED) pthread_cond_wait(&p->cv, &p->mu);
    if (p->stop) break;
    int count = p->count[h];
    pthread_mutex_unlock(&p->mu);
    open_burst(p->ctx, p->arena, p->plain, p->meta + (size_t)h * p->half_entries * p->umeta, count, p->umeta, p->stats);
    pthread_mutex_lock(&p->mu);
    p->state[h] = RX_OPENED;
    uv_async_send(&p->done);
    h ^= 1;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int rxpipe_start(rxpipe *p, uv_loop_t *loop, uv_async_cb on_opened, void *owner) {
  p->ctx = EVP_CIPHER_CTX_new();
  if (!p->ctx || EVP_DecryptInit_ex(p->ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) return -1;
  if (uv_async_init(loop, &p->done, on_opened) != 0) return -1;
  p->done.data = owner;
  p->async_live = 1;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->state[0] = p->state[1] = RX_FREE;
  p->stop = 0;
  if (pthread_create(&p->thread, NULL, rxpipe_main, p) != 0) return -1;
  p->running = 1;
  return 0;
}

void rxpipe_submit(rxpipe *p, int half, int count) {
  pthread_mutex_lock(&p->mu);
  p->count[half] = count;
  p->state[half] = RX_QUEUED;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

int rxpipe_state(rxpipe *p, int half) {
  pthread_mutex_lock(&p->mu);
  int s = p->state[half];
  pthread_mutex_unlock(&p->mu);
  return s;
}

void rxpipe_release(rxpipe *p, int half) {
  pthread_mutex_lock(&p->mu);
  p->state[half] = RX_FREE;
  pthread_mutex_unlock(&p->mu);
}

void rxpipe_stop(rxpipe *p, uv_close_cb on_closed) {
  if (p->running) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL); /* it finishes the half it is opening, at most one burst */
    p->running = 0;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
  }
  if (p->ctx) EVP_CIPHER_CTX_free(p->ctx);
  p->ctx = NULL;
  if (p->async_live && !uv_is_closing((uv_handle_t *)&p->done)) uv_close((uv_handle_t *)&p->done, on_closed);
}

void rxkeys_register(napi_env env, napi_value exports) {
  napi_value fn;
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"rxKeyAdd", rxkey_add_js}, {"rxKeyRemove", rxkey_remove_js}, {"rxKeyCount", rxkey_count_js}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) == napi_ok) napi_set_named_property(env, exports, fns[i].name, fn);
}
