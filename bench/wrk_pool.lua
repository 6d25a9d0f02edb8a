-- wrk script: replay a pool of pre-signed webhook deliveries (see bench/workload.py).
-- Usage: wrk -s bench/wrk_pool.lua URL -- POOL_FILE THREADS
-- Each line of POOL_FILE is "key<TAB>signature<TAB>body"; thread i sends lines i, i+T, ...
-- Signing happens when the pool is written (HMAC-SHA256 with the app secret), so wrk itself
-- only replays bytes. done() prints one "BENCH_JSON {...}" line for bench/wrkload.py.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local count = tonumber(args[2]) or 1
  requests_ = {}
  local line_number = 0
  for line in io.lines(path) do
    if line_number % count == thread_index then
      local tab1 = string.find(line, "\t", 1, true)
      local tab2 = string.find(line, "\t", tab1 + 1, true)
      local signature = string.sub(line, tab1 + 1, tab2 - 1)
      local body = string.sub(line, tab2 + 1)
      requests_[#requests_ + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Hub-Signature-256"] = signature,
      }, body)
    end
    line_number = line_number + 1
  end
  next_ = 1
  wraps = 0
  pool_size = #requests_
end

function request()
  local chosen = requests_[next_]
  next_ = next_ + 1
  if next_ > #requests_ then
    next_ = 1
    wraps = wraps + 1
  end
  return chosen
end

function done(summary, latency, requests)
  local total_wraps = 0
  local total_pool = 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + (thread:get("wraps") or 0)
    total_pool = total_pool + (thread:get("pool_size") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%f},' ..
    '"pool_wraps":%d,"pool_size":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean,
    total_wraps, total_pool))
end
