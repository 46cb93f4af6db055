#!/bin/sh
# File operations run in DIR, then a listing of what they left: run by
# tests/tests/write.rs in a container (DIR from the image's layers) and in a
# plain directory holding the same files; both listings must match.
# DIR starts with: a.txt b.txt sub/c.txt gone/x.txt gone/deep/y.txt emptydir/
set -e
cd "$1"
echo new > created.txt
echo more >> a.txt
printf 'xy' > b.txt
truncate -s 3 created.txt
mv created.txt renamed.txt
cp a.txt over.txt
mv over.txt b.txt
rm sub/c.txt
echo again > sub/c.txt
mkdir d1
rmdir d1
mkdir -p d2/inner
rm -r gone
mkdir gone
echo fresh > gone/new.txt
ln a.txt hard.txt
ln -s a.txt soft.txt
chmod 640 a.txt
touch -d '2020-01-02 03:04:05' b.txt
rmdir emptydir
mkdir emptydir
rm -f nothing-here
if mv sub moved 2>/dev/null; then :; fi
ls -A moved 2>/dev/null || true
echo listing
find . -mindepth 1 \( -type d -printf '%p %y %m\n' \) -o \( -printf '%p %y %m %n %s %TY-%Tm-%Td\n' \) | sort
for f in $(find . -type f | sort); do echo "$f: $(cat "$f" | od -An -c | tr -s ' ' | head -c 60)"; done
readlink soft.txt
