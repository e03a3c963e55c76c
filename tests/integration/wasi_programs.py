"""WASI preview1 programs for the differential test: a small grammar of operations, rendered as WebAssembly text.

A `Program` is a sequence of operations (`Op`), the process args and env, the contents of a fixed file tree
and an optional `proc_exit` code. `render` turns it into one WAT module whose stdout is a deterministic
transcript of what each call returned: errnos, file contents, sorted directory listings, sizes, but never
values that legitimately change from run to run (clock readings, random bytes, inode numbers, times).

`programs()` draws programs for hypothesis.

Run as ``python -m tests.integration.wasi_programs ENGINE`` this module is the "direct" side of the test: a
worker that reads one JSON request per line from stdin (``{"wasm", "root", "args", "env", "stdout",
"stderr", "error"}``), runs the module on ENGINE in a forked child with ``root`` preopened as ``/``, its
stdout and stderr sent to the named files, and answers ``{"exit_code": N, "error": None}`` (``error``: a
traceback when the runner itself failed). On wasmtime the status is the one ``wasmtime run`` gives. The
fork keeps each run's engine state (wasmer-sdk's Tokio threads, wasmtime's stores) out of the worker, and
the worker keeps it all out of pytest.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

# -- the file tree every program starts from ------------------------------------------------------------------

BASE_DIRS = ("proc", "tmp", "data", "data/sub", "data/empty")  # proc: the container's /proc mount point
BASE_FILES = ("hello.txt", "data/a.txt", "data/b.txt", "data/sub/c.txt")
MODULE_NAME = "m.wasm"

# Paths the operations draw from: existing files and folders, missing ones, new ones, and odd spellings.
EXISTING_DIRS = (".", "data", "data/sub", "data/empty", "tmp")
MISSING = ("nope.txt", "data/nope", "nope/x.txt")
NEW = ("new.txt", "tmp/new.txt", "data/new.bin", "newdir", "newdir/x.txt", "tmp/newdir", "data/sub/deeper")
ODD = ("../hello.txt", "data/../hello.txt", "./hello.txt", "/hello.txt", "hello.txt/", "data//a.txt",
       "data/sub/../../hello.txt", MODULE_NAME)
PATHS = BASE_FILES + EXISTING_DIRS + MISSING + NEW + ODD


# -- the grammar ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Write:
    """fd_write a constant to stdout (fd 1) or stderr (fd 2)."""

    text: bytes
    fd: int = 1


@dataclass(frozen=True)
class Args:
    """args_sizes_get + args_get: argc, the buffer size and every argument."""


@dataclass(frozen=True)
class Environ:
    """environ_sizes_get + environ_get: the count, the buffer size and every entry, in order or sorted.

    Sorted (in the guest) for wasmer, whose SDK passes the environment in no particular order.
    """

    sort: bool = True


@dataclass(frozen=True)
class Clock:
    """clock_res_get and two clock_time_get calls: errnos and whether the readings are sane, not values."""

    clock_id: int


@dataclass(frozen=True)
class Random:
    """random_get: the errno and, for 16 bytes or more, whether any byte is non-zero."""

    length: int


@dataclass(frozen=True)
class ReadFile:
    """path_open (read-only) + fd_read to the end + fd_close: errnos and the contents."""

    path: str


@dataclass(frozen=True)
class WriteFile:
    """path_open with O_CREAT (mode trunc, append or excl), fd_write, fd_seek to 0, read back, fd_close."""

    path: str
    data: bytes
    mode: str = "trunc"


@dataclass(frozen=True)
class ReadDir:
    """path_open with O_DIRECTORY + fd_readdir (all pages): the names, sorted, and their file types."""

    path: str


@dataclass(frozen=True)
class Mkdir:
    path: str


@dataclass(frozen=True)
class Rmdir:
    path: str


@dataclass(frozen=True)
class Unlink:
    path: str


@dataclass(frozen=True)
class Rename:
    src: str
    dst: str


@dataclass(frozen=True)
class Stat:
    """path_filestat_get: the errno, the file type, and the size of regular files."""

    path: str


@dataclass(frozen=True)
class Preopens:
    """fd_prestat_get / fd_prestat_dir_name over fds 3..63: every preopen's fd and name."""


Op = Write | Args | Environ | Clock | Random | ReadFile | WriteFile | ReadDir | Mkdir | Rmdir | Unlink | Rename \
    | Stat | Preopens


@dataclass(frozen=True)
class Program:
    ops: tuple[Op, ...]
    exit_code: int | None = None                   # proc_exit(code) at the end; None: return from _start
    args: tuple[str, ...] = ()                     # after argv[0], which is the module's path
    env: tuple[tuple[str, str], ...] = ()          # process.env, in order
    files: tuple[bytes, ...] = field(default=(b"hello, world\n", b"alpha\n", b"", b"gamma gamma\n"))

    def tree(self) -> dict[str, bytes | None]:
        """The rootfs (without the module): relative path -> contents, None for a folder."""
        out: dict[str, bytes | None] = {d: None for d in BASE_DIRS}
        out.update(zip(BASE_FILES, self.files, strict=True))
        return out

    def argv(self) -> list[str]:
        return ["/" + MODULE_NAME, *self.args]

    def environ(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.env]


# -- rendering --------------------------------------------------------------------------------------------------

# Rights (WASI preview1 bit numbers).
FD_READ, FD_SEEK, FD_TELL, FD_WRITE, FD_READDIR, FD_FILESTAT_GET = 1 << 1, 1 << 2, 1 << 5, 1 << 6, 1 << 14, 1 << 21
R_READ = FD_READ | FD_SEEK | FD_TELL | FD_FILESTAT_GET
R_RW = R_READ | FD_WRITE
R_DIR = FD_READDIR | FD_FILESTAT_GET
O_CREAT, O_DIRECTORY, O_EXCL, O_TRUNC = 1, 2, 4, 8
FDFLAG_APPEND = 1
LOOKUP_SYMLINK_FOLLOW = 1
OFLAGS = {"trunc": O_CREAT | O_TRUNC, "append": O_CREAT, "excl": O_CREAT | O_EXCL}

# Memory layout (5 pages):
#   0..15 the iovec of $write, 16 nread/nwritten/bufused, 20 a second i32 result, 24 and 32 u64 results,
#   40 clock resolution, 48 a second iovec, 64 the opened fd, 128..191 a filestat, 200 a prestat,
#   208..463 a preopen's name, 464..499 number formatting, 1024.. constants,
#   32768 argv/environ pointers, 40960 their bytes, 65536 the read/readdir/random buffer,
#   131072 copied directory entry names, 196608 directory entries (ptr, len, type; 12 bytes each).
DATA_START, DATA_END = 1024, 32768
PTRS, STRS, BUF, NAMES, ENTRIES = 32768, 40960, 65536, 131072, 196608
BUF_SIZE = 4096
MAX_ENTRIES = 4096

PRELUDE = r"""
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_prestat_dir_name"
   (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_open"
   (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_create_directory"
   (func $path_create_directory (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_remove_directory"
   (func $path_remove_directory (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_rename"
   (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_filestat_get"
   (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (memory (export "memory") 5)
 (global $root (mut i32) (i32.const 3))

 ;; write all of p[0..n) to fd, retrying short writes; stop at an error
 (func $write (param $fd i32) (param $p i32) (param $n i32) (local $w i32)
  (block $done (loop $l
   (br_if $done (i32.eqz (local.get $n)))
   (i32.store (i32.const 0) (local.get $p))
   (i32.store (i32.const 4) (local.get $n))
   (br_if $done (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
   (local.set $w (i32.load (i32.const 8)))
   (br_if $done (i32.eqz (local.get $w)))
   (local.set $p (i32.add (local.get $p) (local.get $w)))
   (local.set $n (i32.sub (local.get $n) (local.get $w)))
   (br $l))))
 (func $print (param $p i32) (param $n i32) (call $write (i32.const 1) (local.get $p) (local.get $n)))
 (func $nl (i32.store8 (i32.const 499) (i32.const 10)) (call $print (i32.const 499) (i32.const 1)))
 (func $print_u64 (param $v i64) (local $p i32)
  (local.set $p (i32.const 498))
  (loop $l
   (local.set $p (i32.sub (local.get $p) (i32.const 1)))
   (i32.store8 (local.get $p)
     (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
   (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
   (br_if $l (i64.ne (local.get $v) (i64.const 0))))
  (call $print (local.get $p) (i32.sub (i32.const 498) (local.get $p))))
 (func $print_u32 (param $v i32) (call $print_u64 (i64.extend_i32_u (local.get $v))))
 (func $strlen (param $p i32) (result i32) (local $n i32)
  (block $d (loop $l
   (br_if $d (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
   (local.set $n (i32.add (local.get $n) (i32.const 1)))
   (br $l)))
  (local.get $n))
 (func $copy (param $dst i32) (param $src i32) (param $n i32) (local $i i32)
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
   (i32.store8 (i32.add (local.get $dst) (local.get $i)) (i32.load8_u (i32.add (local.get $src) (local.get $i))))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l))))
 (func $zero (param $dst i32) (param $n i32) (local $i i32)
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
   (i32.store8 (i32.add (local.get $dst) (local.get $i)) (i32.const 0))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l))))
 ;; bytewise comparison: <0, 0, >0
 (func $cmp (param $a i32) (param $an i32) (param $b i32) (param $bn i32) (result i32)
  (local $i i32) (local $x i32) (local $y i32)
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $i) (local.get $an)))
   (br_if $d (i32.ge_u (local.get $i) (local.get $bn)))
   (local.set $x (i32.load8_u (i32.add (local.get $a) (local.get $i))))
   (local.set $y (i32.load8_u (i32.add (local.get $b) (local.get $i))))
   (if (i32.ne (local.get $x) (local.get $y)) (then (return (i32.sub (local.get $x) (local.get $y)))))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l)))
  (i32.sub (local.get $an) (local.get $bn)))
 ;; insertion sort of n 12-byte entries (ptr, len, extra) by their strings
 (func $sort (param $arr i32) (param $n i32)
  (local $i i32) (local $j i32) (local $e i32) (local $f i32) (local $t0 i32) (local $t1 i32) (local $t2 i32)
  (local.set $i (i32.const 1))
  (block $done (loop $outer
   (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
   (local.set $j (local.get $i))
   (block $placed (loop $inner
    (br_if $placed (i32.eqz (local.get $j)))
    (local.set $e (i32.add (local.get $arr) (i32.mul (local.get $j) (i32.const 12))))
    (local.set $f (i32.sub (local.get $e) (i32.const 12)))
    (br_if $placed (i32.le_s
      (call $cmp (i32.load (local.get $f)) (i32.load offset=4 (local.get $f))
                 (i32.load (local.get $e)) (i32.load offset=4 (local.get $e)))
      (i32.const 0)))
    (local.set $t0 (i32.load (local.get $e)))
    (local.set $t1 (i32.load offset=4 (local.get $e)))
    (local.set $t2 (i32.load offset=8 (local.get $e)))
    (i32.store (local.get $e) (i32.load (local.get $f)))
    (i32.store offset=4 (local.get $e) (i32.load offset=4 (local.get $f)))
    (i32.store offset=8 (local.get $e) (i32.load offset=8 (local.get $f)))
    (i32.store (local.get $f) (local.get $t0))
    (i32.store offset=4 (local.get $f) (local.get $t1))
    (i32.store offset=8 (local.get $f) (local.get $t2))
    (local.set $j (i32.sub (local.get $j) (i32.const 1)))
    (br $inner)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $outer))))
 ;; the preopen named "/" becomes $root (fd 3 if there is none)
 (func $find_root (local $fd i32)
  (local.set $fd (i32.const 3))
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $fd) (i32.const 64)))
   (if (i32.eqz (call $fd_prestat_get (local.get $fd) (i32.const 200)))
    (then (if (i32.eq (i32.load (i32.const 204)) (i32.const 1))
     (then
      (drop (call $fd_prestat_dir_name (local.get $fd) (i32.const 208) (i32.const 1)))
      (if (i32.eq (i32.load8_u (i32.const 208)) (i32.const 47))
       (then (global.set $root (local.get $fd)) (br $d)))))))
   (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
   (br $l))))
 ;; print n NUL-terminated strings whose pointers are at PTRS, one per line (sorted if asked)
 (func $print_list (param $n i32) (param $sorted i32) (local $i i32) (local $p i32)
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
   (local.set $p (i32.load (i32.add (i32.const PTRS) (i32.shl (local.get $i) (i32.const 2)))))
   (i32.store (i32.add (i32.const ENTRIES) (i32.mul (local.get $i) (i32.const 12))) (local.get $p))
   (i32.store offset=4 (i32.add (i32.const ENTRIES) (i32.mul (local.get $i) (i32.const 12)))
     (call $strlen (local.get $p)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l)))
  (if (local.get $sorted) (then (call $sort (i32.const ENTRIES) (local.get $n))))
  (local.set $i (i32.const 0))
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
   (local.set $p (i32.add (i32.const ENTRIES) (i32.mul (local.get $i) (i32.const 12))))
   (call $print @ITEM)
   (call $print (i32.load (local.get $p)) (i32.load offset=4 (local.get $p)))
   (call $print @END)
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l))))
 ;; read fd to the end, printing what it holds between [[ and ]], then the errno and the byte count
 (func $dump (param $fd i32) (local $err i32) (local $n i32) (local $total i32)
  (call $print @OPEN_DATA)
  (block $d (loop $l
   (i32.store (i32.const 48) (i32.const BUF))
   (i32.store (i32.const 52) (i32.const BUF_SIZE))
   (local.set $err (call $fd_read (local.get $fd) (i32.const 48) (i32.const 1) (i32.const 16)))
   (br_if $d (local.get $err))
   (local.set $n (i32.load (i32.const 16)))
   (br_if $d (i32.eqz (local.get $n)))
   (call $print (i32.const BUF) (local.get $n))
   (local.set $total (i32.add (local.get $total) (local.get $n)))
   (br_if $d (i32.gt_u (local.get $total) (i32.const 1048576)))
   (br $l)))
  (call $print @READ)
  (call $print_u32 (local.get $err))
  (call $print @BYTES)
  (call $print_u32 (local.get $total))
  (call $nl))
 (func $is_dots (param $p i32) (param $n i32) (result i32)
  (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
  (if (i32.gt_u (local.get $n) (i32.const 2)) (then (return (i32.const 0))))
  (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 46)) (then (return (i32.const 0))))
  (if (i32.eq (local.get $n) (i32.const 1)) (then (return (i32.const 1))))
  (i32.eq (i32.load8_u offset=1 (local.get $p)) (i32.const 46)))
 ;; every entry of a directory fd except . and .., sorted, with its type
 (func $list_dir (param $fd i32)
  (local $cookie i64) (local $err i32) (local $used i32) (local $p i32) (local $end i32) (local $len i32)
  (local $count i32) (local $names i32) (local $progress i32) (local $e i32)
  (local.set $names (i32.const NAMES))
  (block $done (loop $more
   (local.set $err (call $fd_readdir (local.get $fd) (i32.const BUF) (i32.const BUF_SIZE) (local.get $cookie)
                                     (i32.const 16)))
   (br_if $done (local.get $err))
   (local.set $used (i32.load (i32.const 16)))
   (local.set $p (i32.const BUF))
   (local.set $end (i32.add (i32.const BUF) (local.get $used)))
   (local.set $progress (i32.const 0))
   (block $parsed (loop $entry
    (br_if $parsed (i32.gt_u (i32.add (local.get $p) (i32.const 24)) (local.get $end)))
    (local.set $len (i32.load offset=16 (local.get $p)))
    (br_if $parsed (i32.gt_u (i32.add (i32.add (local.get $p) (i32.const 24)) (local.get $len)) (local.get $end)))
    (br_if $done (i32.ge_u (local.get $count) (i32.const MAX_ENTRIES)))
    (br_if $done (i32.gt_u (i32.add (local.get $names) (local.get $len)) (i32.const ENTRIES)))
    (if (i32.eqz (call $is_dots (i32.add (local.get $p) (i32.const 24)) (local.get $len)))
     (then
      (call $copy (local.get $names) (i32.add (local.get $p) (i32.const 24)) (local.get $len))
      (local.set $e (i32.add (i32.const ENTRIES) (i32.mul (local.get $count) (i32.const 12))))
      (i32.store (local.get $e) (local.get $names))
      (i32.store offset=4 (local.get $e) (local.get $len))
      (i32.store offset=8 (local.get $e) (i32.load8_u offset=20 (local.get $p)))
      (local.set $names (i32.add (local.get $names) (local.get $len)))
      (local.set $count (i32.add (local.get $count) (i32.const 1)))))
    (local.set $cookie (i64.load (local.get $p)))
    (local.set $progress (i32.const 1))
    (local.set $p (i32.add (i32.add (local.get $p) (i32.const 24)) (local.get $len)))
    (br $entry)))
   (br_if $done (i32.lt_u (local.get $used) (i32.const BUF_SIZE)))
   (br_if $done (i32.eqz (local.get $progress)))
   (br $more)))
  (call $print @READDIR)
  (call $print_u32 (local.get $err))
  (call $print @ENTRIES)
  (call $print_u32 (local.get $count))
  (call $nl)
  (call $sort (i32.const ENTRIES) (local.get $count))
  (local.set $p (i32.const 0))
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $p) (local.get $count)))
   (local.set $e (i32.add (i32.const ENTRIES) (i32.mul (local.get $p) (i32.const 12))))
   (call $print @ITEM)
   (call $print (i32.load (local.get $e)) (i32.load offset=4 (local.get $e)))
   (call $print @TYPE)
   (call $print_u32 (i32.load offset=8 (local.get $e)))
   (call $nl)
   (local.set $p (i32.add (local.get $p) (i32.const 1)))
   (br $l))))
 (func $preopens (local $fd i32) (local $n i32)
  (local.set $fd (i32.const 3))
  (block $d (loop $l
   (br_if $d (i32.ge_u (local.get $fd) (i32.const 64)))
   (if (i32.eqz (call $fd_prestat_get (local.get $fd) (i32.const 200)))
    (then
     (local.set $n (i32.load (i32.const 204)))
     (if (i32.gt_u (local.get $n) (i32.const 256)) (then (local.set $n (i32.const 256))))
     (call $print @PREOPEN)
     (call $print_u32 (local.get $fd))
     (call $print @NAME)
     (call $print_u32 (call $fd_prestat_dir_name (local.get $fd) (i32.const 208) (local.get $n)))
     (call $print @SPACE)
     (call $print (i32.const 208) (local.get $n))
     (call $nl)))
   (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
   (br $l))))
"""

# Fixed labels the helpers print, placed at the start of the data area.
LABELS = {
    "ITEM": b"  ", "END": b"|\n", "OPEN_DATA": b"[[", "READ": b"]]\nread errno=", "BYTES": b" bytes=",
    "READDIR": b"readdir errno=", "ENTRIES": b" entries=", "TYPE": b" type=", "PREOPEN": b"preopen fd=",
    "NAME": b" errno=", "SPACE": b" ",
}


def _wat_bytes(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:02x}" for b in data)


class _Module:
    """Accumulates data segments and the body of _start."""

    def __init__(self) -> None:
        self.next = DATA_START
        self.data: list[tuple[int, bytes]] = []
        self.body: list[str] = []
        self.interned: dict[bytes, int] = {}
        self.labels = {name: self.const(text) for name, text in LABELS.items()}

    def const(self, data: bytes) -> int:
        if data in self.interned:
            return self.interned[data]
        addr = self.next
        self.next += max(len(data), 1)
        if self.next > DATA_END:
            raise ValueError("the program's constants do not fit in its data area")
        self.data.append((addr, data))
        self.interned[data] = addr
        return addr

    def emit(self, *lines: str) -> None:
        self.body.extend(lines)

    def say(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        if data:
            self.emit(f"(call $print (i32.const {self.const(data)}) (i32.const {len(data)}))")

    def num(self, expr: str, wide: bool = False) -> None:
        self.emit(f"(call {'$print_u64' if wide else '$print_u32'} {expr})")

    def path(self, path: str) -> str:
        data = path.encode()
        return f"(i32.const {self.const(data)}) (i32.const {len(data)})"

    def errno(self, label: str, expr: str) -> None:
        self.emit(f"(local.set $err {expr})")
        self.say(f"{label} errno=")
        self.num("(local.get $err)")
        self.emit("(call $nl)")


def _render_op(m: _Module, op: Op) -> None:
    root = "(global.get $root)"
    match op:
        case Write(text=text, fd=fd):
            if fd == 1:
                m.say(text)
            else:
                m.emit(f"(call $write (i32.const {fd}) (i32.const {m.const(text)}) (i32.const {len(text)}))")
        case Args() | Environ():
            what = "args" if isinstance(op, Args) else "environ"
            m.say(f"## {what}{' sorted' if getattr(op, 'sort', False) else ''}\n")
            m.errno(f"{what}_sizes_get", f"(call ${what}_sizes_get (i32.const 16) (i32.const 20))")
            m.say("count=")
            m.num("(i32.load (i32.const 16))")
            m.say(" size=")
            m.num("(i32.load (i32.const 20))")
            m.emit("(call $nl)")
            m.emit("(if (i32.and (i32.le_u (i32.load (i32.const 16)) (i32.const 2048))"
                   "             (i32.le_u (i32.load (i32.const 20)) (i32.const 24576))) (then")
            m.errno(f"{what}_get", f"(call ${what}_get (i32.const {PTRS}) (i32.const {STRS}))")
            m.emit(f"(call $print_list (i32.load (i32.const 16)) (i32.const {int(getattr(op, 'sort', False))}))))")
        case Clock(clock_id=cid):
            m.say(f"## clock {cid}\n")
            m.errno("res", f"(call $clock_res_get (i32.const {cid}) (i32.const 40))")
            m.emit("(if (i32.eqz (local.get $err)) (then")
            m.say("res positive=")
            m.num("(i64.gt_u (i64.load (i32.const 40)) (i64.const 0))")
            m.emit("(call $nl)))")
            m.errno("time", f"(call $clock_time_get (i32.const {cid}) (i64.const 1) (i32.const 24))")
            m.emit("(if (i32.eqz (local.get $err)) (then")
            m.errno("time again", f"(call $clock_time_get (i32.const {cid}) (i64.const 1) (i32.const 32))")
            if cid == 0:   # realtime: after 2020-01-01
                m.say("after 2020=")
                m.num("(i64.gt_u (i64.load (i32.const 24)) (i64.const 1577836800000000000))")
            else:          # monotonic and CPU clocks never go back
                m.say("nondecreasing=")
                m.num("(i64.ge_u (i64.load (i32.const 32)) (i64.load (i32.const 24)))")
            m.emit("(call $nl)))")
        case Random(length=n):
            m.say(f"## random {n}\n")
            m.emit(f"(call $zero (i32.const {BUF}) (i32.const {n}))")
            m.errno("random_get", f"(call $random_get (i32.const {BUF}) (i32.const {n}))")
            if n >= 16:
                m.emit("(local.set $i (i32.const 0)) (local.set $n (i32.const 0))",
                       "(block $d (loop $l",
                       f" (br_if $d (i32.ge_u (local.get $i) (i32.const {n})))",
                       f" (local.set $n (i32.or (local.get $n) (i32.load8_u (i32.add (i32.const {BUF}) "
                       "(local.get $i)))))",
                       " (local.set $i (i32.add (local.get $i) (i32.const 1)))",
                       " (br $l)))")
                m.say("nonzero=")
                m.num("(i32.ne (local.get $n) (i32.const 0))")
                m.emit("(call $nl)")
        case ReadFile(path=path):
            m.say(f"## read {path}\n")
            m.errno("open", f"(call $path_open {root} (i32.const {LOOKUP_SYMLINK_FOLLOW}) {m.path(path)} "
                            f"(i32.const 0) (i64.const {R_READ}) (i64.const 0) (i32.const 0) (i32.const 64))")
            m.emit("(if (i32.eqz (local.get $err)) (then (local.set $fd (i32.load (i32.const 64)))",
                   "(call $dump (local.get $fd))")
            m.errno("close", "(call $fd_close (local.get $fd))")
            m.emit("))")
        case WriteFile(path=path, data=data, mode=mode):
            m.say(f"## write {path} {mode} {len(data)}\n")
            fdflags = FDFLAG_APPEND if mode == "append" else 0
            m.errno("open", f"(call $path_open {root} (i32.const {LOOKUP_SYMLINK_FOLLOW}) {m.path(path)} "
                            f"(i32.const {OFLAGS[mode]}) (i64.const {R_RW}) (i64.const {R_RW}) "
                            f"(i32.const {fdflags}) (i32.const 64))")
            m.emit("(if (i32.eqz (local.get $err)) (then (local.set $fd (i32.load (i32.const 64)))",
                   f"(i32.store (i32.const 48) (i32.const {m.const(data)}))",
                   f"(i32.store (i32.const 52) (i32.const {len(data)}))",
                   "(i32.store (i32.const 16) (i32.const 0))")
            m.errno("write", "(call $fd_write (local.get $fd) (i32.const 48) (i32.const 1) (i32.const 16))")
            m.say("written=")
            m.num("(i32.load (i32.const 16))")
            m.emit("(call $nl)", "(i64.store (i32.const 24) (i64.const 0))")
            m.errno("seek", "(call $fd_seek (local.get $fd) (i64.const 0) (i32.const 0) (i32.const 24))")
            m.say("offset=")
            m.num("(i64.load (i32.const 24))", wide=True)
            m.emit("(call $nl)", "(call $dump (local.get $fd))")
            m.errno("close", "(call $fd_close (local.get $fd))")
            m.emit("))")
        case ReadDir(path=path):
            m.say(f"## readdir {path}\n")
            m.errno("open", f"(call $path_open {root} (i32.const {LOOKUP_SYMLINK_FOLLOW}) {m.path(path)} "
                            f"(i32.const {O_DIRECTORY}) (i64.const {R_DIR}) (i64.const {R_RW | R_DIR}) "
                            "(i32.const 0) (i32.const 64))")
            m.emit("(if (i32.eqz (local.get $err)) (then (local.set $fd (i32.load (i32.const 64)))",
                   "(call $list_dir (local.get $fd))")
            m.errno("close", "(call $fd_close (local.get $fd))")
            m.emit("))")
        case Mkdir(path=path):
            m.errno(f"## mkdir {path}\nmkdir", f"(call $path_create_directory {root} {m.path(path)})")
        case Rmdir(path=path):
            m.errno(f"## rmdir {path}\nrmdir", f"(call $path_remove_directory {root} {m.path(path)})")
        case Unlink(path=path):
            m.errno(f"## unlink {path}\nunlink", f"(call $path_unlink_file {root} {m.path(path)})")
        case Rename(src=src, dst=dst):
            m.errno(f"## rename {src} {dst}\nrename",
                    f"(call $path_rename {root} {m.path(src)} {root} {m.path(dst)})")
        case Stat(path=path):
            m.say(f"## stat {path}\n")
            m.emit("(i32.store8 (i32.const 144) (i32.const 255))")
            m.errno("stat", f"(call $path_filestat_get {root} (i32.const {LOOKUP_SYMLINK_FOLLOW}) {m.path(path)} "
                            "(i32.const 128))")
            m.emit("(if (i32.eqz (local.get $err)) (then")
            m.say("type=")
            m.num("(i32.load8_u (i32.const 144))")
            # A directory's st_size is the file system's business (how its blocks grew), not the program's.
            m.emit("(if (i32.eq (i32.load8_u (i32.const 144)) (i32.const 4)) (then")
            m.say(" size=")
            m.num("(i64.load (i32.const 160))", wide=True)
            m.emit("))", "(call $nl)))")
        case Preopens():
            m.say("## preopens\n")
            m.emit("(call $preopens)")
        case _:
            raise TypeError(op)


def render(program: Program) -> str:
    """The program as one WebAssembly text module."""
    m = _Module()
    m.emit("(call $find_root)")
    for op in program.ops:
        _render_op(m, op)
    if program.exit_code is not None:
        m.say(f"## exit {program.exit_code}\n")
        m.emit(f"(call $proc_exit (i32.const {program.exit_code}))")
    # @NAME is a label (address and length); the bare names are the layout's constants.
    prelude = re.sub(r"@([A-Z_]+)", lambda g: f"(i32.const {m.labels[g[1]]}) (i32.const {len(LABELS[g[1]])})",
                     PRELUDE)
    consts = {"PTRS": PTRS, "STRS": STRS, "BUF_SIZE": BUF_SIZE, "BUF": BUF, "NAMES": NAMES,
              "ENTRIES": ENTRIES, "MAX_ENTRIES": MAX_ENTRIES}
    for name in sorted(consts, key=len, reverse=True):   # longest first: BUF_SIZE before BUF
        prelude = re.sub(rf"\b{name}\b", str(consts[name]), prelude)
    data = "\n".join(f' (data (i32.const {addr}) "{_wat_bytes(body)}")' for addr, body in m.data if body)
    start = ("\n (func (export \"_start\") (local $err i32) (local $fd i32) (local $i i32) (local $n i32)\n  "
             + "\n  ".join(m.body) + ")")
    return "(module" + prelude + data + start + ")\n"


def compile_program(program: Program) -> bytes:
    import wasmtime

    return bytes(wasmtime.wat2wasm(render(program)))


def describe(program: Program) -> str:
    """A readable one-op-per-line form, for failure messages."""
    lines = [f"args={list(program.args)!r}", f"env={list(program.env)!r}", f"files={list(program.files)!r}"]
    lines += [f"  {op!r}" for op in program.ops]
    lines.append(f"exit={program.exit_code!r}")
    return "\n".join(lines)


# -- hypothesis strategies ------------------------------------------------------------------------------------

def programs(*, min_ops: int = 4, max_ops: int = 24, max_exit: int = 255,
             environ_in_order: bool = True) -> SearchStrategy[Program]:
    """Programs of min_ops..max_ops operations; environ_in_order=False: Environ ops always sort."""
    from hypothesis import strategies as st

    path = st.sampled_from(PATHS)
    new_or_any = st.one_of(st.sampled_from(NEW + MISSING), path)
    arg_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
    key = st.from_regex(r"[A-Z_][A-Z0-9_]{0,7}", fullmatch=True)
    op = st.one_of(
        st.builds(Write, st.binary(max_size=40), st.sampled_from((1, 1, 1, 2))),
        st.just(Args()),
        st.builds(Environ, st.booleans()) if environ_in_order else st.just(Environ()),
        st.builds(Clock, st.integers(0, 3)),
        st.builds(Random, st.integers(0, 256)),
        st.builds(ReadFile, path),
        st.builds(WriteFile, new_or_any, st.binary(max_size=100), st.sampled_from(("trunc", "append", "excl"))),
        st.builds(ReadDir, st.one_of(st.sampled_from((*EXISTING_DIRS, "newdir", "tmp/newdir")), path)),
        st.builds(Mkdir, new_or_any),
        st.builds(Rmdir, new_or_any),
        st.builds(Unlink, new_or_any),
        st.builds(Rename, path, new_or_any),
        st.builds(Stat, path),
        st.just(Preopens()),
    )
    return st.builds(
        Program,
        ops=st.lists(op, min_size=min_ops, max_size=max_ops).map(tuple),
        exit_code=st.one_of(st.none(), st.integers(0, max_exit)),
        args=st.lists(arg_text, max_size=4).map(tuple),
        env=st.dictionaries(key, arg_text, max_size=4).map(lambda d: tuple(d.items())),
        files=st.tuples(*(st.binary(max_size=64) for _ in BASE_FILES)),
    )


# -- the file tree on disk --------------------------------------------------------------------------------------

def make_tree(root: str, program: Program, wasm: bytes) -> None:
    """Create the program's starting rootfs in root (which need not exist)."""
    os.makedirs(root, exist_ok=True)
    for rel, body in program.tree().items():
        target = os.path.join(root, rel)
        if body is None:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(body)
    with open(os.path.join(root, MODULE_NAME), "wb") as fh:
        fh.write(wasm)


def snapshot_tree(root: str, skip: tuple[str, ...] = ("proc",)) -> dict[str, bytes | None]:
    """Relative path -> contents (None for a folder), below root, leaving out the top-level names in skip."""
    out: dict[str, bytes | None] = {}
    for folder, dirs, names in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        if rel_folder == ".":
            dirs[:] = [d for d in dirs if d not in skip]
            names = [n for n in names if n not in skip]
        for d in dirs:
            out[os.path.normpath(os.path.join(rel_folder, d))] = None
        for n in names:
            with open(os.path.join(folder, n), "rb") as fh:
                out[os.path.normpath(os.path.join(rel_folder, n))] = fh.read()
    return out


# -- the direct runner ----------------------------------------------------------------------------------------

def _run_wasmtime(wasm_path: str, root: str, args: list[str], env: list[str]) -> int:
    import wasmtime

    engine = wasmtime.Engine()
    with open(wasm_path, "rb") as fh:
        module = wasmtime.Module(engine, fh.read())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = args
    wasi.env = [tuple(e.split("=", 1)) for e in env]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.preopen_dir(root, "/")
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    # Statuses as the wasmtime CLI (`wasmtime run`) gives them: proc_exit's code; 134 (SIGABRT) after a trap;
    # 1 for any other error, such as proc_exit with a code outside [0, 126), which wasmtime refuses.
    try:
        start(store)  # type: ignore[operator]
    except wasmtime.ExitTrap as exc:
        return int(exc.code)
    except wasmtime.Trap as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 134
    except wasmtime.WasmtimeError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    return 0


def _run_wasmer(handler: object, wasm_path: str, root: str, args: list[str], env: list[str]) -> int:
    from wasmlab.runtime.handlers.base import Preopen, Workload

    with open(wasm_path, "rb") as fh:
        head = fh.read(64)
    workload = Workload(path=wasm_path, args=args, env=env, cwd="/", head=head,
                        preopens=[Preopen(root, "/", False)])
    return int(handler.run(workload))  # type: ignore[attr-defined]


def serve(engine: str) -> None:
    """The worker loop (see the module docstring)."""
    handler = None
    if engine == "wasmer":
        from wasmlab.runtime.handlers.wasmer import WasmerHandler

        handler = WasmerHandler()
        handler.prepare()   # imports only; the SDK's client is made in each forked child
    else:
        import wasmtime  # noqa: F401
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            status = 255
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    target = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                if engine == "wasmer":
                    status = _run_wasmer(handler, req["wasm"], req["root"], req["args"], req["env"])
                else:
                    status = _run_wasmtime(req["wasm"], req["root"], req["args"], req["env"])
            except BaseException:
                import traceback

                with open(req["error"], "w") as fh:   # the runner's own failure, told apart from the guest's
                    traceback.print_exc(file=fh)
                status = 250
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        _, wstatus = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(wstatus)
        error = None
        if os.path.exists(req["error"]):
            with open(req["error"]) as fh:
                error = fh.read()
        out.write(json.dumps({"exit_code": code, "error": error}) + "\n")
        out.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
