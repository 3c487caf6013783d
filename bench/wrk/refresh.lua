-- wrk script: POST /capture-session/refresh as the helper sends it, each
-- connection with its own session cookie.
--   wrk -t C -c C -d Ds -s refresh.lua URL -- COOKIE_FILE ORIGIN C
-- COOKIE_FILE has one `name=value` cookie per line (one line per session).
-- wrk's request() cannot tell connections apart, so run one thread per
-- connection (-t = -c): thread t then sends only the session cookie of line t
-- (with more lines than threads, thread t cycles through every C-th line).
-- Prints one JSON line with the counts, latency percentiles (microseconds) and
-- the status codes seen.

local thread_count = 0
local threads = {}

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  threads[#threads + 1] = thread
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

-- Status codes (with the contract's error code) seen by this thread, read by
-- done() through thread:get.
statuses = {}

function response(status, headers, body)
  local key = tostring(status)
  if status ~= 200 then
    -- The contract's error code, e.g. 401 session_expired (never a token).
    local code = body and string.match(body, '"error"%s*:%s*"([%w_]+)"')
    if code then key = key .. " " .. code end
  end
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%s":%d', status, n)
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, table.concat(parts, ",")))
end
