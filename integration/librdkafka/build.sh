#!/usr/bin/env bash
# Builds librdkafka's own regression suite (`tests/test-runner` of confluentinc/librdkafka) so it can run
# against a Chronik cluster: the conformance bar for the Kafka protocol as librdkafka's authors test it.
#
# The source is Debian's copy of the upstream release (the same tarball GitHub serves, checked against
# the SHA-256 in Debian's .dsc), fetched from deb.debian.org because CI reaches Debian's archive. Nothing
# of it is committed. The build goes to $LIBRDKAFKA_SUITE_DIR (default target/librdkafka-suite) and is
# reused when test-runner is already there.
#
# Needs gcc/g++, make, python3, and the -dev packages of zlib, zstd, lz4 and OpenSSL (.ci/run installs
# them).
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=2.8.0
SHA256=5bd1c46f63265f31c6bfcedcde78703f77d28238eadf23821c2b43fc30be3e25
URL="http://deb.debian.org/debian/pool/main/libr/librdkafka/librdkafka_${VERSION}.orig.tar.gz"
DEST="${LIBRDKAFKA_SUITE_DIR:-target/librdkafka-suite}"
SRC="$DEST/librdkafka-$VERSION"

if [ -x "$SRC/tests/test-runner" ]; then
  echo "$SRC/tests/test-runner"
  exit 0
fi

mkdir -p "$DEST"
tarball="$DEST/librdkafka_${VERSION}.orig.tar.gz"
if ! echo "$SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
  curl -fsS --retry 3 -o "$tarball.part" "$URL"
  echo "$SHA256  $tarball.part" | sha256sum -c --status || {
    echo "librdkafka $VERSION: checksum mismatch for $URL" >&2
    exit 1
  }
  mv "$tarball.part" "$tarball"
fi
rm -rf "$SRC"
tar -xzf "$tarball" -C "$DEST"

jobs="$(nproc)"
(
  cd "$SRC"
  # GSSAPI and the HTTP client (OIDC) are not exercised against Chronik; SSL stays for the security
  # tests.
  ./configure --disable-gssapi --disable-curl --disable-debug-symbols >chronik-configure.txt 2>&1 ||
    { tail -40 chronik-configure.txt >&2; exit 1; }
  make -j"$jobs" libs >chronik-build.txt 2>&1 || { tail -40 chronik-build.txt >&2; exit 1; }
  make -j"$jobs" -C tests test-runner >>chronik-build.txt 2>&1 || { tail -40 chronik-build.txt >&2; exit 1; }
) >&2
echo "$SRC/tests/test-runner"
