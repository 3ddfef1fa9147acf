/* JSON encoder.
 *
 * Numbers: integral values within 2^53 print as integers; other finite numbers print with the
 * fewest digits (15 to 17) that read back to the same double. NaN and infinities raise.
 * Tables: a table whose metatable has __jsontype = "array" is an array even when empty; one whose
 * keys are exactly 1..n is an array; any other is an object, number keys written as strings.
 * The NULL light userdata (cjson.null, db.null) is null. Strings are escaped per RFC 8259 and
 * otherwise copied byte for byte (UTF-8 stays UTF-8). */
#include "lua_json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define SQ_JSON_MAX_DEPTH 1000

/* Writes d into out[32]; returns where the text starts (it ends at out + 32). */
static const char *format_number(lua_State *L, char *out, double d)
{
  char *end = out + 32;
  if (!isfinite(d))
    luaL_error(L, "cannot encode %s as JSON", isnan(d) ? "NaN" : "an infinite number");
  if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
    /* Ids and counts are most of what handlers send: digits by hand, printf costs 10x more. */
    char *p = end;
    uint64_t u = (uint64_t)fabs(d);
    do {
      *--p = (char)('0' + u % 10);
      u /= 10;
    } while (u);
    if (signbit(d))
      *--p = '-';
    return p;
  }
  char tmp[32];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d)
      break;
  }
  return memcpy(end - n, tmp, (size_t)n);
}

static void put_number(lua_State *L, sq_buf_t *b, double d)
{
  char out[32];
  const char *p = format_number(L, out, d);
  sq_buf_append(b, p, (size_t)(out + sizeof out - p));
}

static void put_string(sq_buf_t *b, const char *s, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  sq_buf_reserve(b, len + 2);
  b->data[b->len++] = '"';
  size_t start = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    sq_buf_append(b, s + start, i - start);
    char esc[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      n = 6;
    }
    sq_buf_append(b, esc, n);
    start = i + 1;
  }
  sq_buf_append(b, s + start, len - start);
  sq_buf_append(b, "\"", 1);
}

/* n > 0 when the table at idx is an array of n elements (keys exactly 1..n); 0 when it is empty;
 * -1 when it is an object. */
static int array_length(lua_State *L, int idx)
{
  int n = 0;
  double max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return -1;
    }
    double k = lua_tonumber(L, -1);
    if (k < 1 || k != floor(k)) {
      lua_pop(L, 1);
      return -1;
    }
    if (k > max)
      max = k;
    n++;
  }
  return max == n ? n : -1;
}

static int marked_array(lua_State *L, int idx)
{
  if (!lua_getmetatable(L, idx))
    return 0;
  /* rawget: a metatable's own __index must not run (or raise) inside the encoder. */
  lua_pushliteral(L, "__jsontype");
  lua_rawget(L, -2);
  int yes = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "array") == 0;
  lua_pop(L, 2);
  return yes;
}

static void encode(lua_State *L, sq_buf_t *b, int idx, int depth);

static void encode_table(lua_State *L, sq_buf_t *b, int idx, int depth)
{
  if (depth > SQ_JSON_MAX_DEPTH)
    luaL_error(L, "cannot encode JSON nested deeper than %d levels (a cycle?)", SQ_JSON_MAX_DEPTH);
  luaL_checkstack(L, 4, "JSON nesting");
  int n = array_length(L, idx);
  if (n > 0 || (n == 0 && marked_array(L, idx))) {
    sq_buf_append(b, "[", 1);
    for (int i = 1; i <= n; i++) {
      if (i > 1)
        sq_buf_append(b, ",", 1);
      lua_rawgeti(L, idx, i);
      encode(L, b, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
    }
    sq_buf_append(b, "]", 1);
    return;
  }
  sq_buf_append(b, "{", 1);
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!first)
      sq_buf_append(b, ",", 1);
    first = 0;
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      size_t len;
      const char *k = lua_tolstring(L, -2, &len);
      put_string(b, k, len);
    } else if (kt == LUA_TNUMBER) {
      char out[32];
      const char *p = format_number(L, out, lua_tonumber(L, -2));
      put_string(b, p, (size_t)(out + sizeof out - p));
    } else {
      luaL_error(L, "cannot encode a table key of type %s as JSON", lua_typename(L, kt));
    }
    sq_buf_append(b, ":", 1);
    encode(L, b, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  sq_buf_append(b, "}", 1);
}

static void encode(lua_State *L, sq_buf_t *b, int idx, int depth)
{
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    sq_buf_append(b, "null", 4);
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      sq_buf_append(b, "true", 4);
    else
      sq_buf_append(b, "false", 5);
    break;
  case LUA_TNUMBER:
    put_number(L, b, lua_tonumber(L, idx));
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    put_string(b, s, len);
    break;
  }
  case LUA_TTABLE:
    encode_table(L, b, idx, depth);
    break;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      sq_buf_append(b, "null", 4);
      break;
    }
    /* fall through */
  default:
    luaL_error(L, "cannot encode a %s as JSON", luaL_typename(L, idx));
  }
}

/* One buffer per state, reused: encoding runs no Lua code, so it cannot be re-entered, and an
 * error mid-way (luaL_error longjmps) leaves only stale bytes that the next call overwrites. */
static int buf_gc(lua_State *L)
{
  sq_buf_free(lua_touserdata(L, 1));
  return 0;
}

static int l_json_encode(lua_State *L)
{
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  sq_buf_t *b = lua_touserdata(L, lua_upvalueindex(1));
  b->len = 0;
  encode(L, b, 1, 0);
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  return 1;
}

void sq_lua_open_json(lua_State *L)
{
  sq_buf_t *b = lua_newuserdata(L, sizeof *b);
  memset(b, 0, sizeof *b);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, buf_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, l_json_encode, 1);
  lua_setfield(L, -2, "json_encode");
}
