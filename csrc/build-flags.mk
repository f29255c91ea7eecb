# Rebuild when the flags change, not only the sources (included by csrc/Makefile and
# csrc/fuzz/Makefile; GNU make 4.2+ for $(file <)). The includer sets OUT and BUILD_FLAGS (every
# compiler, flag and -D its outputs depend on) and makes its objects and programs depend on
# $(FLAGS_FILE): that file is rewritten, at parse time, only when BUILD_FLAGS differ from the last
# build's, so `CFLAGS=-Os` or `-DW2S_NO_SIMD` after an -O2 build in the same OUT rebuilds instead
# of silently linking, sizing or running the old objects.
FLAGS_FILE := $(OUT)/build-flags
ifneq ($(file < $(FLAGS_FILE)),$(BUILD_FLAGS))
  $(shell mkdir -p $(OUT))
  $(file > $(FLAGS_FILE),$(BUILD_FLAGS))
endif

# the file again after a `make clean` in the same run; the includer's default goal stays its own
# (an empty .DEFAULT_GOAL lets make take the next target it reads)
build_flags_goal := $(.DEFAULT_GOAL)
$(FLAGS_FILE):
	@$(shell mkdir -p $(OUT))$(file > $@,$(BUILD_FLAGS))
.DEFAULT_GOAL := $(build_flags_goal)
