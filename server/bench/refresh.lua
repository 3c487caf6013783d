-- wrk script: POST /capture-session/refresh, round-robin over the session
-- cookies in the file given after `--` (one `name=value` per line).
-- Prints one JSON line with throughput and latency percentiles.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local cookies = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(cookies, line) end
  end
  -- Threads start far apart so they rarely refresh the same session at once.
  i = (id or 0) * math.floor(#cookies / 8)
end

function request()
  i = i + 1
  local cookie = cookies[(i % #cookies) + 1]
  return wrk.format("POST", "/capture-session/refresh", {
    ["X-Capture-Session"] = "1",
    ["Content-Type"] = "application/json",
    ["Cookie"] = cookie,
  }, "{}")
end

-- Keep the first few non-200 replies (status and error code) for the report.
failures = ""
local kept = 0
function response(status, headers, body)
  if status ~= 200 and kept < 5 then
    kept = kept + 1
    failures = failures .. status .. ":" .. (body or ""):gsub('"', "'"):sub(1, 60) .. " | "
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local f = t:get("failures")
    if f and #f > 0 then io.stderr:write("non-200 replies: " .. f .. "\n") end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%.2f,"rps":%.0f,"p50_ms":%.2f,"p90_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
