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

# make install: the header, and a pkg-config file (share/: there is no binary)
PREFIX     ?= /usr/local
INCLUDEDIR ?= $(PREFIX)/include
PCDIR      ?= $(PREFIX)/share/pkgconfig
VERSION    := $(shell awk '/^.define DIAGNOSE_VERSION_(MAJOR|MINOR|PATCH) /{v = v s $$3; s = "."} END {print v}' diagnose.h)

.PHONY: all help demo test check bench clean install uninstall
all: $(EXAMPLES)

help:
	@echo "make          build the examples into $(BUILD)/examples"
	@echo "make demo     run the demo: summary table and folded files in $(BUILD)/demo"
	@echo "make test     build and run every test (C99, C++11, DIAGNOSE_DISABLE)"
	@echo "make check    sanitizers, valgrind, compiler matrix, static analysis, fuzz"
	@echo "make bench    benchmarks: overhead ratios, memory, dump speed, stable load"
	@echo "make clean    remove $(BUILD)"
	@echo "make install  diagnose.h and diagnose.pc into PREFIX=$(PREFIX) (DESTDIR staged)"
	@echo "make uninstall  remove what make install put there"

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

install:
	install -d "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PCDIR)"
	install -m 644 diagnose.h "$(DESTDIR)$(INCLUDEDIR)/diagnose.h"
	printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$(INCLUDEDIR)' '' 'Name: diagnose' \
	    'Description: exact profiling of asynchronous C code, written as flame graphs' \
	    'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -pthread' >"$(DESTDIR)$(PCDIR)/diagnose.pc"
	chmod 644 "$(DESTDIR)$(PCDIR)/diagnose.pc"

uninstall:
	rm -f "$(DESTDIR)$(INCLUDEDIR)/diagnose.h" "$(DESTDIR)$(PCDIR)/diagnose.pc"
