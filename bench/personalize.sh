#!/usr/bin/env bash
# Card personalization throughput: every chip file (EF.COM, DG1, DG2 with the face photo in an
# ISO/IEC 19794-5 record, DG13) and the EF.SOD signature (CMS, SHA-256, ECDSA P-256), on one
# thread; once with software keys, once with the keys on a SoftHSM2 token (PKCS#11).
# Usage: bench/personalize.sh   (CARDS=20000 HSM_CARDS=5000 RUNS=3; BACKENDS="software pkcs11")
set -euo pipefail
cd "$(dirname "$0")/.."
CARDS="${CARDS:-20000}"
HSM_CARDS="${HSM_CARDS:-5000}"
RUNS="${RUNS:-3}"
BACKENDS="${BACKENDS:-software pkcs11}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p dancu
bin="$target/release/dancu"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
photo=crates/dancu-card/testdata/face.jpg
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(date -u +%F)"
echo "photo: $photo ($(stat -c %s "$photo") bytes)"
for backend in $BACKENDS; do
  case "$backend" in
    software)
      "$bin" pki init --pki "$work/pki-software" >/dev/null
      for i in $(seq "$RUNS"); do
        echo -n "software run $i: "
        taskset -c 0 "$bin" card bench --pki "$work/pki-software" --photo "$photo" --cards "$CARDS"
      done
      ;;
    pkcs11)
      module=""
      for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do [ -e "$m" ] && module="$m" && break; done
      [ -n "$module" ] || { echo "SoftHSM2 is not installed (apt-get install softhsm2)" >&2; exit 1; }
      mkdir -p "$work/tokens"
      printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" >"$work/softhsm2.conf"
      export SOFTHSM2_CONF="$work/softhsm2.conf"
      export DANCU_PKCS11_PIN=246810
      softhsm2-util --init-token --free --label dancu-bench --so-pin 13579 --pin "$DANCU_PKCS11_PIN" >/dev/null
      "$bin" pki init --pki "$work/pki-hsm" --token dancu-bench --module "$module" >/dev/null
      for i in $(seq "$RUNS"); do
        echo -n "pkcs11 (SoftHSM2) run $i: "
        taskset -c 0 "$bin" card bench --pki "$work/pki-hsm" --photo "$photo" --cards "$HSM_CARDS"
      done
      ;;
  esac
done
