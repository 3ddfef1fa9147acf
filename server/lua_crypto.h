/* Digests, HMAC, random bytes, constant-time compare and encodings for lua/squall/crypto.lua,
 * over OpenSSL's libcrypto. */
#ifndef SQ_LUA_CRYPTO_H
#define SQ_LUA_CRYPTO_H

#include <lua.h>

/* Adds core.crypto_* to the table on top of the stack. */
void sq_lua_open_crypto(lua_State *L);

#endif
