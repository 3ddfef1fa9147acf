local json = require "squall.json"
local db = require "squall.db"

describe("squall.json.encode", function()
  it("writes integers up to 2^53 exactly", function()
    assert.equal("[9007199254740992,-9007199254740992,0,123456789012345]",
                 json.encode({ 2 ^ 53, -2 ^ 53, 0, 123456789012345 }))
    assert.equal("[1,-1,9,10,-10,4294967296,-0]", json.encode({ 1, -1, 9, 10, -10, 2 ^ 32, -0.0 }))
  end)

  it("writes integers past 2^53 as round-trip doubles", function()
    assert.equal("[9007199254740994,1e+16,-1e+16]", json.encode({ 2 ^ 53 + 2, 1e16, -1e16 }))
  end)

  it("writes number keys as strings, in the same number format", function()
    local o = json.decode(json.encode({ [1] = "a", [2.5] = "b", [-3] = "c" }))
    assert.same({ ["1"] = "a", ["2.5"] = "b", ["-3"] = "c" }, o)
  end)

  it("writes doubles with the fewest digits that read back to the same value", function()
    assert.equal("[0.1,0.3333333333333333,1e+300,2.5]", json.encode({ 0.1, 1 / 3, 1e300, 2.5 }))
    local third = json.decode(json.encode(1 / 3))
    assert.equal(1 / 3, third)
  end)

  it("raises for NaN and infinities", function()
    assert.has_error(function() json.encode(0 / 0) end, "cannot encode NaN as JSON")
    assert.has_error(function() json.encode(math.huge) end, "cannot encode an infinite number as JSON")
    assert.has_error(function() json.encode({ x = -math.huge }) end, "cannot encode an infinite number as JSON")
  end)

  it("writes db.null and nil as null, keeping the key", function()
    assert.equal('{"a":null}', json.encode({ a = db.null }))
    assert.equal("null", json.encode(nil))
  end)

  it("escapes quotes, backslashes and control characters and keeps UTF-8", function()
    assert.equal('"a\\"b\\\\c\\n\\u0001 é😀"', json.encode('a"b\\c\n\1 é😀'))
  end)

  it("writes sequences as arrays, other tables as objects, marked empty tables as []", function()
    assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.equal("{}", json.encode({}))
    assert.equal("[]", json.encode(json.array()))
    local o = json.decode(json.encode({ [1] = "a", [3] = "c" }))
    assert.same({ ["1"] = "a", ["3"] = "c" }, o)
  end)

  it("encodes an empty object of a class whose metatable inherits through __index", function()
    -- The array mark is looked up in the metatable itself, never through its own __index.
    local Base = setmetatable({}, { __index = function(_, k) error("looked up " .. k) end })
    local Class = setmetatable({}, { __index = Base })
    assert.equal("{}", json.encode(setmetatable({}, Class)))
  end)

  it("encodes an empty result set as an empty array", function()
    assert.equal("[]", json.encode(db.query("SELECT 1 AS x FROM DUAL WHERE 1 = 0")))
  end)

  it("refuses functions and cycles with an error, not a crash", function()
    assert.has_error(function() json.encode({ f = print }) end)
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end)
  end)
end)
