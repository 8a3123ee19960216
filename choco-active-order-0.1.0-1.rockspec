package = "choco-active-order"
version = "0.1.0-1"
source = {
   url = "git+file:///choco-active-order",
   tag = "v0.1.0",
}
description = {
   summary = "Keep the Choco/Rahmet active order card in step with a merchant's orders",
   detailed = [[
      A Lua library with a C core: every field of a status checked against the
      gateway's contract and written as canonical JSON in one pass, pushed over
      libcurl with a managed OAuth token, safe retries and structured errors.
      Includes an OpenResty adapter that never blocks the event loop, mapping
      scripts for operations staff, a command-line tool and a gateway emulator.
   ]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1, < 5.5",
   "lua-cjson",
}
-- Only the library is checked: on Debian and Ubuntu curl.h lives under the
-- multiarch include directory, where LuaRocks' header check does not look,
-- while the compiler finds it there by default.
external_dependencies = {
   CURL = { library = "curl" },
}
build = {
   type = "builtin",
   modules = {
      ["choco.active_order.core"] = {
         sources = { "src/buffer.c", "src/clock.c", "src/core.c", "src/envelope.c", "src/http.c", "src/json.c", "src/multi.c", "src/payload.c", "src/session.c", "src/text.c" },
         defines = { "_POSIX_C_SOURCE=200809L" },
         libraries = { "curl", "pthread" },
         incdirs = { "$(CURL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)" },
      },
      ["choco.active_order"] = "lua/choco/active_order.lua",
      ["choco.active_order.batch"] = "lua/choco/active_order/batch.lua",
      ["choco.active_order.cli"] = "lua/choco/active_order/cli.lua",
      ["choco.active_order.cli.args"] = "lua/choco/active_order/cli/args.lua",
      ["choco.active_order.client"] = "lua/choco/active_order/client.lua",
      ["choco.active_order.emulator"] = "lua/choco/active_order/emulator.lua",
      ["choco.active_order.emulator.faults"] = "lua/choco/active_order/emulator/faults.lua",
      ["choco.active_order.emulator.launcher"] = "lua/choco/active_order/emulator/launcher.lua",
      ["choco.active_order.emulator.reply"] = "lua/choco/active_order/emulator/reply.lua",
      ["choco.active_order.emulator.rules"] = "lua/choco/active_order/emulator/rules.lua",
      ["choco.active_order.emulator.state"] = "lua/choco/active_order/emulator/state.lua",
      ["choco.active_order.errors"] = "lua/choco/active_order/errors.lua",
      ["choco.active_order.json"] = "lua/choco/active_order/json.lua",
      ["choco.active_order.ngx"] = "lua/choco/active_order/ngx.lua",
      ["choco.active_order.ngx.token_store"] = "lua/choco/active_order/ngx/token_store.lua",
      ["choco.active_order.ngx.worker"] = "lua/choco/active_order/ngx/worker.lua",
      ["choco.active_order.payload"] = "lua/choco/active_order/payload.lua",
      ["choco.active_order.retry"] = "lua/choco/active_order/retry.lua",
      ["choco.active_order.rules"] = "lua/choco/active_order/rules.lua",
      ["choco.active_order.rules.sandbox"] = "lua/choco/active_order/rules/sandbox.lua",
      ["choco.active_order.time"] = "lua/choco/active_order/time.lua",
      ["choco.active_order.template"] = "lua/choco/active_order/template.lua",
      ["choco.active_order.token"] = "lua/choco/active_order/token.lua",
      ["choco.active_order.url"] = "lua/choco/active_order/url.lua",
   },
   install = {
      bin = { ["choco-active-order"] = "bin/choco-active-order" },
   },
   copy_directories = { "docs", "examples" },
}
