-- squall.password: storing passwords with argon2id (libsodium), hashed on a thread of libuv's
-- pool: the request waits (yields) for its hash while the worker serves the others, where a hash
-- on the worker thread would stall every request of that worker for its whole duration.
--
--   local password = require "squall.password"
--   local stored = password.hash(pw)                    -- "$argon2id$v=19$m=65536,t=2,p=1$..."
--   if password.verify(pw, stored) then ... end
--   if password.needs_rehash(stored) then stored = password.hash(pw) end   -- after a login
--
-- The stored string carries its own salt and parameters, so raising them later keeps old hashes
-- verifiable. Defaults: libsodium's "interactive" limits (2 passes over 64 MiB, about 50-100 ms
-- on one core); each hash in flight holds that memory on a pool thread (4 threads by default,
-- UV_THREADPOOL_SIZE to change).

local core = require "squall.core"

local type, error, sub = type, error, string.sub

local _M = {}

_M.OPS = core.password_ops
_M.MEM = core.password_mem

-- Too many hashes are queued already (64 in the process): the request gets a 503 rather than
-- a place at the end of a queue that only grows.
local function busy_or_raise(fn, err)
  if err == "busy" then
    error(require("squall").http_error(503, "too many password hashes in progress; try again"), 0)
  end
  error(fn .. ": " .. err, 3)
end

local function params(opts)
  if opts == nil then return _M.OPS, _M.MEM end
  if type(opts) ~= "table" then error("squall.password: options must be a table { ops =, mem = }", 3) end
  return opts.ops or _M.OPS, opts.mem or _M.MEM
end

-- Returns the argon2id string to store. opts: ops (passes, 1-64), mem (bytes, 8 KiB - 4 GiB).
function _M.hash(password, opts)
  if type(password) ~= "string" then error("squall.password.hash: the password must be a string", 2) end
  local ops, mem = params(opts)
  local stored, err = core.password_hash(password, ops, mem)
  if not stored then busy_or_raise("squall.password.hash", err) end
  return stored
end

-- A hash with the default parameters, verified against when there is nothing real to verify:
-- `verify(pw, user and user.hash)` then takes as long for an unknown account as for a known one,
-- and its timing does not tell which accounts exist.
local DUMMY = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzYWx0$7EyrGZB8NMLWCW5/v+gUJKswqMw4d67U75HwRcPfPvY"

-- Whether `password` matches `stored` (an argon2id or argon2i string). Anything else stored,
-- nil included, is no match.
function _M.verify(password, stored)
  if type(password) ~= "string" then error("squall.password.verify: the password must be a string", 2) end
  if type(stored) ~= "string" or sub(stored, 1, 8) ~= "$argon2i" then
    local _, err = core.password_verify(password, DUMMY)
    if err then busy_or_raise("squall.password.verify", err) end
    return false
  end
  local ok, err = core.password_verify(password, stored)
  if ok == nil then busy_or_raise("squall.password.verify", err) end
  return ok
end

-- Whether `stored` was made with other parameters than `opts` (or the defaults), or is not
-- argon2id at all: hash the password again after a successful verify.
function _M.needs_rehash(stored, opts)
  -- libsodium compares the parameters only: an argon2i string with the same ones would pass.
  if type(stored) ~= "string" or sub(stored, 1, 10) ~= "$argon2id$" then return true end
  local ops, mem = params(opts)
  return core.password_needs_rehash(stored, ops, mem)
end

return _M
