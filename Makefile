# diagnose.h: `make demo` runs the demo, `make test` runs the tests.
CC      ?= cc
CXX     ?= c++
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wpedantic -Werror
BUILD   ?= build
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
# libuv_echo needs libuv (Debian: libuv1-dev); `make` skips it where it is missing.
ifneq ($(shell pkg-config --exists libuv 2>/dev/null && echo yes),yes)
EXAMPLES := $(filter-out $(BUILD)/examples/libuv_echo,$(EXAMPLES))
endif

.PHONY: all help demo test check bench clean
all: $(EXAMPLES)

help:
	@echo "make          build the examples into $(BUILD)/examples"
	@echo "make demo     run the demo: summary table and folded files in $(BUILD)/demo"
	@echo "make test     build and run every test (C99, C++11, DIAGNOSE_DISABLE)"
	@echo "make check    sanitizers, valgrind, compiler matrix, static analysis, fuzz"
	@echo "make bench    benchmarks: overhead ratios, memory, dump speed, stable load"
	@echo "make clean    remove $(BUILD)"

$(BUILD)/examples/%: examples/%.c diagnose.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(CFLAGS) $(WARN) -I. $< -o $@ -pthread -lm

$(BUILD)/examples/libuv_echo: examples/libuv_echo.c diagnose.h
	@mkdir -p $(@D)
	$(CC) -std=c99 $(CFLAGS) $(WARN) -I. $< -o $@ $$(pkg-config --cflags --libs libuv 2>/dev/null || echo -luv) -pthread -lm

demo: $(BUILD)/examples/demo
	@rm -rf $(BUILD)/demo && mkdir -p $(BUILD)/demo
	cd $(BUILD)/demo && ../examples/demo
	@echo "folded files: $$(ls $(BUILD)/demo/*.folded | tr '\n' ' ')"

test:
	@CC="$(CC)" CXX="$(CXX)" CFLAGS="$(CFLAGS)" BUILD="$(BUILD)" tests/run.sh

check:
	@CC="$(CC)" CXX="$(CXX)" BUILD="$(BUILD)" tests/check.sh

bench:
	@CC="$(CC)" BUILD="$(BUILD)" bench/run.sh

clean:
	rm -rf $(BUILD)
