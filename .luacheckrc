std = "max"
max_line_length = 120
files["spec/**/*.lua"] = { std = "+busted" }
files["lua/choco/active_order/emulator.lua"] = { globals = { "ngx" } }
files["lua/choco/active_order/ngx.lua"] = { read_globals = { "ngx" } }
files["lua/choco/active_order/ngx/**/*.lua"] = { read_globals = { "ngx" } }
files["examples/openresty/**/*.lua"] = { read_globals = { "ngx" } }
exclude_files = { "build/**" }
files["examples/rules/**/*.lua"] = { std = "min", globals = { "base_link" }, read_globals = { "defaults", "status", "field" } }
files["lua/choco/active_order/emulator/**/*.lua"] = { globals = { "ngx" } }
