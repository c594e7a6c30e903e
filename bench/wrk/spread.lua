-- Spreads requests round-robin over N services of one locker: each request
-- names the next service's origin in `Host` and carries the admin token.
-- Set by the caller: LOCKER_PORT, LOCKER_TOKEN, SPREAD_N, SPREAD_PREFIX.
local port = os.getenv("LOCKER_PORT")
local token = os.getenv("LOCKER_TOKEN")
local n = tonumber(os.getenv("SPREAD_N"))
local prefix = os.getenv("SPREAD_PREFIX")
local i = 0

function setup(thread)
  -- Threads start at different services, so they do not move in step.
  thread:set("i", math.random(0, n - 1))
end

request = function()
  i = (i % n) + 1
  return wrk.format("GET", "/", {
    ["Host"] = string.format("%s%04d.locker.localhost:%s", prefix, i, port),
    ["Authorization"] = "Bearer " .. token,
  })
end
