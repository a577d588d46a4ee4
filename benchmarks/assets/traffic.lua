-- wrk: POST the bodies of a prepared file (env BODIES_FILE, one JSON body per line, written by
-- benchmarks/traffic.py); request k sends line k % lines with "@@BENCH_REF@@" replaced by
-- "RUN-k", so no two requests of a run (nor of runs with different RUN numbers) carry the same
-- text. Request k comes from an identity of its own (traffic.identity: IPv6 address with its own
-- /64, API key, user, session), or with IDENTITIES=N from identity k % N (the memory run).
-- THREADS must equal wrk's -t so the threads share out the k. Answers are counted by status;
-- prints one WRKJSON line.
local PLACEHOLDER = "@@BENCH_REF@@"
local heads, tails = {}, {}
for line in io.lines(os.getenv("BODIES_FILE")) do
  if #line > 0 then
    local at = line:find(PLACEHOLDER, 1, true)
    heads[#heads + 1] = at and line:sub(1, at - 1) or line
    tails[#tails + 1] = at and line:sub(at + #PLACEHOLDER) or false
  end
end
assert(#heads > 0, "BODIES_FILE holds no bodies")
local run = tonumber(os.getenv("RUN") or "0")
local identities = tonumber(os.getenv("IDENTITIES") or "0")
local nthreads = tonumber(os.getenv("THREADS") or "1")

local threads = {}
setup = function(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

local n = 0
statuses = {}
request = function()
  local k = n * nthreads + (tid or 0)
  n = n + 1
  local i = identities > 0 and k % identities or k
  local line = k % #heads + 1
  local body = heads[line]
  if tails[line] then
    body = body .. run .. "-" .. k .. tails[line]
  end
  return wrk.format("POST", "/v1/chat/completions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = string.format("Bearer sk-bench-%d-%08d", run, i),
    ["X-Forwarded-For"] = string.format("fd00:%x:%x:%x::1", run, math.floor(i / 65536) % 65536, i % 65536),
    ["X-User-ID"] = "bench-user-" .. run .. "-" .. i,
    ["X-Session-ID"] = "bench-session-" .. run .. "-" .. i,
  }, body)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    parts[#parts + 1] = string.format('"%d":%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d,"status":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ",")))
end
