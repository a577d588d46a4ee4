-- wrk: post.lua with a new text in every request. POST a body file (env BODY_FILE) with the same
-- headers and client identities as post.lua, but the last message's text of each request ends in
-- " (ref R-T-N)": R names the run (env UNIQUE_RUN, else the clock), T the wrk thread, N counts the
-- thread's requests, which all its connections share. No two requests of a run carry the same
-- text, so a verdict cache keyed on texts cannot answer any of them; the rest of the body is the
-- file byte for byte, so the request stays the benign one post.lua sends.
-- BODY_FILE is either a template holding @@BENCH_REF@@ where the reference goes (what
-- `llm-firewall bench` hands over, made by loadgen.unique_template) or a plain chat request, in
-- which case the suffix goes before the first `"}]` after "messages": the end of the last message.
-- Prints stats as one WRKJSON line like post.lua.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
local PLACEHOLDER = "@@BENCH_REF@@"
local head, tail
local at = body:find(PLACEHOLDER, 1, true)
if at then
  head, tail = body:sub(1, at - 1), body:sub(at + #PLACEHOLDER)
else
  local q = body:find('"messages"', 1, true)
  repeat
    q = q and body:find('"%s*}%s*%]', q + 1)
  until not q or body:sub(q - 1, q - 1) ~= "\\"
  assert(q, "BODY_FILE: no " .. PLACEHOLDER .. " and no end of a messages list found")
  head, tail = body:sub(1, q - 1) .. " (ref ", ")" .. body:sub(q)
end
local run = os.getenv("UNIQUE_RUN") or tostring(os.time() % 1000000)
local threads = 0
setup = function(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end
local n = 0
request = function()
  n = n + 1
  local ip = string.format("198.18.%d.%d", math.floor(n / 250) % 250, n % 250)
  return wrk.format("POST", "/v1/chat/completions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer sk-bench-7f3a9c2e41d84b6aa0e5f1c2d3b4a596",
    ["X-Forwarded-For"] = ip,
    ["X-User-ID"] = "bench-" .. (n % 5000),
    ["X-Session-ID"] = "bench-session-" .. n,
  }, head .. run .. "-" .. (thread_number or 0) .. "-" .. n .. tail)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
