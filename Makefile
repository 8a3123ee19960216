# choco-active-order: build, test, demo and benchmarks.
#   make                 build the C module for $(LUA)
#   make test            busted specs on $(LUA)
#   make check           everything: every Lua target, lint, sanitizers, valgrind, luarocks install
#   make demo            push a sample order's life to the bundled gateway emulator
#   make bench           every benchmark, one table of ratios
# LUA is one of lua5.1 luajit lua5.3 lua5.4 (default lua5.4).

LUA ?= lua5.4
TARGETS := lua5.1 luajit lua5.3 lua5.4

PKG_lua5.1 := lua5.1
PKG_luajit := luajit
PKG_lua5.3 := lua5.3
PKG_lua5.4 := lua5.4
BIN_lua5.1 := lua5.1
BIN_luajit := luajit
BIN_lua5.3 := lua5.3
BIN_lua5.4 := lua5.4

ifeq ($(filter $(LUA),$(TARGETS)),)
$(error LUA must be one of $(TARGETS), not '$(LUA)')
endif

CC ?= cc
LUA_BIN := $(BIN_$(LUA))
LUA_INC := $(shell pkg-config --cflags $(PKG_$(LUA)) 2>/dev/null)
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith -Wformat=2
OPT ?= -O2
SAN ?=
BASE_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) -g
MODULE_CFLAGS = $(BASE_CFLAGS) $(OPT) $(SAN) $(LUA_INC) $(CURL_CFLAGS) $(CFLAGS)
MODULE_LDFLAGS = -shared $(SAN) $(LDFLAGS)

SOURCES := $(wildcard src/*.c)
HEADERS := $(wildcard src/*.h)
VARIANT ?= $(LUA)
BUILD := build/$(VARIANT)
MODULE := $(BUILD)/choco/active_order/core.so
LUAJIT_MODULE := build/luajit/choco/active_order/core.so

# Specs find the working tree's modules first, then the system's (cjson, busted, socket).
TEST_ENV = LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/?.lua;;' \
	LUA_CPATH='$(CURDIR)/$(BUILD)/?.so;;' \
	AO_ROOT='$(CURDIR)' AO_LUA='$(LUA_BIN)' AO_LUAJIT_CPATH='$(CURDIR)/build/luajit/?.so'
BUSTED := /usr/bin/busted
BUSTED_FLAGS ?=
SPEC ?= spec

.PHONY: all deps test test-only rockspec-lint check lint cppcheck luacheck asan valgrind rock-install clang-build demo bench clean

all: $(MODULE)

deps:
	@sh scripts/deps.sh

$(MODULE): $(SOURCES) $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(MODULE_CFLAGS) $(SOURCES) -o $@ $(MODULE_LDFLAGS) $(CURL_LIBS)

# nginx embeds LuaJIT, so the OpenResty specs and the emulator need the LuaJIT build whatever LUA is.
ifneq ($(MODULE),$(LUAJIT_MODULE))
$(LUAJIT_MODULE): $(SOURCES) $(HEADERS) Makefile
	@$(MAKE) --no-print-directory LUA=luajit VARIANT=luajit SAN= OPT=-O2 all
endif

test: $(MODULE) $(LUAJIT_MODULE)
	$(TEST_ENV) $(LUA_BIN) $(BUSTED) $(BUSTED_FLAGS) $(SPEC)

lint: luacheck cppcheck rockspec-lint

rockspec-lint:
	sh scripts/check-rockspec.sh

luacheck:
	luacheck --quiet lua spec bench examples bin/choco-active-order

cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability,style \
		--std=c99 --inline-suppr --suppress=missingIncludeSystem \
		-I src $(LUA_INC) src

clang-build:
	@$(MAKE) --no-print-directory CC=clang VARIANT=clang-$(LUA) all

# The interpreter is not built with ASan, so the runtime is preloaded into it.
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so)
asan:
	@$(MAKE) --no-print-directory VARIANT=asan-$(LUA) OPT=-O1 \
		SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all' all
	$(MAKE) --no-print-directory VARIANT=asan-$(LUA) test-only \
		RUN_PREFIX='env LD_PRELOAD=$(ASAN_RT) ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 LSAN_OPTIONS=suppressions=$(CURDIR)/.ci/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1'

valgrind:
	@$(MAKE) --no-print-directory VARIANT=valgrind-$(LUA) OPT=-O1 all
	$(MAKE) --no-print-directory VARIANT=valgrind-$(LUA) test-only \
		RUN_PREFIX='valgrind --quiet --error-exitcode=87 --leak-check=full --errors-for-leak-kinds=definite --suppressions=$(CURDIR)/.ci/valgrind.supp' \
		BUSTED_FLAGS='$(BUSTED_FLAGS) --exclude-tags=novalgrind'

test-only: $(LUAJIT_MODULE)
	$(TEST_ENV) AO_SANITIZED=1 $(RUN_PREFIX) $(LUA_BIN) $(BUSTED) $(BUSTED_FLAGS) $(SPEC)

rock-install:
	sh scripts/rock-install.sh

check: deps
	$(MAKE) lint
	@for t in $(TARGETS); do \
		echo "== $$t"; $(MAKE) --no-print-directory LUA=$$t test || exit 1; \
		$(MAKE) --no-print-directory LUA=$$t CC=clang VARIANT=clang-$$t all || exit 1; \
	done
	$(MAKE) --no-print-directory LUA=lua5.4 CC=gcc asan
	$(MAKE) --no-print-directory LUA=lua5.4 valgrind
	$(MAKE) --no-print-directory rock-install
	@echo "make check: every target, lint, sanitizer and valgrind pass succeeded"

demo: deps $(MODULE) $(LUAJIT_MODULE)
	$(TEST_ENV) $(LUA_BIN) examples/demo.lua

bench: deps
	@$(MAKE) --no-print-directory LUA=lua5.4 all
	@$(MAKE) --no-print-directory LUA=luajit all
	sh bench/run.sh

clean:
	rm -rf build
