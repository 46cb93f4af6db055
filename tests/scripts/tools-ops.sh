#!/bin/sh
# What everyday tools do to files, then a listing of what they left: run by
# tests/tests/fidelity.rs in DIR inside a container and in a plain
# directory outside, as the same ordinary user; both outputs must match.
set -e
cd "$1"
mkdir -p src/a/b
echo one > src/a/one
echo two > src/a/b/two
ln -s a/one src/link
ln src/a/one src/hard
chmod 600 src/a/b/two
touch -d '2020-01-02 03:04:05' src/a/one
cp -a src copy
mv copy moved
cp -r moved/a again
mv again/b again/c
install -m 0750 -d inst/dir
install -m 0640 src/a/one inst/dir/one
tar -C src -cf t.tar .
mkdir untar
tar -C untar -xpf t.tar
tar -C src -czf t.tgz a
mkdir untgz
tar -C untgz -xzf t.tgz
rm -rf src/a
rm -f t.tar t.tgz
git init -q -b main repo
cd repo
git config user.email test@example.invalid
git config user.name test
echo hello > f
mkdir d
echo inner > d/g
git add f d
git commit -qm one
git checkout -qb branch
echo more >> f
git rm -q d/g
git commit -qam two
git checkout -q main
echo "main: $(cat f) $(ls d)"
git checkout -q branch
echo "branch: $(cat f) $(ls -A d 2>/dev/null | wc -l)"
git gc -q
git fsck --no-progress
echo "commits: $(git rev-list --count --all)"
git status --porcelain
cd ..
# A last symlink whose target ends in / or /. asks for a directory: a file
# there is "Not a directory", and creating through one "Is a directory".
mkdir slash
echo f > slash/file
mkdir slash/dir
ln -s file/ slash/to-file-slash
ln -s file/. slash/to-file-dot
ln -s /etc/passwd/ slash/to-image-file-slash
ln -s to-file-slash slash/via-link
ln -s dir/ slash/to-dir-slash
ln -s missing/ slash/to-missing-slash
for l in to-file-slash to-file-dot to-image-file-slash via-link to-dir-slash to-missing-slash; do
    echo "$l: $(stat -L -c %F "slash/$l" 2>&1 | sed 's/.*: //') $(cat "slash/$l" 2>&1 | sed 's/.*: //')"
done
(echo x > slash/to-missing-slash) 2>&1 | sed 's/.*: /to-missing-slash write: /'
echo listing
find . -mindepth 1 -path ./repo/.git -prune -o \( -type d -printf '%p %y %m\n' \) -o \( -printf '%p %y %m %n %s\n' \) | sort
for f in untar/a/one untgz/a/one moved/a/one; do echo "$f $(date -r "$f" +%F)"; done
for f in $(find . -path ./repo/.git -prune -o -type f -print | sort); do echo "$f: $(od -An -c "$f" | tr -s ' ' | head -c 40)"; done
readlink moved/link untar/link
