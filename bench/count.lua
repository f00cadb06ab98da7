-- wrk script used by bench/http.sh for every target, so wrk's own cost is the same for all.
--
--   wrk ... -s bench/count.lua http://host/plain -- HEADERS_FILE
--
-- HEADERS_FILE holds one line per request variant: empty (no extra header) or one
-- `Name: value` header (a session cookie, a bearer token). Every request is built once, in
-- init; request() only takes the next one, round robin, so the signed-in targets cycle
-- through all their sessions and no cache can serve one hot entry.
--
-- wrk counts a 3xx or a 5xx as a success; response() counts every status instead and
-- done() prints them (`statuses 200=N ...`) with the number of distinct requests and wrk's
-- own error counts, for the shell to refuse any run that was not all 200.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  variants = {}
  statuses = {}
  local path = wrk.path
  local file = args[1] and io.open(args[1], "r")
  if file then
    for line in file:lines() do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      local headers = {}
      if name then headers[name] = value end
      table.insert(variants, wrk.format(nil, path, headers))
    end
    file:close()
  end
  if #variants == 0 then variants[1] = wrk.format(nil, path) end
  variant_count = #variants
  next_request = 0
end

function request()
  next_request = next_request % #variants + 1
  return variants[next_request]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts, variants = {}, 0
  for _, thread in ipairs(threads) do
    variants = math.max(variants, thread:get("variant_count"))
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local out = {}
  for status, n in pairs(counts) do table.insert(out, string.format("%d=%d", status, n)) end
  table.sort(out)
  io.write("statuses ", table.concat(out, " "), "\n")
  local e = summary.errors
  io.write(string.format("requests %d variants %d errors connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, variants, e.connect, e.read, e.write, e.timeout))
end
