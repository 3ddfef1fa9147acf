-- squall.password: argon2id through libsodium, checked against the reference implementation
-- (the argon2 CLI, Debian's package of phc-winner-argon2).
local password = require "squall.password"

-- echo -n "correct horse" | argon2 somesaltsalt -id -t 2 -m 16 -p 1 -e
local REFERENCE = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzYWx0$7EyrGZB8NMLWCW5/v+gUJKswqMw4d67U75HwRcPfPvY"

local function cli(pw, args)
  local p = io.popen("printf '%s' '" .. pw .. "' | argon2 " .. args .. " -e 2>/dev/null")
  local out = p and p:read("*l")
  if p then p:close() end
  return out
end

describe("squall.password", function()
  it("verifies a hash made by the reference implementation", function()
    assert.is_true(password.verify("correct horse", REFERENCE))
    assert.is_false(password.verify("correct horse!", REFERENCE))
    assert.is_false(password.verify("", REFERENCE))
  end)

  it("agrees with the reference CLI on fresh salts, argon2id and argon2i", function()
    local id = cli("tr0ub4dor", "saltsaltsalt16by -id -t 3 -m 12 -p 1")
    local i = cli("tr0ub4dor", "othersaltsalt16b -i -t 3 -m 12 -p 1")
    assert.matches("^%$argon2id%$", id)
    assert.matches("^%$argon2i%$", i)
    assert.is_true(password.verify("tr0ub4dor", id))
    assert.is_true(password.verify("tr0ub4dor", i))
    assert.is_false(password.verify("tr0ub4dor ", id))
  end)

  it("hashes with a fresh salt each time, into strings the reference CLI's format reads", function()
    local a, b = password.hash("s3cret"), password.hash("s3cret")
    assert.not_equal(a, b)
    assert.matches("^%$argon2id%$v=19%$m=65536,t=2,p=1%$", a)
    assert.is_true(password.verify("s3cret", a))
    assert.is_true(password.verify("s3cret", b))
    assert.is_false(password.verify("s3cret2", a))
    assert.is_true(password.verify("", password.hash("")))
    local binary = "pass\0word\255"
    assert.is_true(password.verify(binary, password.hash(binary)))
    assert.is_false(password.verify("pass", password.hash(binary)))
  end)

  it("tells when a stored hash should be remade with the current parameters", function()
    local cheap = password.hash("pw", { ops = 1, mem = 8192 * 1024 })
    assert.matches("m=8192,t=1", cheap)
    assert.is_true(password.verify("pw", cheap))
    assert.is_true(password.needs_rehash(cheap))
    assert.is_false(password.needs_rehash(password.hash("pw")))
    assert.is_false(password.needs_rehash(cheap, { ops = 1, mem = 8192 * 1024 }))
    assert.is_true(password.needs_rehash(cli("pw", "saltsaltsalt16by -i -t 2 -m 16 -p 1")))
    assert.is_true(password.needs_rehash(nil))
  end)

  it("treats anything stored that is not a hash as no match", function()
    for _, stored in ipairs({ "", "plaintext", "$argon2id$garbage", ("x"):rep(500), 42 }) do
      assert.is_false(password.verify("plaintext", stored))
    end
    assert.is_false(password.verify("pw", nil))
  end)

  it("refuses bad arguments before any work starts", function()
    assert.has_error(function() password.hash(nil) end)
    assert.has_error(function() password.hash("pw", { ops = 0 }) end)
    assert.has_error(function() password.hash("pw", { mem = 100 }) end)
    assert.has_error(function() password.verify(5, REFERENCE) end)
  end)

  it("cannot wait inside a C boundary, and says so", function()
    local ok, err = pcall(function()
      table.sort({ 2, 1 }, function(a, b) password.hash("x"); return a < b end)
    end)
    assert.is_false(ok)
    assert.matches("squall.password.hash", tostring(err))
  end)
end)
