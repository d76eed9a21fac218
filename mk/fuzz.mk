# make fuzz [SECONDS=N]: builds the request-decoder fuzz target with libFuzzer and AddressSanitizer and runs it
# for N seconds (default 60) from the seed corpus in Fuzz/seeds. Inputs that crash, leak or hang are written to
# fuzz-artifacts/ (gitignored); what the fuzzer learns accumulates in .build-fuzz/corpus, so later runs resume.
# Reproduce a finding with: .build-fuzz/request-decoder-fuzzer fuzz-artifacts/crash-…
#
# SwiftPM cannot link a libFuzzer executable target, so the modules the target needs are compiled with swiftc
# directly: StrictJSON, IncidentProtocol, Gazetteer (without its TOML loading, see Fuzz/RequestDecoderFuzzer.swift)
# and IncidentDomain, each instrumented for coverage.

SWIFTC ?= swiftc
FUZZ_DIR := $(CURDIR)/.build-fuzz
FUZZ_TARGET := $(FUZZ_DIR)/request-decoder-fuzzer
FUZZ_FLAGS := -O -sanitize=fuzzer,address -parse-as-library -swift-version 6 -package-name incidentd -g -use-ld=lld -I $(FUZZ_DIR)
FUZZ_MAX_LEN ?= 16384
FUZZ_GAZETTEER_SOURCES := $(filter-out %/TOMLLoading.swift %/EmbeddedCities.swift,$(wildcard Sources/Gazetteer/*.swift))

.PHONY: fuzz fuzz-build fuzz-stored fuzz-stored-build fuzz-stored-seeds

# One module: objects and .swiftmodule in .build-fuzz; $(4), flags of its own.
define fuzz_module
$(FUZZ_DIR)/$(1).o: $(2) $(3)
	@mkdir -p $(FUZZ_DIR)
	$(SWIFTC) $(FUZZ_FLAGS) $(4) -module-name $(1) -emit-module -emit-module-path $(FUZZ_DIR)/$(1).swiftmodule \
		-wmo -c -o $(FUZZ_DIR)/$(1).o $(2)
endef

$(eval $(call fuzz_module,StrictJSON,$(wildcard Sources/StrictJSON/*.swift),))
$(eval $(call fuzz_module,IncidentProtocol,$(wildcard Sources/IncidentProtocol/*.swift),$(FUZZ_DIR)/StrictJSON.o))
$(eval $(call fuzz_module,Gazetteer,$(FUZZ_GAZETTEER_SOURCES),))
$(eval $(call fuzz_module,IncidentDomain,$(wildcard Sources/IncidentDomain/*.swift),$(FUZZ_DIR)/StrictJSON.o $(FUZZ_DIR)/Gazetteer.o))

FUZZ_OBJECTS := $(addprefix $(FUZZ_DIR)/,StrictJSON.o IncidentProtocol.o Gazetteer.o IncidentDomain.o)

FUZZ_SHARED_SOURCES := Fuzz/FuzzGazetteer.swift Fuzz/FuzzDocumentStore.swift

$(FUZZ_TARGET): Fuzz/RequestDecoderFuzzer.swift $(FUZZ_SHARED_SOURCES) $(FUZZ_OBJECTS)
	$(SWIFTC) $(FUZZ_FLAGS) -module-name RequestDecoderFuzzer Fuzz/RequestDecoderFuzzer.swift $(FUZZ_SHARED_SOURCES) \
		$(FUZZ_OBJECTS) -o $@

fuzz-build: $(FUZZ_TARGET)

fuzz: $(FUZZ_TARGET)
	@mkdir -p fuzz-artifacts $(FUZZ_DIR)/corpus
	SWIFT_BACKTRACE=enable=no $(FUZZ_TARGET) -max_total_time=$(SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=4096 \
		-dict=Fuzz/request.dict -print_final_stats=1 -artifact_prefix=$(CURDIR)/fuzz-artifacts/ $(FUZZ_DIR)/corpus Fuzz/seeds

# make fuzz-stored [SECONDS=N]: the decoders of what the log reads back from LMDB, which may be damaged (see
# Fuzz/StoredFormFuzzer.swift), from the seeds in Fuzz/stored-seeds; what it learns accumulates in
# .build-fuzz/stored-corpus. Reproduce a finding with: .build-fuzz/stored-form-fuzzer fuzz-artifacts/crash-…
#
# The target is compiled into the IncidentLog module itself, so that its internal readers (StoredEventReader,
# StreamFold, the head record) are reachable, with LMDB (linked with liblmdb) and, in place of swift-crypto (which
# builds BoringSSL), Fuzz/CryptoStub: SHA-256 in plain Swift under the module name Crypto.
STORED_FUZZ_TARGET := $(FUZZ_DIR)/stored-form-fuzzer
STORED_FUZZ_SOURCES := Fuzz/StoredFormFuzzer.swift Fuzz/StoredSeeds.swift $(FUZZ_SHARED_SOURCES)

$(eval $(call fuzz_module,Crypto,Fuzz/CryptoStub/SHA256.swift,))
$(eval $(call fuzz_module,LMDB,$(wildcard Sources/LMDB/*.swift Sources/LMDB/Internals/*.swift),,-I Sources/CLMDB))

STORED_FUZZ_OBJECTS := $(addprefix $(FUZZ_DIR)/,StrictJSON.o Gazetteer.o IncidentDomain.o Crypto.o LMDB.o)

$(STORED_FUZZ_TARGET): $(STORED_FUZZ_SOURCES) $(wildcard Sources/IncidentLog/*.swift) $(STORED_FUZZ_OBJECTS)
	$(SWIFTC) $(FUZZ_FLAGS) -I Sources/CLMDB -module-name IncidentLog $(wildcard Sources/IncidentLog/*.swift) \
		$(STORED_FUZZ_SOURCES) $(STORED_FUZZ_OBJECTS) -llmdb -o $@

fuzz-stored-build: $(STORED_FUZZ_TARGET)

fuzz-stored: $(STORED_FUZZ_TARGET)
	@mkdir -p fuzz-artifacts $(FUZZ_DIR)/stored-corpus
	SWIFT_BACKTRACE=enable=no $(STORED_FUZZ_TARGET) -max_total_time=$(SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 \
		-rss_limit_mb=4096 -dict=Fuzz/stored.dict -print_final_stats=1 -artifact_prefix=$(CURDIR)/fuzz-artifacts/ \
		$(FUZZ_DIR)/stored-corpus Fuzz/stored-seeds

# Writes Fuzz/stored-seeds again from the article's events.
fuzz-stored-seeds: $(STORED_FUZZ_TARGET)
	@mkdir -p Fuzz/stored-seeds
	STORED_FUZZ_SEEDS_FROM=examples/article.jsonl STORED_FUZZ_SEEDS_TO=Fuzz/stored-seeds $(STORED_FUZZ_TARGET)
