-- wrk script for bench/ingest.py: POST pre-signed Mango forms, a different body for every request.
-- Arguments (after `--`): <bodies file, one url-encoded form per line> <start index> <wrk threads>.
-- Thread t sends bodies start+t, start+t+T, start+t+2T, ... (T = threads), so no body is sent twice
-- until the file runs out ("wrapped"). Sign in Lua is not possible (no sha256), hence the file.
-- done() prints one line "WRKJSON {...}" that the Python side parses.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local bodies = {}
   local f = assert(io.open(args[1], "r"))
   for line in f:lines() do
      bodies[#bodies + 1] = line
   end
   f:close()
   start = tonumber(args[2]) or 0
   stride = tonumber(args[3]) or 1
   local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
   -- Pre-format this thread's requests; 1-based Lua index of body i is i + 1.
   reqs = {}
   n = #bodies
   for i = 1, n do
      reqs[i] = wrk.format("POST", nil, headers, bodies[i])
   end
   idx = start + tid
   sent = 0
   wrapped = 0
end

function request()
   if idx >= n then
      wrapped = 1
   end
   local r = reqs[(idx % n) + 1]
   idx = idx + stride
   sent = sent + 1
   return r
end

function done(summary, latency, requests)
   local total_sent, max_sent, any_wrapped = 0, 0, 0
   for _, t in ipairs(threads) do
      local s = t:get("sent") or 0
      total_sent = total_sent + s
      if s > max_sent then
         max_sent = s
      end
      if (t:get("wrapped") or 0) > 0 then
         any_wrapped = 1
      end
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,'
         .. '"status":%d,"timeout":%d,"sent":%d,"max_thread_sent":%d,"wrapped":%d,'
         .. '"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, total_sent, max_sent, any_wrapped,
      latency:percentile(50.0), latency:percentile(99.0), latency.max, latency.mean))
end
