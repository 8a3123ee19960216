-- Spec helper for the client specs: clients of a spec's emulator (see
-- spec/support/emulator.lua) built from the spec's defaults.
--
--   local clients = require "spec.support.clients"
--   local function new_client(extra) return clients.new(emu, { statuses = STATUSES }, extra) end

local ao = require "choco.active_order"

local clients = {}

--- A client of emu: its URL and credentials, then defaults, then extra (a
--- later table wins). Raises when ao.new refuses the options.
function clients.new(emu, defaults, extra)
    local opts = { base_url = emu.url, client_id = emu.client_id, client_secret = emu.client_secret }
    for k, v in pairs(defaults or {}) do opts[k] = v end
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(ao.new(opts))
end

return clients
