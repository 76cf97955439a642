# The two commands of the README. Both install what is missing first.
#   make demo   run the appliance on its embedded defaults with the demo corpus ingested
#   make test   run the whole test suite
#   make fuzz   fuzz every parser of untrusted input, 1,000,000 executions per target
export CARGO_TARGET_DIR ?= $(HOME)/.cache/sanctum-target
export SANCTUM_MODELS__DIR ?= $(CURDIR)/.sanctum/models
# slm: the in-process language model (llama.cpp, mistralrs); opa-wasm: OPA wasm bundles as
# the policy engine. One feature set for build and test, so dependencies are compiled once.
FEATURES ?= sanctum/slm,sanctum/opa-wasm
SANCTUM := $(CARGO_TARGET_DIR)/debug/sanctum
DEMO_CONFIG := $(CURDIR)/.sanctum/demo.toml

.PHONY: setup build demo serve test test-cluster fuzz bundle bench-retrieval bench-scale bench-answer bench-policy bench-auth bench-ocr bench-sync bench-sync-smb bench-identifiers bench-audit bench-load bench-soak bench-questions bench-followups bench-escalation bench-finetune finetune-scifact clean-demo

setup:
	./scripts/setup.sh

# llama-cpp-sys-2 hard-links its shared libraries into the target directory and fails
# ("File exists") when an earlier build left dangling links there: remove those first.
CLEAN_LINKS := find $(CARGO_TARGET_DIR)/debug $(CARGO_TARGET_DIR)/debug/deps $(CARGO_TARGET_DIR)/debug/examples -maxdepth 1 -xtype l -name 'lib*.so*' -delete 2>/dev/null || true

build: setup
	$(CLEAN_LINKS)
	cargo build --bin sanctum --features $(FEATURES)

$(DEMO_CONFIG):
	mkdir -p .sanctum
	printf 'data_dir = "%s"\n\n[models]\ndir = "%s"\n' "$(CURDIR)/.sanctum/demo" "$(SANCTUM_MODELS__DIR)" > $@

demo: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) ingest deploy/demo
	$(SANCTUM) --config $(DEMO_CONFIG) user add ana --roles analyst --region us --groups clinical --exist-ok
	$(SANCTUM) --config $(DEMO_CONFIG) user add cole --roles clinician --region us --groups clinical --exist-ok
	$(SANCTUM) --config $(DEMO_CONFIG) search "How many visitors may be at a bedside in intensive care?" --k 3 --as ana --purpose operations
	$(SANCTUM) --config $(DEMO_CONFIG) search "when should staff wash hands with soap instead of alcohol rub" --k 3 --as ana
	$(SANCTUM) --config $(DEMO_CONFIG) ask "How many visitors may be at a bedside in intensive care?" --as cole --purpose treatment
	$(SANCTUM) --config $(DEMO_CONFIG) policy history
	$(SANCTUM) --config $(DEMO_CONFIG) audit tail -n 8
	$(SANCTUM) --config $(DEMO_CONFIG) audit verify
	$(SANCTUM) --config $(DEMO_CONFIG) doctor

# The demo appliance's REST API on https://127.0.0.1:8443 (after `make demo`); Ctrl-C stops it.
serve: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) serve

# Each fuzz target runs briefly first (scripts/fuzz.sh; a crash, hang or out-of-memory fails
# the run), then the cargo tests.
test: build
	./scripts/test-tools.sh
	./scripts/fuzz.sh --seconds 5
	$(CLEAN_LINKS)
	PREVIOUS_SANCTUM_BUNDLE="$$(./scripts/previous-bundle.sh)" && export PREVIOUS_SANCTUM_BUNDLE && \
		cargo test --workspace --no-fail-fast --features $(FEATURES) -- --test-threads 2

# The Qdrant cluster backend against a real three-peer cluster (issue 22). No registry ships
# a Qdrant server: QDRANT_BIN names one built from Qdrant's public source (v1.18); the suite
# fails with that message when it is unset. `make test` and CI do not run it.
test-cluster: build
	@test -n "$(QDRANT_BIN)" || { echo "make test-cluster: set QDRANT_BIN to a Qdrant server binary (v1.18); no package registry ships one"; exit 2; }
	$(CLEAN_LINKS)
	QDRANT_BIN="$(QDRANT_BIN)" cargo test -p sanctum --features $(FEATURES),sanctum/cluster-tests --test cluster -- --test-threads 1 --nocapture

# libFuzzer on every parser, the chunker and the citation parser: 1,000,000 executions per
# target, figures in BENCHMARKS.md (nightly, own target directory; see scripts/fuzz.sh).
fuzz:
	./scripts/fuzz.sh --runs 1000000

# The signed air-gapped bundle of a release build in dist/ (the signing key is made once, in
# .sanctum/keys; ship bundle-signing.pub to sites separately).
bundle: setup $(DEMO_CONFIG)
	cargo build --release --bin sanctum --features $(FEATURES)
	./deploy/fetch-debs.sh .sanctum/debs
	[ -f .sanctum/keys/bundle-signing.key ] || $(CARGO_TARGET_DIR)/release/sanctum bundle keygen --dir .sanctum/keys
	$(CARGO_TARGET_DIR)/release/sanctum --config $(DEMO_CONFIG) bundle build --out dist --signing-key .sanctum/keys/bundle-signing.key \
		--debs .sanctum/debs --binary $(CARGO_TARGET_DIR)/release/sanctum

bench-retrieval: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench retrieval --dataset ../shared/bench/scifact --json

bench-scale: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench scale --chunks 100000 --dataset ../shared/bench/scifact --json

bench-answer: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench answer --dataset ../shared/bench/scifact --limit 10 --json

# General questions over the demo corpus (deploy/demo-questions.jsonl) with the default
# answer model and every installed adapter next to its base.
bench-questions: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench questions --adapters all --json

bench-followups: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench followups --json

# The demo questions with escalation to Qwen2.5-Coder-1.5B, from the default answer model
# and from SmolLM2-135M: how often it fires, what it adds, what it changes.
bench-escalation: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench questions --models smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --escalate-to qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --json

# The SciFact answer adapter for SmolLM2-135M, trained here from the 809 training claims
# (never the test claims): export with the appliance's own retrieval, then train on CPU
# (--device cuda on a GPU host). FT_* tune it; the result lands in the models directory.
FT_BASE ?= smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
FT_NAME ?= scifact-smollm2
FT_PROMPT_TOKENS ?= 400
FT_ARGS ?= --epochs 1 --rank 16 --alpha 32 --lr 4e-4 --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj \
	--layers 8-29 --label-weight 4 --balance
FT_DIR := $(CURDIR)/.sanctum/finetune
finetune-scifact: build $(DEMO_CONFIG)
	mkdir -p $(FT_DIR)
	./scripts/train-env.sh >/dev/null
	[ -f $(FT_DIR)/scifact-train.jsonl ] || $(SANCTUM) --config $(DEMO_CONFIG) finetune export --fresh-library \
		--dataset ../shared/bench/scifact-train --model $(FT_BASE) --prompt-tokens $(FT_PROMPT_TOKENS) --out $(FT_DIR)/scifact-train.jsonl
	$(SANCTUM) --config $(DEMO_CONFIG) finetune train --base $(FT_BASE) --name $(FT_NAME) \
		--data $(FT_DIR)/scifact-train.jsonl --valid $(FT_DIR)/scifact-train.val.jsonl $(FT_ARGS)

# Before and after: the 300 SciFact test claims, SmolLM2 with and without its adapters and
# the untuned default model, on the same retrieved passages and prompt budget.
bench-finetune: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench answer --dataset ../shared/bench/scifact --limit 300 --backends llama-cpp \
		--models $(FT_BASE),qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
		--adapters all --prompt-tokens $(FT_PROMPT_TOKENS) --max-tokens 64 --json

bench-policy: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench policy --json

# The cost of accepting a credential per request: a provider JWT next to an API token.
bench-auth: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench auth --json

# OCR on rendered scans of known text: pages per second and character accuracy.
bench-ocr: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench ocr --json

bench-sync: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench sync --json

# The same over an SMB share: Samba started on loopback for the bench (root, samba installed).
bench-sync-smb: build $(DEMO_CONFIG)
	./scripts/bench-smb.sh $(SANCTUM) $(DEMO_CONFIG) --json

bench-audit: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench audit --dataset ../shared/bench/scifact --json

bench-identifiers: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench identifiers --json

clean-demo:
	rm -rf .sanctum/demo $(DEMO_CONFIG)

# 50 clients searching the REST API over HTTPS for 60 s (BENCHMARKS.md)
bench-load: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench load --dataset ../shared/bench/scifact --clients 50 --seconds 60 --json

# The soak: 50 clients for 10 minutes mixing searches, questions, uploads and listings.
bench-soak: build $(DEMO_CONFIG)
	$(SANCTUM) --config $(DEMO_CONFIG) bench load --dataset ../shared/bench/scifact --docs 100 --clients 50 --seconds 600 \
		--mix search=70,ask=5,upload=10,list=15 --json
