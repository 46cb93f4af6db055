"""What Python's standard library does to files, as a transcript.

Run by tests/tests/fidelity.rs in DIR inside a container and in a plain
directory outside, as the same ordinary user: the two transcripts must be
the same. Each line is an operation and its result (a value, or the errno
name it failed with); nothing in it depends on where DIR is.
"""

import compileall
import errno
import os
import py_compile
import shutil
import socket
import subprocess
import sys
import tempfile


def show(label, action):
    try:
        result = action()
    except OSError as e:
        print(f"{label}: {errno.errorcode.get(e.errno, e.errno)}")
        return
    print(f"{label}: ok" + ("" if result is None else f" {result}"))


def listing(top):
    names = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs + files):
            names.append(os.path.relpath(os.path.join(root, name), top))
    return names


base = os.path.abspath(sys.argv[1])
os.chdir(base)
here = os.path.basename(base)

# subprocess with cwd= (the vfork path) leaves the parent where it was.
os.mkdir("sub")
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.path.basename(os.getcwd()))"],
    cwd="sub",
    capture_output=True,
    text=True,
    check=True,
)
print("child cwd:", child.stdout.strip())
print("parent cwd is base:", os.path.basename(os.getcwd()) == here)
with open("relative.txt", "w") as f:
    f.write("here\n")
print("relative write:", os.path.exists(os.path.join(base, "relative.txt")),
      os.path.exists("sub/relative.txt"))
archive = shutil.make_archive("archive", "gztar", root_dir="sub")
print("make_archive:", os.path.basename(archive), os.path.isfile("archive.tar.gz"))

# shutil.rmtree's descriptor walk, again and again: directories come
# back with the numbers and inodes of deleted ones.
for _ in range(30):
    for i in range(4):
        os.makedirs(f"tree/a{i}/b/c")
        with open(f"tree/a{i}/b/c/f", "w") as f:
            f.write("x")
    shutil.rmtree("tree")
print("rmtree rounds:", os.path.exists("tree"))

for _ in range(30):
    with tempfile.TemporaryDirectory(dir=".") as d:
        os.makedirs(os.path.join(d, "x", "y"))
        with open(os.path.join(d, "x", "y", "z"), "w") as f:
            f.write("z")
print("temporary directories left:", [n for n in os.listdir(".") if n.startswith("tmp")])

# copytree keeps modes and links; copy2 keeps times.
os.makedirs("src/inner")
with open("src/inner/data", "w") as f:
    f.write("data\n")
os.chmod("src/inner/data", 0o640)
os.symlink("inner/data", "src/link")
shutil.copytree("src", "copy", symlinks=True)
print("copytree:", listing("copy"), oct(os.stat("copy/inner/data").st_mode & 0o777),
      os.readlink("copy/link"))
os.utime("src/inner/data", (1_000_000_000, 1_000_000_000))
shutil.copy2("src/inner/data", "copied")
print("copy2 mtime:", int(os.stat("copied").st_mtime))
shutil.move("copy", "moved")
print("move:", os.path.exists("copy"), listing("moved"))

# Byte-compiling and importing what was written.
os.makedirs("pkg")
with open("pkg/__init__.py", "w") as f:
    f.write("X = 1\n")
with open("pkg/mod.py", "w") as f:
    f.write("def f():\n    return 2\n")
print("compileall:", compileall.compile_dir("pkg", quiet=1))
print("pycache files:", len(os.listdir("pkg/__pycache__")))
py_compile.compile("pkg/mod.py", doraise=True)
sys.path.insert(0, base)
import pkg.mod  # noqa: E402

print("import:", pkg.mod.f())
shutil.rmtree("pkg")
print("pkg removed:", not os.path.exists("pkg"))

# The kernel's answers.
fd = os.open("relative.txt", os.O_RDONLY)
show("scandir of a file's descriptor", lambda: list(os.scandir(fd)))
os.close(fd)
show("create through a trailing slash", lambda: os.open("missing/", os.O_CREAT | os.O_WRONLY))
os.mkdir("d")
show("rmdir d/.", lambda: os.rmdir("d/."))
show("rmdir d/..", lambda: os.rmdir("d/.."))
show("unlink d", lambda: os.unlink("d"))
show("unlink relative.txt/", lambda: os.unlink("relative.txt/"))
print("d still there:", os.path.isdir("d"))
show("a 256-byte name", lambda: open("n" * 256, "w"))
show("a 255-byte name", lambda: open("n" * 255, "w").close())
deep = "/".join(["p" * 200] * 19)
os.makedirs(deep)
show("a 4000-byte relative path", lambda: open(os.path.join(deep, "f" * 150), "w").close())
show("a 4100-byte relative path", lambda: open(os.path.join(deep, "f" * 250, "g" * 30), "w"))
shutil.rmtree("p" * 200)
os.mkdir("locked")
with open("locked/inside", "w") as f:
    f.write("x")
os.chmod("locked", 0)
show("stat below a directory of mode 0", lambda: os.stat("locked/inside").st_size)
show("rmdir of a non-empty directory of mode 0", lambda: os.rmdir("locked"))
os.chmod("locked", 0o700)
os.unlink("locked/inside")
os.chmod("locked", 0)
show("rmdir of an empty directory of mode 0", lambda: os.rmdir("locked"))
os.symlink("nowhere", "dangling")
show("O_CREAT|O_EXCL through a dangling symlink",
     lambda: os.open("dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
print("its target made:", os.path.exists("nowhere"))

# statvfs and disk_usage see the file system the directory is on.
usage = shutil.disk_usage(".")
print("disk_usage total == statvfs:", usage.total == os.statvfs(".").f_blocks * os.statvfs(".").f_frsize)
print("statvfs namemax:", os.statvfs(".").f_namemax)
print("pathconf name max:", os.pathconf(".", "PC_NAME_MAX"))

# A Unix socket named by an absolute path in the directory.
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(os.path.join(base, "sock"))
server.listen(1)
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect(os.path.join(base, "sock"))
peer, _ = server.accept()
client.sendall(b"ping")
print("unix socket:", peer.recv(4), os.path.exists("sock"))
for s in (peer, client, server):
    s.close()

# posix_spawn with file actions that open a relative and an absolute path.
out = os.path.join(base, "spawned.txt")
pid = os.posix_spawn(
    sys.executable,
    [sys.executable, "-c", "print('spawned')"],
    os.environ,
    file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, "spawned-relative.txt", os.O_WRONLY | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, out, os.O_WRONLY | os.O_CREAT, 0o644),
    ],
)
print("posix_spawn status:", os.waitpid(pid, 0)[1])
with open("spawned-relative.txt") as f:
    print("posix_spawn output:", f.read().strip(), os.path.exists(out))
show("posix_spawn opening a missing directory's file",
     lambda: os.waitpid(os.posix_spawn(
         sys.executable, [sys.executable, "-c", "pass"], os.environ,
         file_actions=[(os.POSIX_SPAWN_OPEN, 1, "no/such/dir/f", os.O_RDONLY, 0)]), 0)[1])

print("final listing:", listing("."))
