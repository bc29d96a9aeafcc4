# cocoon — one set-up command, one test command.
#   make setup   system packages (Debian bookworm + bookworm-backports) and .venv with pinned PyPI packages
#   make demo    set up if needed, build the guest image if missing, boot it under QEMU, attest it, run a pod;
#                then the mesh demo (coordinator VM + two app VMs, cocoon set/verify, mTLS between pods)
#   make test    set up if needed, lint (ruff + mypy) + every test (unit, image build x2, QEMU end-to-end)
#   make bench   performance figures (ratios to a baseline measured in the same run)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE ?= $(HOME)/.cache/cocoon
# ovmf: firmware to measure;
# runc, busybox-static, erofs-utils, cryptsetup-bin, iproute2: the container tests (real runtime, verity layers);
# gcc: igvm/snp/_sha384mb.c (multi-buffer SHA-384 for SNP page hashing);
# gcc g++ make nasm acpica-tools uuid-dev quilt mtools dosfstools grub-efi-amd64-bin: the SNP firmware (edk2 AmdSev)
# swtpm swtpm-tools: measured-boot test of the RTMR prediction (tests/test_tpm_measured_boot.py)
# docker-registry skopeo: cocoon generate's tests pull from a real registry on 127.0.0.1 (images pushed with skopeo)
# zstd: sim launches boot the kernel's decompressed payload through its PVH entry (launcher/pvh.py)
# containerd containernetworking-plugins: the shim tests (issue 23) run a real containerd 1.6 and CNI's plugins
# openssl: a relying party's `openssl s_client -CAfile mesh-ca.pem` against a pod (the coordinator's tests)
APT_PACKAGES := ovmf runc busybox-static erofs-utils cryptsetup-bin iproute2 kmod bubblewrap \
	gcc g++ make nasm acpica-tools uuid-dev quilt mtools dosfstools grub-efi-amd64-bin swtpm swtpm-tools zstd docker-registry skopeo \
	containerd containernetworking-plugins openssl
BACKPORTS_PACKAGES := mkosi qemu-system-x86
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt venv bytecode test qemu-test demo firmware lint bench reference-values clean image repro-check

setup: apt venv bytecode

# Compile our own modules once: with PYTHONDONTWRITEBYTECODE set (as on these machines) an editable
# install would otherwise recompile every module on every `cocoon` start. Stale .pyc files are ignored
# by Python (source mtime check), so this only ever saves time.
bytecode: venv
	@$(PY) -m compileall -q -j 0 agent igvm cocoon verifier launcher image generator coordinator shim >/dev/null

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	bpo=""; for p in $(BACKPORTS_PACKAGES); do \
	  case "$$(dpkg-query -W -f='$${Version}' $$p 2>/dev/null)" in *bpo12*) ;; *) bpo="$$bpo $$p";; esac; done; \
	if [ -n "$$missing$$bpo" ]; then \
	  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	    echo "deb http://deb.debian.org/debian bookworm-backports main" | $(SUDO) tee /etc/apt/sources.list.d/cocoon-backports.list >/dev/null; \
	  fi; \
	  echo "installing:$$missing$${bpo:+ (backports:$$bpo)}"; \
	  $(SUDO) apt-get update -qq; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi; \
	  if [ -n "$$bpo" ]; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq -t bookworm-backports $$bpo; fi; \
	else echo "system packages present: $(APT_PACKAGES) $(BACKPORTS_PACKAGES) (backports)"; fi

venv: $(VENV)/.installed

# igvm/snp/_sha384mb.c is compiled by this install (an editable install builds it in place)
$(VENV)/.installed: pyproject.toml igvm/snp/_sha384mb.c
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# ruff, then mypy (strict; pyproject's [tool.mypy]); qemu-tests/ apart: its conftest would clash with tests/'s
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy qemu-tests

# tests/ then qemu-tests/ (the built image booted under QEMU); COCOON_SKIP_IMAGE=1 skips both image parts.
# COCOON_LOCK=report: a Debian update since the lock was written is printed, not fatal (image/lock.py).
test: setup lint
	COCOON_REPRO=$${COCOON_REPRO-1} COCOON_LOCK=$${COCOON_LOCK-report} $(PY) -m pytest -q tests qemu-tests

# Only the QEMU end-to-end scenarios (builds the image into build/qemu-image unless COCOON_QEMU_IMAGE=out).
qemu-test: setup
	$(PY) -m pytest -q qemu-tests

# The main job: build what is missing, boot under QEMU with the sim TEE, show every guarantee hold.
# COCOON_LOCK=report as for the tests: a Debian update since the lock was written is a warning (docs/decisions.md).
demo: setup
	COCOON_LOCK=$${COCOON_LOCK-report} $(VENV)/bin/cocoon demo --image out
	$(VENV)/bin/cocoon mesh-demo --image out

bench: venv
	$(PY) -m bench.measure
	$(PY) -m bench.startup
	$(PY) -m bench.policy
	$(PY) -m bench.rpc
	$(PY) -m bench.containers
	$(PY) -m bench.verify
	$(PY) -m bench.generate
	$(PY) -m bench.image_stream
	$(PY) -m bench.kbs
	$(PY) -m bench.coordinator
	@[ -n "$$COCOON_QEMU_IMAGE" ] || [ -f out/vmlinuz ] || $(MAKE) image  # the shim bench boots the guest image
	$(PY) -m bench.shim

# The main job of the measurement core: reference values for Debian's OVMF.
reference-values: venv
	$(VENV)/bin/cocoon reference-values --ovmf /usr/share/ovmf/OVMF.fd -o reference-values.json

clean:
	rm -rf $(VENV) build *.egg-info igvm/snp/*.so

# SNP firmware with the kernel-hashes section (edk2 AmdSevX64 from trixie's source), cached in $(CACHE)/firmware.
firmware: venv
	$(PY) -m image.firmware --out out --cache $(CACHE)

# The guest image (mkosi root tree -> erofs + dm-verity, kernel, cmdline) into out/.
image: venv
	$(PY) -m image.build --out out --build-dir build

# Two clean builds of this commit must give identical outputs.
repro-check: venv
	rm -rf build/repro-a build/repro-b
	$(PY) -m image.build --fresh --out build/repro-a/out --build-dir build/repro-a
	$(PY) -m image.build --fresh --out build/repro-b/out --build-dir build/repro-b
	$(PY) -m image.compare build/repro-a build/repro-b
