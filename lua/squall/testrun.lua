-- Runs busted inside the host for `squall test`, in a host task, so that spec bodies and hooks
-- may call every yielding function directly. Returns the process exit code.
local _M = {}

function _M.run(args)
  -- busted's runner reads its command line from the global `arg`.
  arg = { [0] = "squall test" }
  for i = 1, #args do arg[i] = args[i] end
  -- It ends by calling os.exit; inside the host that would take the server down without
  -- closing anything, so the call becomes an error carrying the code.
  local Exit = {}
  local os_exit = os.exit
  os.exit = function(code)
    if code == true or code == nil then code = 0 elseif code == false then code = 1 end
    error(setmetatable({ code = tonumber(code) or 1 }, Exit), 0)
  end
  local ok, err = pcall(function() return require("busted.runner")({ standalone = false }) end)
  os.exit = os_exit
  if ok then return 0 end
  if getmetatable(err) == Exit then return err.code end
  if err ~= nil then io.stderr:write("squall test: ", tostring(err), "\n") end
  return 1
end

return _M
