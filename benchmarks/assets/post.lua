-- Reference baseline: an unmodified copy of the project's public performance yardstick
-- (shared/bench/post.lua), shipped so `llm-firewall bench` can run anywhere.
-- wrk: POST a body file (env BODY_FILE), each request from a different client address and user,
-- so per-client rate limits see many ordinary clients; prints stats as one JSON line.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
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
  }, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
