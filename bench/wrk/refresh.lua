-- wrk script: POST /capture-session/refresh as the helper sends it, each
-- request carrying one of many session cookies.
--   wrk -t T -c C -d Ds -s refresh.lua URL -- COOKIE_FILE ORIGIN T
-- COOKIE_FILE has one `name=value` cookie per line (one line per session).
-- Thread t takes every T-th line; its connections cycle through them, so C
-- connections over C sessions keep C different sessions in flight.
-- Prints one JSON line with the counts and latency percentiles (microseconds).

local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local cookies = {}
local next_cookie = 0
local origin = nil

function init(args)
  local file, wanted_origin = args[1], args[2]
  origin = wanted_origin
  local index = tonumber(thread_index)
  local all = {}
  for line in io.lines(file) do
    if #line > 0 then all[#all + 1] = line end
  end
  local total = tonumber(args[3]) or 1
  for i = 1, #all do
    if (i - 1) % total == index then cookies[#cookies + 1] = all[i] end
  end
  if #cookies == 0 then
    error("no session cookies for thread " .. index)
  end
end

function request()
  next_cookie = next_cookie % #cookies + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Capture-Session"] = "1",
    ["Origin"] = origin,
    ["Cookie"] = cookies[next_cookie],
  }, "{}")
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
