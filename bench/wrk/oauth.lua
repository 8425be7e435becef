-- The one wrk script of bench/compare.sh, for every scenario and both servers.
-- Each wrk thread runs its own copy; everything is configured by environment
-- variables, so that grantd and the peer get byte-for-byte the same load:
--
--   WRK_METHOD, WRK_PATH   the request line (default GET /)
--   WRK_BODY               a form body (sent as application/x-www-form-urlencoded)
--   WRK_AUTH               the Authorization header value, if any
--   WRK_TOKENS             refresh mode: a file of refresh tokens, one a line. Thread
--                          i of WRK_THREADS takes lines i, i+n, i+2n ... and sends each
--                          one once as grant_type=refresh_token&refresh_token=...;
--                          when its lines are used up it goes on with the tokens the
--                          responses rotated to (each also presented once only).
--   WRK_THREADS            the -t given to wrk (for the split of WRK_TOKENS)
--   WRK_STOP_AFTER         seconds: from then on no new request is started (delay()),
--                          so that every request sent is answered before wrk stops
--                          (wrk itself runs a few seconds longer). This makes the count
--                          of 2xx token responses exact: nothing is left in flight.
--   WRK_RESULT             file that done() writes its JSON summary to
--
-- Counts: sent (request() calls), responses, ok (2xx), non2xx; rate and the
-- time window come from a monotonic clock (LuaJIT FFI), not from wrk's runtime,
-- which includes the idle tail.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } grantd_bench_timespec;
int clock_gettime(int clk_id, grantd_bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("grantd_bench_timespec")
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads - 1)
end

local method = os.getenv("WRK_METHOD") or "GET"
local path = os.getenv("WRK_PATH") or "/"
local body = os.getenv("WRK_BODY")
local auth = os.getenv("WRK_AUTH")
local tokens_file = os.getenv("WRK_TOKENS")
local stop_after = tonumber(os.getenv("WRK_STOP_AFTER") or "")

local headers = {}
if auth and auth ~= "" then
  headers["Authorization"] = auth
end
if body or tokens_file then
  headers["Content-Type"] = "application/x-www-form-urlencoded"
end

-- per-thread state (each thread has its own Lua state)
sent, responses, ok, non2xx, exhausted = 0, 0, 0, 0, 0
t_first, t_last = 0, 0
first_error = ""
local static_request
local queue, head, tail = {}, 1, 0
local deadline
-- wrk calls request() once in thread 0 right after init() to check the request
-- (script_verify_request); that one is never sent, so it is not counted.
local verify_call = false

function init(args)
  verify_call = (tid == 0)
  if tokens_file then
    local n = tonumber(os.getenv("WRK_THREADS") or "1")
    local i = 0
    for line in io.lines(tokens_file) do
      if line ~= "" then
        if i % n == tid then
          tail = tail + 1
          queue[tail] = line
        end
        i = i + 1
      end
    end
  else
    static_request = wrk.format(method, path, headers, body)
  end
end

if stop_after then
  function delay()
    if deadline and now() >= deadline then
      return 3600000 -- idle until wrk stops: no request in flight at the end
    end
    return 0
  end
end

function request()
  if verify_call then
    verify_call = false
    return static_request or wrk.format("POST", path, headers, "grant_type=refresh_token&refresh_token=x")
  end
  local t = now()
  if sent == 0 then
    t_first = t
    if stop_after then
      deadline = t + stop_after
    end
  end
  sent = sent + 1
  if static_request then
    return static_request
  end
  local token
  if head <= tail then
    token = queue[head]
    queue[head] = nil
    head = head + 1
  else
    exhausted = exhausted + 1
    token = "exhausted"
  end
  return wrk.format("POST", path, headers, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, hdrs, resp_body)
  responses = responses + 1
  t_last = now()
  if status >= 200 and status < 300 then
    ok = ok + 1
    if tokens_file then
      local next_token = resp_body:match('"refresh_token"%s*:%s*"([^"]+)"')
      if next_token then
        tail = tail + 1
        queue[tail] = next_token
      end
    end
  else
    non2xx = non2xx + 1
    if first_error == "" then
      first_error = tostring(status) .. " " .. string.sub(resp_body or "", 1, 200)
    end
  end
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local total = { sent = 0, responses = 0, ok = 0, non2xx = 0, exhausted = 0 }
  local t0, t1 = math.huge, 0
  local err = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(total) do
      total[k] = total[k] + thread:get(k)
    end
    local first, last = thread:get("t_first"), thread:get("t_last")
    if first > 0 and first < t0 then t0 = first end
    if last > t1 then t1 = last end
    if err == "" then err = thread:get("first_error") end
  end
  local elapsed = (t1 > t0) and (t1 - t0) or 0
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local out = string.format(
    '{"sent":%d,"responses":%d,"ok":%d,"non2xx":%d,"exhausted":%d,"socket_errors":%d,' ..
    '"elapsed_s":%.4f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"first_error":%s}\n',
    total.sent, total.responses, total.ok, total.non2xx, total.exhausted, socket_errors,
    elapsed, elapsed > 0 and total.responses / elapsed or 0,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    json_string(err))
  local path_out = os.getenv("WRK_RESULT")
  if path_out then
    local f = assert(io.open(path_out, "w"))
    f:write(out)
    f:close()
  else
    io.write(out)
  end
end
