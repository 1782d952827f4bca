-- wrk script: GET /api/v1/persons/{id} with ids drawn at random from IDS_FILE, as the officer
-- whose bearer token is in TOKEN.
local ids = {}
local path = os.getenv("IDS_FILE") or "bench/out/ids.txt"
for line in io.lines(path) do
  if #line == 12 then ids[#ids + 1] = line end
end
if #ids == 0 then error("no ids in " .. path) end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end

local headers = { ["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "") }

function request()
  return wrk.format("GET", "/api/v1/persons/" .. ids[math.random(#ids)], headers)
end
