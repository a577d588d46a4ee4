-- wrk: POST a body file (env BODY_FILE); request n comes from identity n % IDENTITIES, and each
-- identity has its own client address, user and session, so per-identity state (rate limits,
-- strikes, sessions) grows with IDENTITIES. Used by `llm-firewall bench --identities N` to check
-- that the firewall's memory stays bounded. Prints stats as one WRKJSON line like post.lua.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
local identities = tonumber(os.getenv("IDENTITIES") or "100000")
local n = 0
request = function()
  local i = n % identities
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  return wrk.format("POST", "/v1/chat/completions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer sk-bench-7f3a9c2e41d84b6aa0e5f1c2d3b4a596",
    ["X-Forwarded-For"] = ip,
    ["X-User-ID"] = "mem-user-" .. i,
    ["X-Session-ID"] = "mem-session-" .. i,
  }, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
