-- wrk script: one durable hold per request, cycling the SKUs HOT42-0 .. HOT42-99 that
-- `conductor-loadtest flash-sale --seed 42 --skus 100` seeds. The key comes from CONDUCTOR_KEY.
local key = os.getenv("CONDUCTOR_KEY")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key

request = function()
  n = n + 1
  local body = string.format(
    '{"channel":"web","lines":[{"sku":"HOT42-%d","qty":1}],"ttl_seconds":600}', n % 100)
  return wrk.format(nil, "/v1/reservations", nil, body)
end
