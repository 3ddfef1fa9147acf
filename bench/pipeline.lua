-- HTTP/1.1 pipelining for wrk, TechEmpower style:
--   wrk ... -s bench/pipeline.lua http://host:port/plaintext -- 16
-- init() builds DEPTH copies of the request and request() sends them in one write.
-- Note: wrk counts every response, but records one latency sample per batch.
local req

init = function(args)
  local depth = tonumber(args[1]) or 1
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
