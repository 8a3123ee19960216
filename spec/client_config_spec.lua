-- ao.new: every option checked once, with a clear config error; the base URL
-- rules; the retry policy's arithmetic (no network here).

local ao = require "choco.active_order"
local retry = require "choco.active_order.retry"
local url = require "choco.active_order.url"

local function new(overrides)
    local opts = { base_url = "http://127.0.0.1:9", client_id = "id-1", client_secret = "secret-1" }
    for k, v in pairs(overrides or {}) do opts[k] = v end
    return ao.new(opts)
end

local function config_error(overrides, pattern)
    local c, err = new(overrides)
    assert.is_nil(c)
    assert.equal("config", err.kind)
    assert.equal("BAD_OPTION", err.code)
    if pattern then assert.matches(pattern, err.message) end
    return err
end

describe("ao.new", function()
    it("raises only when the options are not a table", function()
        assert.has_error(function() ao.new("https://x") end)
        assert.has_error(function() ao.new() end)
    end)

    it("makes a client from minimal options", function()
        local c = assert(new())
        assert.equal("http://127.0.0.1:9", c.base_url)
        c:close()
        c:close() -- idempotent
    end)

    it("requires a base_url and names the two documented hosts", function()
        config_error({ base_url = false }, "base_url")
        config_error({ base_url = "" }, "base_url is required")
        assert.equal("https://gateway.chocodev.kz", ao.TEST)
        assert.equal("https://gateway.choco.kz", ao.PRODUCTION)
        assert(new { base_url = ao.TEST }):close()
        assert(new { base_url = ao.PRODUCTION .. "/" }):close()
    end)

    it("refuses plain http except to loopback, unless told", function()
        config_error({ base_url = "http://gateway.chocodev.kz" }, "allow_insecure_http")
        config_error({ base_url = "http://10.0.0.1:8080" }, "unencrypted")
        for _, base in ipairs { "http://127.0.0.1:1", "http://127.9.8.7", "http://localhost:8080",
                                "http://[::1]:8080", "http://LOCALHOST" } do
            local c, err = new { base_url = base }
            assert(c, err and err.message)
            c:close()
        end
        assert(new { base_url = "http://gateway.chocodev.kz", allow_insecure_http = true }):close()
        config_error({ base_url = "http://128.0.0.1" }, "http")
        config_error({ base_url = "http://127.0.0.1.example.com" }, "http")
        config_error({ base_url = "http://x", allow_insecure_http = "yes" }, "boolean")
    end)

    it("refuses malformed base URLs", function()
        config_error({ base_url = "gateway.choco.kz" }, "https://")
        config_error({ base_url = "ftp://gateway.choco.kz" }, "https or http")
        config_error({ base_url = "https://user:pw@gateway.choco.kz" }, "user:password")
        config_error({ base_url = "https://gateway.choco.kz?x=1" }, "query")
        config_error({ base_url = "https://gateway.choco.kz\r\nX: y" }, "control")
        config_error({ base_url = "https://:443" }, "host")
        config_error({ base_url = "https://h:99999" }, "port")
    end)

    it("joins base and path with exactly one slash", function()
        for _, base in ipairs { "https://h", "https://h/", "https://h//" } do
            assert.equal("https://h/orders/v2/preorder/external/status",
                url.join(url.parse_base(base), "/orders/v2/preorder/external/status"))
            assert.equal("https://h/auth/token", url.join(url.parse_base(base), "auth/token"))
        end
        assert.equal("https://h/prefix/auth/token", url.join(url.parse_base("https://h/prefix/"), "//auth/token"))
    end)

    it("wants credentials: client_id + client_secret, or a token, not both", function()
        config_error({ client_id = false }, "client_id")
        config_error({ client_secret = false }, "client_secret")
        config_error({ client_secret = 42 }, "client_secret")
        config_error({ token = "abc" }, "not both")
        local c = assert(ao.new { base_url = "http://127.0.0.1:9", token = "abc.def" })
        assert.matches("fixed token", tostring(c))
        c:close()
    end)

    it("refuses CR, LF and NUL in anything that becomes a header", function()
        config_error({ client_id = "id\r\nX-Evil: 1" }, "client_id")
        config_error({ client_secret = "s\0x" }, "control")
        config_error({ user_agent = "ua\nX: 1" }, "user_agent")
        config_error({ proxy = "http://p\r\n" }, "proxy")
        local _, err = ao.new { base_url = "http://127.0.0.1:9", token = "abc\r\nX-Evil: 1" }
        assert.equal("config", err.kind)
        _, err = ao.new { base_url = "http://127.0.0.1:9", token = "abc\0" }
        assert.equal("config", err.kind)
    end)

    it("checks types and ranges of the other options", function()
        config_error({ timeout = 0 }, "timeout")
        config_error({ timeout = "10" }, "timeout")
        config_error({ connect_timeout = -1 }, "connect_timeout")
        config_error({ max_response_bytes = 0.5 }, "max_response_bytes")
        config_error({ on_request = "print" }, "on_request")
        config_error({ on_response = {} }, "on_response")
        config_error({ ca_file = "/nonexistent/ca.pem" }, "ca_file")
        config_error({ retry = 3 }, "retry")
        config_error({ retry = { max_attempts = 0 } }, "max_attempts")
        config_error({ retry = { max_attempts = 1.5 } }, "max_attempts")
        config_error({ retry = { deadline = 0 } }, "deadline")
        config_error({ retry = { base_delay = 2, max_delay = 1 } }, "max_delay")
        config_error({ retry = { attempts = 3 } }, "unknown retry option")
        config_error({ client_secert = "typo" }, "unknown option: client_secert")
        config_error({ token_store = "shared" }, "token_store")
    end)

    it("reports bad payload options (statuses) as config errors", function()
        local err = config_error { statuses = 42 }
        assert.is_string(err.message)
    end)

    it("shows base_url and client_id, and nothing secret, in tostring", function()
        local c = assert(new { client_secret = "S3CR3T-do-not-print" })
        local s = tostring(c)
        assert.matches("127.0.0.1:9", s, 1, true)
        assert.matches("id-1", s, 1, true)
        assert.not_matches("S3CR3T", s, 1, true)
        c:close()
    end)

    it("raises when push gets something other than a table; refuses to push when closed", function()
        local c = assert(new())
        assert.has_error(function() c:push("created") end)
        c:close()
        local data, err = c:push {}
        assert.is_nil(data)
        assert.equal("config", err.kind)
        assert.equal("CLOSED", err.code)
    end)

    it("reports an invalid status without sending it", function()
        local sent = 0
        local c = assert(new { on_request = function() sent = sent + 1 end })
        local data, err = c:push { merchant_order_id = 5 }
        assert.is_nil(data)
        assert.equal("validation", err.kind)
        assert.equal("INVALID_STATUS", err.code)
        assert.is_table(err.problems)
        assert.is_true(#err.problems >= 1)
        assert.is_false(err.retryable)
        assert.equal(0, sent)
        assert.matches("^validation/INVALID_STATUS: ", tostring(err))
        c:close()
    end)
end)

describe("the retry policy", function()
    local policy = assert(retry.policy())

    it("has the documented defaults", function()
        assert.same({ 4, 0.2, 5, 30, 30 },
            { policy.max_attempts, policy.base_delay, policy.max_delay, policy.retry_after_cap, policy.deadline })
    end)

    it("waits a jittered time under the capped exponential ceiling", function()
        local low = assert(retry.policy { random = function() return 0 end })
        local high = assert(retry.policy { random = function() return 0.999999 end })
        for attempt = 1, 10 do
            local ceiling = math.min(5, 0.2 * 2 ^ (attempt - 1))
            assert.equal(0, retry.backoff(low, attempt))
            assert.is_true(retry.backoff(high, attempt) <= ceiling)
            assert.is_true(retry.backoff(high, attempt) > ceiling * 0.99)
        end
        for _ = 1, 1000 do
            local r = retry.random()
            assert.is_true(r >= 0 and r < 1)
        end
    end)

    it("reads Retry-After as seconds or an HTTP-date", function()
        assert.equal(3, retry.parse_retry_after("3"))
        assert.equal(0, retry.parse_retry_after(" 0 "))
        assert.is_nil(retry.parse_retry_after("soon"))
        assert.is_nil(retry.parse_retry_after("-1"))
        assert.is_nil(retry.parse_retry_after(nil))
        -- 1994-11-06 08:49:37 UTC is 784111777
        assert.equal(7, retry.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770))
        assert.equal(0, retry.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111999))
        assert.equal(86400, retry.parse_retry_after("Thu, 01 Mar 2024 00:00:00 GMT", 1709164800))
        assert.is_nil(retry.parse_retry_after("Sun, 06 Xyz 1994 08:49:37 GMT", 0))
    end)

    it("retries only what may heal, within attempts, Retry-After cap and deadline", function()
        local errors = require "choco.active_order.errors"
        local retryable = errors.new("http", "HTTP_503", "x", { retryable = true })
        local final = errors.new("http", "HTTP_400", "x")
        assert.is_nil(retry.next_delay(policy, final, 1, 0))
        assert.is_number(retry.next_delay(policy, retryable, 1, 0))
        local _, reason = retry.next_delay(policy, retryable, 4, 0)
        assert.equal("attempts", reason)
        _, reason = retry.next_delay(policy, retryable, 1, 29.99)
        assert.equal("deadline", reason)
        -- a wait that leaves too little for the next attempt is not started
        retryable.retry_after = 0
        assert.equal(0, retry.next_delay(policy, retryable, 1, 29.8))
        _, reason = retry.next_delay(policy, retryable, 1, 30 - retry.MIN_ATTEMPT_WINDOW / 2)
        assert.equal("deadline", reason)
        retryable.retry_after = 2
        assert.equal(2, retry.next_delay(policy, retryable, 1, 0))
        retryable.retry_after = 31
        _, reason = retry.next_delay(policy, retryable, 1, 0)
        assert.equal("retry_after", reason)
        retryable.retry_after = 10
        _, reason = retry.next_delay(policy, retryable, 1, 25)
        assert.equal("deadline", reason)
        for _, code in ipairs { "COULDNT_CONNECT", "OPERATION_TIMEDOUT", "GOT_NOTHING", "RECV_ERROR",
                                "SEND_ERROR", "PARTIAL_FILE" } do
            assert.is_true(retry.transport_retryable(code), code)
        end
        for _, code in ipairs { "PEER_FAILED_VERIFICATION", "SSL_CONNECT_ERROR", "SSL_CACERT_BADFILE",
                                "TOO_LARGE", "UNSUPPORTED_PROTOCOL" } do
            assert.is_false(retry.transport_retryable(code), code)
        end
        for _, status in ipairs { 429, 500, 502, 503, 504 } do assert.is_true(retry.http_retryable(status)) end
        for _, status in ipairs { 400, 401, 403, 404, 409, 422, 501 } do
            assert.is_false(retry.http_retryable(status))
        end
    end)
end)
