-- squall.crypto: digests, HMAC, random bytes, a constant-time compare and the encodings tokens
-- are written in, over OpenSSL's libcrypto (server/lua_crypto.c). Digests and MACs are raw
-- bytes; wrap them in hex() or base64url() to print them.
--
--   local crypto = require "squall.crypto"
--   crypto.hex(crypto.sha256("abc"))            --> "ba7816bf..."
--   crypto.hmac("sha256", key, msg)             --> 32 raw bytes
--   crypto.equals(mac, expected)                --> compare secrets in constant time
--   crypto.base64url(crypto.random_bytes(32))   --> a token for a URL or a cookie

local core = require "squall.core"

local digest, hmac = core.crypto_digest, core.crypto_hmac

local _M = {}

function _M.sha256(s) return digest("sha256", s) end
function _M.sha384(s) return digest("sha384", s) end
function _M.sha512(s) return digest("sha512", s) end
-- SHA-1 and MD5 are for interoperability only (old signatures, checksums), never for secrets.
function _M.sha1(s) return digest("sha1", s) end
function _M.md5(s) return digest("md5", s) end

-- alg: "sha256", "sha384", "sha512", "sha1" or "md5".
function _M.digest(alg, s) return digest(alg, s) end
function _M.hmac(alg, key, s) return hmac(alg, key, s) end
function _M.hmac_sha256(key, s) return hmac("sha256", key, s) end

-- n bytes from the operating system's CSPRNG (through libcrypto), for keys, tokens and salts.
_M.random_bytes = core.crypto_random

-- Whether two strings are equal, taking the same time wherever they differ (only their lengths
-- show). Compare MACs, tokens and password digests with this, never with ==.
_M.equals = core.crypto_equal

_M.hex = core.crypto_hex
-- Decoders return nil and a message for input that is not in the encoding.
_M.from_hex = core.crypto_unhex

local b64, unb64 = core.crypto_b64, core.crypto_unb64

-- RFC 4648 base64, with padding.
function _M.base64(s) return b64(s, false) end
function _M.from_base64(s) return unb64(s, false) end
-- RFC 4648 base64url, without padding (JWTs, cookies, URLs); padding is accepted when decoding.
function _M.base64url(s) return b64(s, true) end
function _M.from_base64url(s) return unb64(s, true) end

return _M
