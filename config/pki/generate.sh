#!/bin/sh
# Recreates the SYNTHETIC test PKI the example configuration points at (never use it in production):
#   config/trust/test-ca.pem                       trust anchor (paths.trust_dir)
#   config/pki/gateway-90000-{key,cert}.pem        the gateway's own signing identity ([gateway])
#   config/pki/{hospital,kommune,legekontor}-sign.pem   enterprise signing certificates of the
#                                                  register's organisations (party.certificates),
#   with their keys next to them (*-key.pem) for tests that sign as a sender.
# Run from anywhere: sh config/pki/generate.sh
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ext="$tmp/ext.cnf"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n' > "$ext"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/C=NO/O=helsemelding TEST CA/CN=helsemelding synthetic test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tmp/ca-key.pem" -out ../trust/test-ca.pem 2>/dev/null
issue() { # name subject certificate-file
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1-key.pem" -out "$tmp/$1.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/$1.csr" -CA ../trust/test-ca.pem -CAkey "$tmp/ca-key.pem" \
    -CAserial "$tmp/ca.srl" -CAcreateserial -days 3650 -extfile "$ext" -out "$3" 2>/dev/null
}
issue gateway-90000 "/C=NO/O=helsemelding gateway TEST/serialNumber=990000000" gateway-90000-cert.pem
issue hospital "/C=NO/O=Testsykehuset HF TEST/serialNumber=990000101" hospital-sign.pem
issue kommune "/C=NO/O=Testvik kommune TEST/serialNumber=990000201" kommune-sign.pem
issue legekontor "/C=NO/O=Testvik legekontor TEST/serialNumber=990000301" legekontor-sign.pem
echo "synthetic test PKI written to config/pki and config/trust"
