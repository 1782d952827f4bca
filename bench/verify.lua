-- wrk script: POST /api/v1/sharing/verify (e-KYC) with bodies drawn at random from BODIES_FILE
-- (one JSON body a line), as the partner whose access token is in TOKEN.
local bodies = {}
for line in io.lines(os.getenv("BODIES_FILE") or "bench/out/verify-bodies.txt") do
  if #line > 0 then bodies[#bodies + 1] = line end
end
if #bodies == 0 then error("no bodies") end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end

local headers = {
  ["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or ""),
  ["Content-Type"] = "application/json",
  ["X-Dancu-Purpose"] = "benchmark e-KYC",
}

function request()
  return wrk.format("POST", "/api/v1/sharing/verify", headers, bodies[math.random(#bodies)])
end
