-- Helpers for the e2e test app. Living in its own module, it also shows that the scripts
-- directory is on package.path.
local M = {}

M.name = "e2e_util"

-- A plain copy, so cjson sees ordinary keys whatever the host's table looks like.
function M.copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

function M.describe(req)
  return {
    method = req.method,
    path = req.path,
    query_string = req.query_string,
    query = M.copy(req.query),
    params = M.copy(req.params),
    headers = M.copy(req.headers),
    body = req.body,
    body_length = #req.body,
    http_version = req.http_version,
    remote_addr = req.remote_addr,
    remote_port = req.remote_port,
  }
end

function M.fail_in_module()
  error("boom from e2e_util") -- marker: module error
end

return M
