-- squall.crypto, squall.jwt and squall.cookie against published test vectors (FIPS 180, RFC 4231,
-- RFC 4648, jwt.io) and the attacks they must refuse. Runs inside the host (`squall test`).
local crypto = require "squall.crypto"
local jwt = require "squall.jwt"
local cookie = require "squall.cookie"

describe("squall.crypto", function()
  it("computes the standard digests (FIPS 180-4, RFC 1321 vectors)", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", crypto.hex(crypto.sha256("abc")))
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", crypto.hex(crypto.sha1("abc")))
    assert.equal("d41d8cd98f00b204e9800998ecf8427e", crypto.hex(crypto.md5("")))
    assert.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                 .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                 crypto.hex(crypto.sha512("abc")))
    assert.equal(32, #crypto.sha256(("x"):rep(100000)))
  end)

  it("computes HMAC (RFC 4231 test cases 1 and 2)", function()
    assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                 crypto.hex(crypto.hmac_sha256(("\11"):rep(20), "Hi There")))
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                 crypto.hex(crypto.hmac("sha256", "Jefe", "what do ya want for nothing?")))
    assert.equal(32, #crypto.hmac_sha256("", ""))
  end)

  it("refuses an unknown algorithm by name", function()
    assert.has_error(function() crypto.digest("sha3", "x") end)
    assert.has_error(function() crypto.hmac("none", "k", "x") end)
  end)

  it("gives random bytes of the length asked, different each time", function()
    local a, b = crypto.random_bytes(32), crypto.random_bytes(32)
    assert.equal(32, #a)
    assert.not_equal(a, b)
    assert.equal("", crypto.random_bytes(0))
    assert.has_error(function() crypto.random_bytes(-1) end)
    assert.has_error(function() crypto.random_bytes(1e9) end)
  end)

  it("compares in constant time and exactly", function()
    assert.is_true(crypto.equals("abc", "abc"))
    assert.is_false(crypto.equals("abc", "abd"))
    assert.is_false(crypto.equals("abc", "abcd"))
    assert.is_true(crypto.equals("", ""))
    assert.is_false(crypto.equals("a\0b", "a\0c"))
  end)

  it("encodes and decodes hex", function()
    assert.equal("00ff10", crypto.hex("\0\255\16"))
    assert.equal("\0\255\16", crypto.from_hex("00FF10"))
    assert.is_nil(crypto.from_hex("abc"))
    local v, err = crypto.from_hex("zz")
    assert.is_nil(v)
    assert.matches("hex digit", err)
  end)

  it("encodes base64 as RFC 4648 section 10 gives it", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(vectors) do
      assert.equal(enc, crypto.base64(plain))
      assert.equal(plain, crypto.from_base64(enc))
      assert.equal((enc:gsub("=", "")), crypto.base64url(plain))
      assert.equal(plain, crypto.from_base64url((enc:gsub("=", ""))))
      assert.equal(plain, crypto.from_base64url(enc))   -- padding is tolerated in base64url
    end
    assert.equal("+/8=", crypto.base64("\251\255"))
    assert.equal("-_8", crypto.base64url("\251\255"))
  end)

  it("decodes base64 strictly: one value has one encoding", function()
    for _, bad in ipairs({ "Zm9v\n", "Zg=", "Zg", "Zh==", "Z===", "Zm9v YmFy", "-_8=", "Zm9v=" }) do
      assert.is_nil(crypto.from_base64(bad), bad)
    end
    for _, bad in ipairs({ "+/8", "Zh", "Z", "Zm9v*" }) do
      assert.is_nil(crypto.from_base64url(bad), bad)
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, crypto.from_base64(crypto.base64(all)))
    assert.equal(all, crypto.from_base64url(crypto.base64url(all)))
  end)
end)

describe("squall.jwt", function()
  local secret = "your-256-bit-secret"

  it("verifies the token jwt.io publishes (interoperates with other libraries)", function()
    local token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    local claims = assert(jwt.verify(token, secret))
    assert.equal("John Doe", claims.name)
    assert.equal("1234567890", claims.sub)
    assert.equal(1516239022, claims.iat)
  end)

  it("signs tokens it verifies, with iat and exp", function()
    local token = jwt.sign({ sub = 42, role = "admin" }, secret, { expires_in = 60, now = 1000 })
    local claims = assert(jwt.verify(token, secret, { now = 1059 }))
    assert.same({ sub = 42, role = "admin", iat = 1000, exp = 1060 }, claims)
  end)

  it("refuses expired, early, altered, foreign and unsigned tokens", function()
    local token = jwt.sign({ sub = 1, nbf = 2000 }, secret, { expires_in = 60, now = 2000 })
    assert.same({ nil, "expired" }, { jwt.verify(token, secret, { now = 2060 }) })
    assert.truthy(jwt.verify(token, secret, { now = 2060, leeway = 5 }))
    assert.same({ nil, "not yet valid" }, { jwt.verify(token, secret, { now = 1990 }) })
    assert.same({ nil, "bad signature" }, { jwt.verify(token, "another secret", { now = 2010 }) })
    local h, p, s = token:match("^(.-)%.(.-)%.(.*)$")
    local forged = crypto.base64url('{"sub":2,"nbf":2000,"iat":2000,"exp":2060}')
    assert.same({ nil, "bad signature" }, { jwt.verify(h .. "." .. forged .. "." .. s, secret, { now = 2010 }) })
    local none = crypto.base64url('{"alg":"none","typ":"JWT"}')
    assert.is_nil(jwt.verify(none .. "." .. p .. ".", secret))   -- unsigned: refused outright
    assert.same({ nil, "unsupported algorithm" }, { jwt.verify(none .. "." .. p .. "." .. s, secret) })
    assert.same({ nil, "unsupported algorithm" },
                { jwt.verify(crypto.base64url('{"alg":"HS512"}') .. "." .. p .. "." .. s, secret) })
    for _, bad in ipairs({ "", "a.b", "a.b.c.d", h .. "." .. p, "***.***.***", 42 }) do
      local ok, err = jwt.verify(bad, secret)
      assert.is_nil(ok)
      assert.is_string(err)
    end
  end)

  it("reads Bearer and Token authorization headers", function()
    assert.equal("abc.def.ghi", jwt.from_header("Bearer abc.def.ghi"))
    assert.equal("abc.def.ghi", jwt.from_header("Token abc.def.ghi"))
    assert.is_nil(jwt.from_header("Basic dXNlcg=="))
    assert.is_nil(jwt.from_header(nil))
  end)

  it("insists on a secret", function()
    assert.has_error(function() jwt.sign({}, "") end)
    assert.has_error(function() jwt.verify("a.b.c", nil) end)
  end)
end)

describe("squall.cookie", function()
  it("writes Set-Cookie values with safe defaults and every attribute", function()
    assert.equal("sid=abc; Path=/; HttpOnly; SameSite=Lax", cookie.serialize("sid", "abc"))
    assert.equal("sid=abc; Path=/app; Domain=example.com; Max-Age=3600; Expires=Thu, 01 Jan 1970 00:16:40 GMT; "
                 .. "Secure; SameSite=Strict",
                 cookie.serialize("sid", "abc", { path = "/app", domain = "example.com", max_age = 3600,
                                                   expires = 1000, secure = true, http_only = false,
                                                   same_site = "strict" }))
    assert.matches("^sid=; Path=/; Max%-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax$",
                   cookie.delete("sid"))
  end)

  it("refuses names and values that would inject attributes or other cookies", function()
    for _, v in ipairs({ "a;b", "a b", "a,b", 'a"b', "a\\b", "a\r\nSet-Cookie: x=y", "\0" }) do
      assert.has_error(function() cookie.serialize("sid", v) end)
    end
    for _, n in ipairs({ "", "a=b", "a;b", "a b" }) do
      assert.has_error(function() cookie.serialize(n, "v") end)
    end
    for _, bad in ipairs({ "/; Secure", "/a b", "" }) do
      assert.has_error(function() cookie.serialize("sid", "v", { path = bad }) end)
    end
    assert.has_error(function() cookie.serialize("sid", "v", { domain = "example.com; HttpOnly" }) end)
    assert.has_error(function() cookie.serialize("sid", "caf\195\169") end)     -- not a cookie-octet
    assert.has_error(function() cookie.serialize("sid", "v", { same_site = "none" }) end)
    assert.has_error(function() cookie.serialize("sid", "v", { same_site = "sometimes" }) end)
  end)

  it("signs values and refuses altered or foreign ones", function()
    local s = cookie.sign("user-42", "k1")
    assert.equal("user-42", cookie.unsign(s, "k1"))
    assert.is_nil(cookie.unsign(s, "k2"))
    assert.is_nil(cookie.unsign("user-43" .. s:sub(8), "k1"))
    assert.is_nil(cookie.unsign("user-42", "k1"))
    assert.is_nil(cookie.unsign(nil, "k1"))
    assert.has_error(function() cookie.sign("v", "") end)
  end)

  it("does not take a JWT signed with the same secret for a signed cookie", function()
    local token = jwt.sign({ sub = 1 }, "shared secret")
    local h, p, s = token:match("^(.-)%.(.-)%.(.*)$")
    assert.is_nil(cookie.unsign(h .. "." .. p .. "." .. s, "shared secret"))
  end)
end)
