-- squall.escape_html (core.escape_html in C): text for HTML content and attribute values.
local squall = require "squall"

describe("squall.escape_html", function()
  it("escapes the five characters HTML gives meaning to", function()
    assert.equal("&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;",
                 squall.escape_html([[<script>alert("x" & 'y')</script>]]))
  end)

  it("returns text without them as it is, multi-byte characters and NULs included", function()
    assert.equal("fortune: いろは", squall.escape_html("fortune: いろは"))
    assert.equal("a\0b&lt;", squall.escape_html("a\0b<"))
    assert.equal("", squall.escape_html(""))
  end)

  it("returns its first argument, not whatever was passed after it", function()
    assert.equal("abc", require("squall.core").escape_html("abc", "extra"))
  end)

  it("makes any other value a string first", function()
    assert.equal("42", squall.escape_html(42))
    assert.equal("nil", squall.escape_html(nil))
    assert.equal("true", squall.escape_html(true))
  end)
end)
