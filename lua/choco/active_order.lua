-- choco.active_order: keep the Choco/Rahmet "active order" card in step with a
-- merchant's orders. This module is the public face: it gathers the payload
-- checks (C core) and the client, which is loaded on first use so that tools
-- that only validate or render never touch the network layer.

local payload = require "choco.active_order.payload"
local json = require "choco.active_order.json"

local ao = {
    VERSION = "0.1.0",
    -- The two hosts the contract documents.
    TEST = "https://gateway.chocodev.kz",
    PRODUCTION = "https://gateway.choco.kz",
    validate = payload.validate,
    encode = payload.encode,
    -- JSON text (a status, an event) to the Lua value push takes: C, strict
    decode_json = json.decode,
}

--- Create a client; see choco.active_order.client for the options.
function ao.new(opts)
    return require("choco.active_order.client").new(opts)
end

return ao
