/* squall.core's crypto primitives, over OpenSSL's libcrypto: digests, HMAC, a CSPRNG, a
 * constant-time compare, and the hex / base64 / base64url encodings that tokens and cookies are
 * written in. lua/squall/crypto.lua is the documented face; these check their arguments and raise.
 *
 * Thread: the worker's, like every squall.core function. Everything here is short and CPU-bound
 * on small inputs; the slow, memory-hard password hash does not belong here (it must run off the
 * event loop). */
#include "lua_crypto.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

#include "mem.h"

/* The digests offered by name. MD5 and SHA-1 are for interoperability (ETags, legacy
 * signatures), not for anything that must resist collisions. */
static const EVP_MD *digest_by_name(lua_State *L, int idx)
{
  static const char *const names[] = {"sha256", "sha512", "sha384", "sha1", "md5", NULL};
  switch (luaL_checkoption(L, idx, NULL, names)) {
  case 0:
    return EVP_sha256();
  case 1:
    return EVP_sha512();
  case 2:
    return EVP_sha384();
  case 3:
    return EVP_sha1();
  default:
    return EVP_md5();
  }
}

/* core.crypto_digest(alg, data) -> raw digest bytes */
static int l_digest(lua_State *L)
{
  const EVP_MD *md = digest_by_name(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!EVP_Digest(s, n, out, &len, md, NULL))
    return luaL_error(L, "crypto: digest failed");
  lua_pushlstring(L, (const char *)out, len);
  return 1;
}

/* core.crypto_hmac(alg, key, data) -> raw MAC bytes */
static int l_hmac(lua_State *L)
{
  const EVP_MD *md = digest_by_name(L, 1);
  size_t klen, n;
  const char *key = luaL_checklstring(L, 2, &klen);
  const char *s = luaL_checklstring(L, 3, &n);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  /* An empty key is legal for HMAC, but OpenSSL wants a non-NULL pointer for it. */
  if (!HMAC(md, klen ? key : "", (int)klen, (const unsigned char *)s, n, out, &len))
    return luaL_error(L, "crypto: hmac failed");
  lua_pushlstring(L, (const char *)out, len);
  return 1;
}

/* core.crypto_random(n) -> n bytes from the CSPRNG */
static int l_random(lua_State *L)
{
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1 << 20, 1, "must be from 0 to 1048576");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  unsigned char *buf = sq_malloc((size_t)n);
  int ok = RAND_bytes(buf, (int)n) == 1;
  if (ok)
    lua_pushlstring(L, (const char *)buf, (size_t)n);
  free(buf);
  if (!ok)
    return luaL_error(L, "crypto: the random generator failed");
  return 1;
}

/* core.crypto_equal(a, b): whether two strings are equal, in time that depends only on their
 * length (a MAC compared with == leaks how many leading bytes matched). */
static int l_equal(lua_State *L)
{
  size_t na, nb;
  const char *a = luaL_checklstring(L, 1, &na);
  const char *b = luaL_checklstring(L, 2, &nb);
  lua_pushboolean(L, na == nb && CRYPTO_memcmp(a, b, na) == 0);
  return 1;
}

/* ---- encodings --------------------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";

static int l_hex(lua_State *L)
{
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    luaL_addchar(&b, HEX[s[i] >> 4]);
    luaL_addchar(&b, HEX[s[i] & 15]);
  }
  luaL_pushresult(&b);
  return 1;
}

static int hex_value(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* core.crypto_unhex(s) -> bytes, or nil and a message */
static int l_unhex(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (n % 2) {
    lua_pushnil(L);
    lua_pushliteral(L, "odd number of hex digits");
    return 2;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i += 2) {
    int hi = hex_value((unsigned char)s[i]), lo = hex_value((unsigned char)s[i + 1]);
    if (hi < 0 || lo < 0) {
      luaL_pushresult(&b);
      lua_pushnil(L);
      lua_pushfstring(L, "not a hex digit at position %d", (int)(hi < 0 ? i + 1 : i + 2));
      return 2;
    }
    luaL_addchar(&b, (char)(hi << 4 | lo));
  }
  luaL_pushresult(&b);
  return 1;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* core.crypto_b64(s, url): base64 with padding, or base64url without (RFC 4648 §5, as JWTs and
 * cookies want it). */
static int l_b64(lua_State *L)
{
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  int url = lua_toboolean(L, 2);
  const char *abc = url ? B64URL : B64;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    luaL_addchar(&b, abc[v >> 18]);
    luaL_addchar(&b, abc[v >> 12 & 63]);
    luaL_addchar(&b, abc[v >> 6 & 63]);
    luaL_addchar(&b, abc[v & 63]);
  }
  if (i < n) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0);
    luaL_addchar(&b, abc[v >> 18]);
    luaL_addchar(&b, abc[v >> 12 & 63]);
    if (i + 1 < n)
      luaL_addchar(&b, abc[v >> 6 & 63]);
    else if (!url)
      luaL_addchar(&b, '=');
    if (!url)
      luaL_addchar(&b, '=');
  }
  luaL_pushresult(&b);
  return 1;
}

static int b64_value(int c, int url)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == (url ? '-' : '+'))
    return 62;
  if (c == (url ? '_' : '/'))
    return 63;
  return -1;
}

/* core.crypto_unb64(s, url) -> bytes, or nil and a message. Strict: no whitespace, padding only
 * where it belongs (optional for base64url), no stray bits in the last character, so that one
 * value has one encoding (a signature check must not accept variants). */
static int l_unb64(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int url = lua_toboolean(L, 2);
  size_t pad = 0;
  while (pad < 2 && n > pad && s[n - 1 - pad] == '=')
    pad++;
  size_t len = n - pad;
  const char *why = NULL;
  if (pad && (n % 4))
    why = "bad padding";
  else if (!url && n % 4)
    why = "length is not a multiple of 4";
  else if (len % 4 == 1)
    why = "truncated";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; !why && i < len; i++) {
    int v = b64_value((unsigned char)s[i], url);
    if (v < 0) {
      why = "not a base64 character";
      break;
    }
    acc = (acc << 6 | (unsigned)v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      luaL_addchar(&b, (char)(acc >> bits & 255));
    }
  }
  if (!why && (acc & ((1u << bits) - 1)))
    why = "non-zero bits after the end";
  luaL_pushresult(&b);
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  return 1;
}

void sq_lua_open_crypto(lua_State *L)
{
  static const luaL_Reg fns[] = {
    {"crypto_digest", l_digest}, {"crypto_hmac", l_hmac}, {"crypto_random", l_random},
    {"crypto_equal", l_equal},   {"crypto_hex", l_hex},   {"crypto_unhex", l_unhex},
    {"crypto_b64", l_b64},       {"crypto_unb64", l_unb64}, {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
}
