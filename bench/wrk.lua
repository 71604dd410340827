-- wrk script for bench/run.py. Arguments after `--`:
--   file <path> <threads>       send the pre-built raw requests of <path> (bench/reqfile.py
--                               format) in order; thread k of n takes records k, k+n, ...;
--                               wraps around at the end (counted in "wrapped")
--   alertmanager <run> <threads>  POST /api/v2/alerts, one alert per request, labels made
--                               unique by a per-thread counter
-- Counts answers by status and prints one line "BENCHJSON {...}" at the end.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function load_file(path, nthreads)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local list = {}
  local pos, idx = 1, 0
  local size = #data
  while pos <= size do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1):match("^(%d+)"))
    if (idx % nthreads) == id then
      list[#list + 1] = data:sub(nl + 1, nl + len)
    end
    idx = idx + 1
    pos = nl + len + 1
  end
  return list
end

function init(args)
  mode = args[1]
  local nthreads = tonumber(args[3]) or 1
  statuses = {}
  wrapped = 0
  sent = 0
  if mode == "file" then
    reqs = load_file(args[2], nthreads)
    nreqs = #reqs
    cursor = 0
  else
    run = args[2]
    headers = { ["Content-Type"] = "application/json" }
    template = '[{"labels":{"alertname":"BudgetThreshold","severity":"warning",'
      .. '"task_id":"t-%04d","uid":"%s-w%d-%d"},"annotations":{"summary":'
      .. '"task spent 50%% of its budget","spent":"50.00"},"generatorURL":"http://127.0.0.1/bench"}]'
  end
end

function request()
  sent = sent + 1
  if mode == "file" then
    cursor = cursor + 1
    if cursor > nreqs then
      cursor = 1
      wrapped = wrapped + 1
    end
    return reqs[cursor]
  end
  local body = string.format(template, sent % 1000, run, id, sent)
  return wrk.format("POST", "/api/v2/alerts", headers, body)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg, wraps, total_sent, file_records = {}, 0, 0, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do agg[k] = (agg[k] or 0) + v end
    wraps = wraps + (t:get("wrapped") or 0)
    total_sent = total_sent + (t:get("sent") or 0)
    file_records = file_records + (t:get("nreqs") or 0)
  end
  local parts = {}
  for k, v in pairs(agg) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,"sent":%d,"wrapped":%d,' ..
    '"file_records":%d,"statuses":{%s},"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, summary.bytes, total_sent, wraps, file_records,
    table.concat(parts, ","), e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
