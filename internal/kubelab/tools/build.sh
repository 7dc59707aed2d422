#!/bin/sh
# Builds the test cluster's binaries into $1 (make kube-bins). The real store
# is a cache outside the repo, $2/<key>, keyed on the sha256 of this module's
# go.mod, go.sum, mains and this script: a second run, also from a fresh clone
# elsewhere, only copies. The Go build cache is never kept in the repo. The
# cache keeps the two keys used last (a branch that changes the tools module
# and main can alternate without rebuilding); older ones are removed. A
# checkout's bin/kube holds hard links, so removing a key breaks none.
set -eu
out=$1
cache=$2
cd "$(dirname "$0")"
tools=$(pwd)
k8s_version=v1.37.2
key=$( (cat build.sh go.mod go.sum; find cmd -name '*.go' | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)
dir=$cache/$key
if [ ! -f "$dir/.complete" ]; then
    echo "kube-bins: building into $dir (cold: about 15 minutes on 2 cores)"
    mkdir -p "$cache"
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    CGO_ENABLED=0 go build -trimpath -o "$dir.tmp/" \
        -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean" \
        ./cmd/...
    touch "$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
fi
touch "$dir"
for old in $(ls -1t "$cache" | grep -v '\.tmp$' | tail -n +3); do
    if [ -f "$cache/$old/.complete" ]; then rm -rf "${cache:?}/$old"; fi
done
cd - >/dev/null
mkdir -p "$out"
for f in "$dir"/*; do
    b=$(basename "$f")
    ln -f "$f" "$out/$b" 2>/dev/null || cp -f "$f" "$out/$b"
done
echo "$key" > "$out/.key"
echo "kube-bins: $(ls "$dir" | tr '\n' ' ')in $out (cache $dir)"
