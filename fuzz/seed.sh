#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the repository's own fixtures (never committed: fuzz/corpus is
# git-ignored). Signed envelopes for cms_verify are made here with the test PKI (fixtures/pki):
# good signers, a bad signer, and an AppRec. With SHARED_CORPUS=1 it also adds ../shared/corpus
# (third-party material: used at run time only, never copied into the repository).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=..
mkdir -p corpus/xml_reader corpus/xsd_validate corpus/model_parse corpus/cms_verify corpus/amqp10
for f in "$ROOT"/fixtures/messages/*/*.xml; do
  n="$(basename "$(dirname "$f")")-$(basename "$f")"
  for t in xml_reader xsd_validate model_parse; do cp -f "$f" "corpus/$t/$n"; done
done
# Our hostile corpus (fixtures/hostile/*.bin, content before signing) is a good start for the XML side.
for f in "$ROOT"/fixtures/hostile/*.bin; do
  for t in xml_reader xsd_validate model_parse; do cp -f "$f" "corpus/$t/hostile-$(basename "$f")"; done
done
if [ "${SHARED_CORPUS:-0}" = 1 ] && [ -d "$ROOT/../shared/corpus" ]; then
  find "$ROOT/../shared/corpus" -name '*.xml' | head -400 | while read -r f; do
    for t in xml_reader xsd_validate model_parse; do cp -f "$f" "corpus/$t/shared-$(basename "$f")"; done
  done
fi
# Signed envelopes: the helsemelding binary's `sign` command (the release build CI already has,
# else a debug build).
if [ -z "$(ls -A corpus/cms_verify 2>/dev/null)" ]; then
  # Wherever cargo puts its builds (CARGO_TARGET_DIR is honoured, as cargo itself does).
  TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  BIN="$TARGET_DIR/release/helsemelding"
  if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && cargo build --quiet --bin helsemelding)
    BIN="$TARGET_DIR/debug/helsemelding"
  fi
  i=0
  for f in "$ROOT"/fixtures/messages/delivered/*.xml "$ROOT"/fixtures/messages/rejected/T01-not-well-formed.xml; do
    for who in parties/81234-sign legacy/seid1-rsa2048-sign bad/revoked-sign; do
      i=$((i+1))
      "$BIN" sign --key "$ROOT/fixtures/pki/$who.key" --cert "$ROOT/fixtures/pki/$who.pem" "$f" "corpus/cms_verify/env-$i.der" >/dev/null
    done
  done
fi
echo "seeded: $(for t in corpus/*; do printf '%s=%s ' "$(basename "$t")" "$(ls "$t" | wc -l)"; done)"
