# `make dist`: the binary distribution, dist/lpmx-VERSION-x86_64-linux.tar.gz
# (see scripts/dist). The other entry points are scripts/setup and scripts/test.
.PHONY: dist
dist:
	scripts/dist
