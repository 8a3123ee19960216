-- Durations ("30m", "1h30m", 1800) and the gateway's date-time text
-- ("2026-11-29 15:00:00" in the merchant's zone, UTC+05:00 unless told).
-- Calendar arithmetic is done here rather than with os.time, whose result
-- depends on the host's time zone.

local floor, tonumber, type = math.floor, tonumber, type

local time = {}

time.DEFAULT_UTC_OFFSET = 5 * 3600 -- Kazakhstan, one zone since 2024-03-01

local UNIT = { s = 1, m = 60, h = 3600, d = 86400 }

--- Seconds in a duration: a positive number of seconds, or text of numbers
--- with units s, m, h, d ("45s", "30m", "2h", "1h30m", "1d 12h").
--- Returns seconds, or nil and why.
function time.duration(value)
    if type(value) == "number" then
        if value ~= value or value <= 0 or value == math.huge then
            return nil, "a duration must be a positive number of seconds"
        end
        return value
    end
    if type(value) ~= "string" then
        return nil, "a duration is text such as \"30m\" or a number of seconds"
    end
    local rest = value:gsub("%s+", "")
    if rest == "" then return nil, "an empty duration" end
    local total = 0
    while rest ~= "" do
        local number, unit, after = rest:match("^(%d+)(%a)(.*)$")
        if not number or not UNIT[unit] then
            return nil, "\"" .. value .. "\" is not a duration; write e.g. \"45s\", \"30m\", \"2h\", \"1h30m\", \"1d\""
        end
        total = total + tonumber(number) * UNIT[unit]
        rest = after
    end
    if total <= 0 then return nil, "a duration must be longer than zero" end
    return total
end

--- A UTC offset in seconds from a number of seconds or text "+05:00" / "-03:30".
function time.utc_offset(value)
    if value == nil then return time.DEFAULT_UTC_OFFSET end
    if type(value) == "number" then return value end
    if type(value) == "string" then
        local sign, h, m = value:match("^([+-])(%d%d):?(%d%d)$")
        if sign then
            local s = tonumber(h) * 3600 + tonumber(m) * 60
            return sign == "-" and -s or s
        end
    end
    return nil, "a UTC offset is a number of seconds or text such as \"+05:00\""
end

--- "+05:00" for an offset in seconds (the form the C core's options take).
function time.offset_text(seconds)
    local sign = seconds < 0 and "-" or "+"
    local minutes = floor(math.abs(seconds) / 60)
    return string.format("%s%02d:%02d", sign, floor(minutes / 60), minutes % 60)
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
function time.days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

local function civil_from_days(z)
    z = z + 719468
    local era = floor(z / 146097)
    local doe = z - era * 146097
    local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
    local mp = floor((5 * doy + 2) / 153)
    local d = doy - floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m, d
end

--- The gateway's text for a moment (seconds since the epoch) at `offset`.
function time.format(epoch, offset)
    local t = floor(epoch + offset)
    local days = floor(t / 86400)
    local secs = t - days * 86400
    local y, m, d = civil_from_days(days)
    return string.format("%04d-%02d-%02d %02d:%02d:%02d", y, m, d,
        floor(secs / 3600), floor(secs % 3600 / 60), secs % 60)
end

--- Seconds since the epoch from a number, from the gateway's text (read at
--- `offset`), or from ISO 8601 with "Z" or "+05:00". nil and why otherwise.
function time.parse(value, offset)
    if type(value) == "number" then return value end
    if type(value) ~= "string" then return nil, "a time is a number of seconds or date-time text" end
    if value:match("^%d+$") then return tonumber(value) end
    local y, mo, d, h, mi, s, zone = value:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
    if not y then
        return nil, "\"" .. value .. "\" is not a time; write \"YYYY-MM-DD HH:MM:SS\" or seconds since 1970"
    end
    y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
    if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or s > 59 then
        return nil, "\"" .. value .. "\" is not a valid date and time"
    end
    local zone_offset = offset
    zone = zone:gsub("^%.%d+", "")
    if zone == "Z" then
        zone_offset = 0
    elseif zone ~= "" then
        local err
        zone_offset, err = time.utc_offset(zone)
        if not zone_offset then return nil, err end
    end
    local epoch = time.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - zone_offset
    if time.format(epoch, zone_offset):sub(1, 10) ~= string.format("%04d-%02d-%02d", y, mo, d) then
        return nil, "\"" .. value .. "\" is not a valid date"
    end
    return epoch
end

return time
