#!/usr/bin/env bash
# make-disk-corpus.sh - build the disk decoder test corpus with qemu-img, the reference.
# Usage: tools/make-disk-corpus.sh OUT_DIR
#
# Three inputs at odd sizes (not a multiple of a grain, a cluster or even a sector):
#   random  1 MiB + 1659 bytes of pseudo-random data (stored deflate blocks)
#   text    3 MiB + 777 bytes of base64 text (deflate really compresses it)
#   sparse  72 MiB + 2567 bytes, mostly zeros; data across grain, grain-table (32 MiB) and
#           L2 boundaries and in the partial last grain
# each converted by qemu-img into every format we decode, plus images edited with qemu-io
# (zero clusters, zeroed-grain entries, qcow2 subclusters). OUT_DIR/manifest.tsv lists
#   <name> <TAB> <image path relative to OUT_DIR> <TAB> <sha256 of qemu-img convert -O raw> <TAB> <size>
# Data is deterministic (AES-CTR keystream), so the corpus is the same on every machine.
set -euo pipefail

out=${1:?usage: make-disk-corpus.sh OUT_DIR}
command -v qemu-img >/dev/null || { echo "make-disk-corpus: qemu-img not found (qemu-utils)" >&2; exit 1; }
command -v qemu-io >/dev/null || { echo "make-disk-corpus: qemu-io not found (qemu-utils)" >&2; exit 1; }
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cd "$out.tmp"

# Deterministic pseudo-random bytes: $1 = count, $2 = key byte.
prng() {
  head -c "$1" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$2")" -iv "$(printf '%032x' 0)"
}
# Writes $3 bytes of stream $4 into file $1 at byte offset $2, in place.
poke() {
  prng "$3" "$4" | dd of="$1" bs=64k seek="$2" oflag=seek_bytes conv=notrunc status=none
}

prng $((1048576 + 1659)) 1 >random.raw
prng $((2359296 + 777)) 2 | base64 -w 76 >text.b64
head -c $((3145728 + 777)) text.b64 >text.raw
rm text.b64
truncate -s $((75497472 + 2567)) sparse.raw
poke sparse.raw 0 $((65536 + 100)) 3                    # first grain and a bit of the second
poke sparse.raw $((5 * 1048576 + 4096)) 204800 4        # inside, unaligned
poke sparse.raw $((32 * 1048576 - 1000)) 65536 5        # across the first grain-table boundary
poke sparse.raw $((64 * 1048576 + 512)) 4096 6          # a lone sector
poke sparse.raw $((75497472 + 2567 - 3000)) 3000 7      # the partial last grain/cluster

manifest=manifest.tsv
: >"$manifest"
add() {  # name image
  local name=$1 image=$2 sum size
  qemu-img convert -O raw "$image" "expected.raw"
  sum=$(sha256sum expected.raw | cut -d' ' -f1)
  size=$(stat -c %s expected.raw)
  rm -f expected.raw
  printf '%s\t%s\t%s\t%s\n' "$name" "$image" "$sum" "$size" >>"$manifest"
}

for input in random text sparse; do
  src=$input.raw
  add "$input.raw" "$src"
  for sub in streamOptimized monolithicSparse monolithicFlat twoGbMaxExtentFlat twoGbMaxExtentSparse; do
    mkdir -p "$input-$sub"
    qemu-img convert -f raw -O vmdk -o subformat=$sub "$src" "$input-$sub/disk.vmdk"
    add "$input.vmdk-$sub" "$input-$sub/disk.vmdk"
  done
  qemu-img convert -f raw -O qcow2 -o compat=0.10 "$src" "$input.v2.qcow2"
  add "$input.qcow2-v2" "$input.v2.qcow2"
  qemu-img convert -f raw -O qcow2 -o compat=1.1 "$src" "$input.v3.qcow2"
  add "$input.qcow2-v3" "$input.v3.qcow2"
  qemu-img convert -f raw -O qcow2 -o cluster_size=4096 "$src" "$input.c4k.qcow2"
  add "$input.qcow2-4k-clusters" "$input.c4k.qcow2"
  qemu-img convert -f raw -O qcow2 -o cluster_size=512 "$src" "$input.c512.qcow2"
  add "$input.qcow2-512-clusters" "$input.c512.qcow2"
  qemu-img convert -f raw -O qcow2 -c "$src" "$input.zlib.qcow2"
  add "$input.qcow2-zlib" "$input.zlib.qcow2"
  qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$src" "$input.zstd.qcow2"
  add "$input.qcow2-zstd" "$input.zstd.qcow2"
  qemu-img convert -f raw -O qcow2 -c -o compat=0.10 "$src" "$input.v2zlib.qcow2"
  add "$input.qcow2-v2-zlib" "$input.v2zlib.qcow2"
  qemu-img convert -f raw -O qcow2 -o extended_l2=on "$src" "$input.l2x.qcow2"
  add "$input.qcow2-extended-l2" "$input.l2x.qcow2"
done

# qcow2 v3 zero clusters: flagged zero over allocated data, and unmapped zero.
qemu-img convert -f raw -O qcow2 random.raw edit-zero.qcow2
qemu-io -f qcow2 -c 'write -z 0 128k' -c 'write -z -u 256k 64k' -c 'write -P 0x5a 300k 1k' \
  edit-zero.qcow2 >/dev/null
add "edit.qcow2-zero-clusters" edit-zero.qcow2

# qcow2 subclusters: partial writes into an extended-L2 image (32 KiB clusters, 1 KiB
# subclusters), then zeroes over part of a cluster.
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=32k edit-sub.qcow2 $((2 * 1048576 + 1536))
qemu-io -f qcow2 -c 'write -P 0x11 1k 3k' -c 'write -P 0x22 40k 1k' -c 'write -P 0x33 64k 64k' \
  -c 'write -z 70k 2k' -c 'write -P 0x44 2047k 1k' edit-sub.qcow2 >/dev/null
add "edit.qcow2-subclusters" edit-sub.qcow2

# VMDK zeroed-grain entries (GTE = 1) over written grains.
qemu-img create -q -f vmdk -o zeroed_grain=on edit-zg.vmdk $((3 * 1048576 + 1024))
qemu-io -f vmdk -c 'write -P 0x66 0 256k' -c 'write -z 64k 128k' -c 'write -P 0x77 1M 64k' \
  edit-zg.vmdk >/dev/null
add "edit.vmdk-zeroed-grain" edit-zg.vmdk

# Whole grains only: qemu-img then ends the stream right after the last grain, with neither an
# end-of-stream marker nor padding (a partial last grain gets zero padding instead).
prng 1048576 8 >grains.raw
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized grains.raw grains.vmdk
add "grains.vmdk-streamOptimized" grains.vmdk

# Tiny images: a virtual size below one grain or cluster.
printf 'tiny disk' >tiny.raw
truncate -s 1536 tiny.raw
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized tiny.raw tiny.vmdk
add "tiny.vmdk-streamOptimized" tiny.vmdk
qemu-img convert -f raw -O qcow2 tiny.raw tiny.qcow2
add "tiny.qcow2-v3" tiny.qcow2

# Small seeds for the fuzz targets (tests/fuzz): one directory per parser, files of a few KB
# where the format allows (qcow2 with 512-byte clusters; VMDK sparse files carry a 64 KiB
# overHead). Not in the manifest.
mkdir -p fuzz-seeds/qcow2 fuzz-seeds/vmdk-stream fuzz-seeds/vmdk-sparse fuzz-seeds/vmdk-descriptor
head -c 3000 random.raw >seed.raw
truncate -s 20480 seed.raw
qemu-img convert -f raw -O qcow2 -o cluster_size=512 seed.raw fuzz-seeds/qcow2/v3.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=512,compat=0.10 seed.raw fuzz-seeds/qcow2/v2.qcow2
qemu-img convert -f raw -O qcow2 -c -o cluster_size=512 seed.raw fuzz-seeds/qcow2/zlib.qcow2
qemu-img convert -f raw -O qcow2 -c -o cluster_size=512,compression_type=zstd seed.raw \
  fuzz-seeds/qcow2/zstd.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=16k,extended_l2=on seed.raw fuzz-seeds/qcow2/l2x.qcow2
qemu-io -f qcow2 -c 'write -z 0 512' fuzz-seeds/qcow2/v3.qcow2 >/dev/null
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized seed.raw fuzz-seeds/vmdk-stream/qemu.vmdk
qemu-img convert -f raw -O vmdk seed.raw fuzz-seeds/vmdk-sparse/sparse.vmdk
cp fuzz-seeds/vmdk-stream/qemu.vmdk fuzz-seeds/vmdk-sparse/stream.vmdk
cp random-monolithicFlat/disk.vmdk fuzz-seeds/vmdk-descriptor/flat.vmdk
cp random-twoGbMaxExtentSparse/disk.vmdk fuzz-seeds/vmdk-descriptor/sparse.vmdk
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="custom"\nRW 8 FLAT "a.vmdk" 2\nRW 4 ZERO\nRDONLY 16 SPARSE "b.vmdk"\nRW 8 VMFS "sub/c.vmdk"\nddb.adapterType = "lsilogic"\n' \
  >fuzz-seeds/vmdk-descriptor/custom.vmdk
rm seed.raw

cd - >/dev/null
rm -rf "$out"
mv "$out.tmp" "$out"
echo "make-disk-corpus: $(wc -l <"$out/manifest.tsv") images in $out"
