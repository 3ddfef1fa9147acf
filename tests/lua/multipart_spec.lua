-- req:multipart(): multipart/form-data fields and files, and the malformed bodies it refuses.
local squall = require "squall"
local t = require "squall.test"
local cjson = require "cjson"

local B = "----squallBoundary7MA4YWxk"

local function body(parts, opts)
  local out = { opts and opts.preamble or "" }
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. B .. "\r\n" .. p .. "\r\n"
  end
  out[#out + 1] = "--" .. B .. "--" .. (opts and opts.epilogue or "\r\n")
  return table.concat(out)
end

local function field(name, value)
  return 'Content-Disposition: form-data; name="' .. name .. '"\r\n\r\n' .. value
end

local function file(name, filename, ctype, data)
  return 'Content-Disposition: form-data; name="' .. name .. '"; filename="' .. filename .. '"\r\n'
         .. "Content-Type: " .. ctype .. "\r\n\r\n" .. data
end

local app = squall.app()
app:post("/upload", function(req)
  local form = req:multipart({ max_parts = tonumber(req.query.max_parts) })
  local files = {}
  for _, p in ipairs(form.parts) do
    if p.filename then files[#files + 1] = { name = p.name, filename = p.filename, type = p.content_type, size = #p.data } end
  end
  return { fields = form.fields, files = files,
           first = form.files.doc and form.files.doc.data or cjson.null }
end)

local function post(b, ctype, path)
  return t.dispatch(app, "POST", path or "/upload",
                    { body = b, headers = { ["Content-Type"] = ctype or ("multipart/form-data; boundary=" .. B) } })
end

describe("req:multipart()", function()
  it("reads fields and files, binary data intact", function()
    local binary = "\0\1\2\r\n--not-the-boundary\r\n\255"
    local res = post(body({ field("title", "Hello, world"), file("doc", "a b.bin", "application/x-thing", binary),
                            field("empty", "") }))
    assert.equal(200, res.status, res.body)
    local doc = cjson.decode(res.body)
    assert.same({ title = "Hello, world", empty = "" }, doc.fields)
    assert.same({ { name = "doc", filename = "a b.bin", type = "application/x-thing", size = #binary } }, doc.files)
    assert.equal(binary, doc.first)
  end)

  it("gathers repeated fields into an array and keeps every file in parts", function()
    local res = post(body({ field("tag", "a"), field("tag", "b"), field("tag", "c"),
                            file("doc", "1.txt", "text/plain", "one"), file("doc", "2.txt", "text/plain", "two") }))
    local doc = cjson.decode(res.body)
    assert.same({ "a", "b", "c" }, doc.fields.tag)
    assert.equal(2, #doc.files)
    assert.equal("one", doc.first)
  end)

  it("accepts a quoted boundary, any case of its name, a preamble and an epilogue", function()
    local b = body({ field("x", "1") }, { preamble = "ignore me\r\n", epilogue = "\r\ntrailing words" })
    assert.equal(200, post(b, 'multipart/form-data; charset=utf-8; BOUNDARY="' .. B .. '"').status)
  end)

  it("decodes quoted and RFC 5987 file names", function()
    local q = 'Content-Disposition: form-data; name="f"; filename="say \\"hi\\".txt"\r\n\r\nx'
    local ext = "Content-Disposition: form-data; name=\"g\"; filename*=UTF-8'fr'caf%C3%A9.txt\r\n\r\ny"
    local doc = cjson.decode(post(body({ q, ext })).body)
    assert.equal('say "hi".txt', doc.files[1].filename)
    assert.equal("caf\195\169.txt", doc.files[2].filename)
    assert.equal("application/octet-stream", doc.files[2].type)
  end)

  it("answers 415 to a body that is not multipart", function()
    assert.equal(415, post("a=1", "application/x-www-form-urlencoded").status)
    assert.equal(415, post("x", "multipart/form-data").status)          -- no boundary
  end)

  it("answers 400 to malformed bodies", function()
    local cases = {
      ["truncated inside a part"] = "--" .. B .. "\r\n" .. field("x", "1"),
      ["no boundary at all"] = "just text",
      ["headers that never end"] = "--" .. B .. "\r\nContent-Disposition: form-data; name=\"x\"",
      ["a part without a name"] = body({ "Content-Disposition: form-data\r\n\r\nx" }),
      ["a part without a disposition"] = body({ "Content-Type: text/plain\r\n\r\nx" }),
      ["a malformed part header"] = body({ "no colon here\r\n\r\nx" }),
      ["an unterminated quote"] = body({ 'Content-Disposition: form-data; name="x\r\n\r\nx' }),
      ["garbage after the boundary"] = "--" .. B .. "garbage\r\n" .. field("x", "1") .. "\r\n--" .. B .. "--",
    }
    for why, b in pairs(cases) do
      local res = post(b)
      assert.equal(400, res.status, why .. ": " .. res.body)
      assert.matches("malformed multipart", res.body, 1, true)
    end
  end)

  it("enforces the part count and the part header size", function()
    local many = {}
    for i = 1, 5 do many[i] = field("f" .. i, "v") end
    assert.equal(200, post(body(many), nil, "/upload?max_parts=5").status)
    local res = post(body(many), nil, "/upload?max_parts=4")
    assert.equal(400, res.status)
    assert.matches("more than 4 parts", res.body, 1, true)
    local fat = "Content-Disposition: form-data; name=\"x\"\r\nX-Pad: " .. ("p"):rep(9000) .. "\r\n\r\nv"
    assert.matches("part headers over", post(body({ fat })).body, 1, true)
  end)
end)
