-- wrk script for field-http: three GET /item/{n} for one POST /session.
-- Items are drawn from FIELD_ITEM_KEYS keys (default 20000; the cache holds 4096),
-- session bodies are FIELD_BODY_BYTES long (default 1024).
local keys = tonumber(os.getenv("FIELD_ITEM_KEYS") or "20000")
local body = string.rep("s", tonumber(os.getenv("FIELD_BODY_BYTES") or "1024"))
local counter = 0

function setup(thread)
   thread:set("seed", math.random(1, 1000000))
end

function init(args)
   math.randomseed(seed or os.time())
end

function request()
   counter = counter + 1
   if counter % 4 == 0 then
      return wrk.format("POST", "/session", {["Content-Type"] = "application/octet-stream"}, body)
   end
   return wrk.format("GET", "/item/" .. math.random(1, keys))
end
