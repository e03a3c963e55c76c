"""Containerfile builds into the store: the seed image, instructions, context rules, RUN, failures."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from images_support import (
    COMPAT,
    hello_wasm,
    seed_context,
    snapshot,
    store_image,
    tar_bytes,
    tar_file,
    tar_names,
    validate,
    validate_layout,
)
from wasmlab.runtime.errors import BuildError, ImageError
from wasmlab.runtime.images.build import BuildEvent, build
from wasmlab.runtime.images.platform import parse_platform
from wasmlab.runtime.store.layout import ImageStore


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageStore:
    monkeypatch.setenv("WASMLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return ImageStore()


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return seed_context(tmp_path / "ctx")


def image_parts(store: ImageStore, name: str) -> tuple[dict, dict, list[bytes]]:  # type: ignore[type-arg]
    image = store.resolve(name)
    manifest = store.manifest(image)
    config = store.config(manifest)
    layers = [store.get_blob(d["digest"]) for d in manifest["layers"]]
    return manifest, config, layers


def write(ctx: Path, containerfile: str, **files: bytes | str) -> Path:
    (ctx / "Containerfile").write_text(containerfile)
    for name, content in files.items():
        path = ctx / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return ctx


# -- the seed image -------------------------------------------------------------------------------


def test_seed_image_is_a_compat_wasm_image(store: ImageStore, ctx: Path) -> None:
    result = build(ctx, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
    assert result.name == "localhost/mywasm-image:latest"
    assert (result.os, result.architecture) == ("wasip1", "wasm")
    manifest, config, layers = image_parts(store, "mywasm-image")
    assert manifest["annotations"] == COMPAT
    assert config["config"]["Cmd"] == ["/hello.wasm"]
    assert (config["os"], config["architecture"]) == ("wasip1", "wasm")
    assert tar_file(layers[0], "hello.wasm") == hello_wasm()
    assert store.resolve(result.digest).digest == result.digest
    assert manifest["config"]["digest"] == result.id
    validate("manifest", store.get_blob(result.digest))
    validate("config", store.get_blob(result.id))
    validate_layout(store.root)


def test_seed_build_time_is_measured(store: ImageStore, ctx: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    build(ctx, tag="warmup")
    times = []
    for _ in range(15):
        start = time.perf_counter()
        build(ctx, tag="mywasm-image", annotations=COMPAT, platform="wasi/wasm")
        times.append((time.perf_counter() - start) * 1000)
    with capsys.disabled():
        print(f"\n[measure] seed build in-process: median {statistics.median(times):.2f} ms, "
              f"max {max(times):.2f} ms over {len(times)} builds")
    assert len(store.images()) >= 2


def test_layers_are_deterministic_and_platform_defaults_to_linux(store: ImageStore, ctx: Path) -> None:
    a = build(ctx, tag="a")
    b = build(ctx, tag="b")
    ma, ca, _ = image_parts(store, "a")
    mb, _, _ = image_parts(store, "b")
    assert ma["layers"] == mb["layers"]
    assert ca["os"] == "linux" and ca["architecture"] in ("amd64", "arm64")
    assert a.digest != b.digest or a.id == b.id
    info = tar_names(store.get_blob(ma["layers"][0]["digest"]))["hello.wasm"]
    assert (info.mtime, info.uid, info.gid, info.uname) == (0, 0, 0, "")


def test_timestamp_makes_the_whole_image_reproducible(store: ImageStore, ctx: Path) -> None:
    a = build(ctx, tag="a", timestamp=1700000000, annotations=COMPAT)
    b = build(ctx, tag="b", timestamp=1700000000, annotations=COMPAT)
    assert a.digest == b.digest
    assert image_parts(store, "a")[1]["created"] == "2023-11-14T22:13:20Z"


def test_gzip_layers_are_deterministic(store: ImageStore, ctx: Path) -> None:
    build(ctx, tag="a", compression="gzip")
    build(ctx, tag="b", compression="gzip")
    ma, ca, layers = image_parts(store, "a")
    mb, _, _ = image_parts(store, "b")
    assert ma["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert ma["layers"] == mb["layers"]
    assert tar_file(gzip.decompress(layers[0]), "hello.wasm") == hello_wasm()
    assert ca["rootfs"]["diff_ids"][0] != ma["layers"][0]["digest"]


@pytest.mark.parametrize(("text", "os_name", "arch"), [
    ("wasi/wasm", "wasip1", "wasm"), ("wasip2/wasm", "wasip2", "wasm"),
    ("linux/x86_64", "linux", "amd64"), ("linux/arm64/v8", "linux", "arm64"),
])
def test_platforms(text: str, os_name: str, arch: str) -> None:
    plat = parse_platform(text)
    assert plat is not None and (plat.os, plat.architecture) == (os_name, arch)


def test_bad_platform_is_a_build_error() -> None:
    with pytest.raises(BuildError) as err:
        parse_platform("wasm")
    assert "OS/ARCH" in err.value.hint


def test_progress_reports_each_step(store: ImageStore, ctx: Path) -> None:
    events: list[BuildEvent] = []
    build(ctx, tag="x", progress=events.append)
    steps = [e for e in events if e.kind == "step"]
    assert [(e.step, e.total, e.line) for e in steps] == [(1, 3, 1), (2, 3, 2), (3, 3, 3)]
    assert steps[1].message == "COPY hello.wasm /"
    assert events[-1].kind == "commit"


# -- instructions --------------------------------------------------------------------------------


def test_metadata_instructions_reach_the_config(store: ImageStore, ctx: Path) -> None:
    write(ctx, """\
ARG VERSION=1
FROM scratch
ARG VERSION
ARG WHO=nobody
ENV APP_VERSION=$VERSION GREETING="hello ${WHO}"
LABEL org.example.version=$VERSION "org.example.title"="Hello app"
WORKDIR /app
WORKDIR data
USER 1000:1000
EXPOSE 8080 53/udp
VOLUME /cache
STOPSIGNAL SIGINT
COPY hello.wasm .
ENTRYPOINT ["/app/data/hello.wasm"]
CMD ["--flag"]
""")
    build(ctx, tag="meta", build_args={"VERSION": "2", "WHO": "world"}, labels={"extra": "yes"})
    _, config, layers = image_parts(store, "meta")
    section = config["config"]
    assert section["Env"] == ["APP_VERSION=2", "GREETING=hello world"]
    assert section["Labels"] == {"org.example.version": "2", "org.example.title": "Hello app", "extra": "yes"}
    assert section["WorkingDir"] == "/app/data"
    assert section["User"] == "1000:1000"
    assert section["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert section["Volumes"] == {"/cache": {}}
    assert section["StopSignal"] == "SIGINT"
    assert section["Entrypoint"] == ["/app/data/hello.wasm"] and section["Cmd"] == ["--flag"]
    names = tar_names(layers[0])
    assert {"app", "app/data", "app/data/hello.wasm"} <= set(names)
    assert names["app"].isdir()


def test_copy_to_dot_and_to_existing_directories(store: ImageStore, ctx: Path) -> None:
    store_image(store, "with-app-dir", [tar_bytes([("dir", "app")])])
    write(ctx, "FROM with-app-dir\nCOPY hello.wasm .\nCOPY hello.wasm /app\nCOPY hello.wasm /renamed.wasm\n")
    build(ctx, tag="x")
    names = set(tar_names(image_parts(store, "x")[2][1]))
    assert {"hello.wasm", "app/hello.wasm", "renamed.wasm"} <= names


def test_shell_form_commands_use_the_shell(store: ImageStore, ctx: Path) -> None:
    write(ctx, "FROM scratch\nCOPY hello.wasm /\nCMD echo $HOME\n")
    build(ctx, tag="x")
    assert image_parts(store, "x")[1]["config"]["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]


def test_entrypoint_drops_the_inherited_cmd(store: ImageStore, ctx: Path) -> None:
    store_image(store, "base", [tar_bytes([("file", "x", b"1")])], {"Cmd": ["/bin/sh"]})
    write(ctx, "FROM base\nENTRYPOINT [\"/x\"]\n")
    build(ctx, tag="child")
    section = image_parts(store, "child")[1]["config"]
    assert section["Entrypoint"] == ["/x"] and "Cmd" not in section


def test_unused_build_args_are_warned_about(store: ImageStore, ctx: Path) -> None:
    events: list[BuildEvent] = []
    build(ctx, tag="x", build_args=["UNUSED=1"], progress=events.append)
    assert any(e.kind == "warning" and "UNUSED" in e.message for e in events)


def test_copy_directories_wildcards_modes_and_owners(store: ImageStore, ctx: Path) -> None:
    write(ctx, """\
FROM scratch
COPY src/ /srv/
COPY --chmod=700 --chown=10:20 *.wasm /modules/
COPY src/a.txt /renamed.txt
""", src__a_txt=b"", **{"src__a.txt": b"A", "src__sub__b.txt": b"B", "other.wasm": b"\0asm"})
    (ctx / "src" / "link").symlink_to("a.txt")
    build(ctx, tag="x")
    names = tar_names(image_parts(store, "x")[2][0])
    assert {"srv/a.txt", "srv/sub/b.txt", "srv/link", "renamed.txt"} <= set(names)
    assert names["srv/link"].issym() and names["srv/link"].linkname == "a.txt"
    wasm = names["modules/hello.wasm"]
    assert (wasm.mode, wasm.uid, wasm.gid) == (0o700, 10, 20)
    assert "modules/other.wasm" in names


def test_containerignore_excludes_files_and_supports_exceptions(store: ImageStore, ctx: Path) -> None:
    files = {"secret.key": "k", "logs__a.log": "a", "logs__keep.log": "k", "notes.md": "n"}
    write(ctx, "FROM scratch\nCOPY . /ctx/\n", **files)
    (ctx / ".containerignore").write_text("# comment\n*.key\nlogs\n!logs/keep.log\n**/*.md\n")
    build(ctx, tag="x")
    names = set(tar_names(image_parts(store, "x")[2][0]))
    assert "ctx/hello.wasm" in names and "ctx/logs/keep.log" in names
    assert not {"ctx/secret.key", "ctx/logs/a.log", "ctx/notes.md"} & names
    write(ctx, "FROM scratch\nCOPY secret.key /\n")
    with pytest.raises(BuildError, match="not found"):
        build(ctx, tag="y")


def test_dockerignore_is_used_when_there_is_no_containerignore(store: ImageStore, ctx: Path) -> None:
    write(ctx, "FROM scratch\nCOPY . /\n", **{"skip.me": "x"})
    (ctx / ".dockerignore").write_text("skip.me\n")
    build(ctx, tag="x")
    assert "skip.me" not in tar_names(image_parts(store, "x")[2][0])


def test_add_extracts_local_tar_archives(store: ImageStore, ctx: Path) -> None:
    archive = gzip.compress(tar_bytes([("dir", "pkg"), ("file", "pkg/tool.wasm", b"\0asm", 0o755)]))
    write(ctx, "FROM scratch\nADD bundle.tar.gz /opt/\nADD hello.wasm /plain.wasm\n",
          **{"bundle.tar.gz": archive})
    build(ctx, tag="x")
    layer = image_parts(store, "x")[2][0]
    assert tar_file(layer, "opt/pkg/tool.wasm") == b"\0asm"
    assert tar_file(layer, "plain.wasm") == hello_wasm()


def test_add_unpacks_what_buildah_unpacks_and_copies_the_rest(store: ImageStore, ctx: Path) -> None:
    """bzip2 and xz tars are unpacked, hard links inside keep their content, and a gzip file that holds no
    tar is copied as it is."""
    import bz2
    import lzma

    plain = tar_bytes([("file", "orig", b"same\n"), ("hardlink", "hard", "orig")])
    write(ctx, "FROM scratch\nADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\nADD notes.txt.gz /gz/\n",
          **{"a.tar.bz2": bz2.compress(plain), "a.tar.xz": lzma.compress(plain),
             "notes.txt.gz": gzip.compress(b"just text\n")})
    build(ctx, tag="x")
    layer = image_parts(store, "x")[2][0]
    for folder in ("bz", "xz"):
        assert tar_file(layer, f"{folder}/orig") == b"same\n" == tar_file(layer, f"{folder}/hard")
    assert gzip.decompress(tar_file(layer, "gz/notes.txt.gz")) == b"just text\n"


def test_legacy_forms_bom_and_platform_args_as_buildah_reads_them(store: ImageStore, ctx: Path) -> None:
    write(ctx, "\ufeffFROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nLABEL maintainer learner\n"
               "ENV GREETING\thello there\nEXPOSE 80/TCP\nLABEL arch=$TARGETARCH plat=$TARGETPLATFORM\n"
               "COPY hello.wasm /\n")
    build(ctx, tag="x", platform="linux/arm64")
    cfg = image_parts(store, "x")[1]["config"]
    assert cfg["Labels"] == {"maintainer": "learner", "arch": "arm64", "plat": "linux/arm64"}
    assert cfg["Env"][-1] == "GREETING=hello there" and cfg["ExposedPorts"] == {"80/tcp": {}}


def test_copy_of_a_symlink_keeps_the_links_name(store: ImageStore, ctx: Path) -> None:
    write(ctx, "FROM scratch\nCOPY link /ldir/\n", **{"a.txt": "content\n"})
    (ctx / "link").symlink_to("a.txt")
    build(ctx, tag="x")
    layer = image_parts(store, "x")[2][0]
    assert tar_file(layer, "ldir/link") == b"content\n" and "ldir/a.txt" not in tar_names(layer)


def test_platform_must_match_the_base_image(store: ImageStore, ctx: Path) -> None:
    """--platform does not relabel an amd64 base as arm64 (or as Wasm): buildah refuses it too."""
    layer = tar_bytes([("file", "etc/os-release", b"ID=test\n")])
    store_image(store, "base:amd", [layer], {"Env": ["PATH=/bin"]})
    write(ctx, "FROM base:amd\nCOPY hello.wasm /\n")
    base_os = image_parts(store, "base:amd")[1]["os"]
    for platform in ("linux/arm64", "wasi/wasm"):
        with pytest.raises(BuildError, match="not " + ("wasip1/wasm" if platform.startswith("wasi") else platform)):
            build(ctx, tag="x", platform=platform)
    build(ctx, tag="x", platform=f"{base_os}/{image_parts(store, 'base:amd')[1]['architecture']}")


def test_copy_globs_do_not_cross_folders(store: ImageStore, ctx: Path) -> None:
    (ctx / "sub" / "inner").mkdir(parents=True)
    (ctx / "sub" / "inner" / "deep.txt").write_text("deep\n")
    write(ctx, "FROM scratch\nCOPY *.txt /g/\nCOPY sub/*/*.txt /h/\n", **{"top.txt": "top\n"})
    build(ctx, tag="x")
    names = set(tar_names(image_parts(store, "x")[2][0]))
    assert {"g/top.txt", "h/deep.txt"} <= names and "g/deep.txt" not in names


def test_add_refuses_archives_that_escape(store: ImageStore, ctx: Path) -> None:
    evil = tar_bytes([("file", "../../etc/x", b"x")])
    write(ctx, "FROM scratch\nADD evil.tar /opt/\n", **{"evil.tar": evil})
    with pytest.raises(BuildError, match="unsafe entry"):
        build(ctx, tag="x")


def test_add_from_url_is_refused(store: ImageStore, ctx: Path) -> None:
    write(ctx, "FROM scratch\nADD https://example.org/x.wasm /\n")
    with pytest.raises(BuildError) as err:
        build(ctx, tag="x")
    assert "URL" in err.value.message and "download" in err.value.hint


def test_from_a_stored_image_keeps_its_layers_and_records_the_base(store: ImageStore, ctx: Path) -> None:
    base_layer = tar_bytes([("dir", "etc"), ("file", "etc/os-release", b"ID=test\n")])
    base = store_image(store, "base:1", [base_layer], {"Env": ["PATH=/bin", "A=1"], "Cmd": ["/bin/sh"]})
    write(ctx, "FROM base:1\nENV B=2\nCOPY hello.wasm /etc/\n")
    build(ctx, tag="child")
    manifest, config, layers = image_parts(store, "child")
    assert len(layers) == 2 and layers[0] == base_layer
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == base
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == "localhost/base:1"
    assert config["config"]["Env"] == ["PATH=/bin", "A=1", "B=2"]
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert len(config["rootfs"]["diff_ids"]) == 2
    names = tar_names(layers[1])
    assert "etc/hello.wasm" in names and "etc/os-release" not in names


def test_copy_follows_symlinks_in_the_base_image(store: ImageStore, ctx: Path) -> None:
    store_image(store, "merged-usr", [tar_bytes([("dir", "usr"), ("dir", "usr/lib"),
                                                 ("symlink", "lib", "usr/lib")])])
    write(ctx, "FROM merged-usr\nCOPY hello.wasm /lib/\n")
    build(ctx, tag="x")
    assert "usr/lib/hello.wasm" in tar_names(image_parts(store, "x")[2][1])


def test_multi_stage_copy_from_an_earlier_stage(store: ImageStore, ctx: Path) -> None:
    write(ctx, """\
FROM scratch AS assets
COPY hello.wasm /build/out.wasm
FROM scratch
COPY --from=assets /build/out.wasm /app.wasm
CMD ["/app.wasm"]
""")
    result = build(ctx, tag="x", annotations=COMPAT)
    _, config, layers = image_parts(store, "x")
    assert len(layers) == 1 and set(tar_names(layers[0])) == {"app.wasm"}
    assert tar_file(layers[0], "app.wasm") == hello_wasm()
    assert result.layers == 1 and config["config"]["Cmd"] == ["/app.wasm"]


def test_build_target_stops_at_the_named_stage(store: ImageStore, ctx: Path) -> None:
    write(ctx, "FROM scratch AS first\nCOPY hello.wasm /one.wasm\nFROM scratch\nCOPY hello.wasm /two.wasm\n")
    build(ctx, tag="x", target="first")
    assert set(tar_names(image_parts(store, "x")[2][0])) == {"one.wasm"}


# -- RUN ----------------------------------------------------------------------------------------------


def shell_base(store: ImageStore) -> None:
    layer = tar_bytes([("dir", "bin"), ("file", "bin/sh", b"#!fake shell", 0o755), ("dir", "tmp"),
                       ("file", "tmp/old.txt", b"old"), ("dir", "etc"), ("file", "etc/keep", b"k")])
    store_image(store, "shell-base", [layer], {"Env": ["PATH=/bin"]})


def test_run_uses_run_step_and_layers_its_changes(store: ImageStore, ctx: Path) -> None:
    shell_base(store)
    calls = []

    def run_step(rootfs: Path, argv: list[str], env: list[str], cwd: str) -> int:
        calls.append((argv, env, cwd))
        assert (rootfs / "bin" / "sh").is_file()
        assert (rootfs / "work" / "hello.wasm").read_bytes() == hello_wasm()
        (rootfs / "work" / "out.txt").write_text("made by RUN")
        (rootfs / "tmp" / "old.txt").unlink()
        return 0

    write(ctx, "FROM shell-base\nARG MODE=fast\nWORKDIR /work\nCOPY hello.wasm .\nRUN make $MODE\n")
    build(ctx, tag="x", run_step=run_step)
    assert calls == [(["/bin/sh", "-c", "make $MODE"], ["PATH=/bin", "MODE=fast"], "/work")]
    layers = image_parts(store, "x")[2]
    names = tar_names(layers[1])
    assert tar_file(layers[1], "work/out.txt") == b"made by RUN"
    assert "work/hello.wasm" in names
    assert "tmp/.wh.old.txt" in names
    assert "etc/keep" not in names and "bin/sh" not in names


def test_run_on_scratch_is_a_clear_error(store: ImageStore, ctx: Path) -> None:
    store.init()
    before = snapshot(store.root)
    write(ctx, "FROM scratch\nCOPY hello.wasm /\nRUN echo hi\n")
    with pytest.raises(BuildError) as err:
        build(ctx, tag="x", run_step=lambda *a: 0)
    assert "line 3" in err.value.message and "shell" in err.value.message
    assert "busybox" in err.value.hint
    write(ctx, "FROM scratch\nRUN [\"/hello.wasm\"]\n")
    with pytest.raises(BuildError, match="scratch"):
        build(ctx, tag="x", run_step=lambda *a: 0)
    assert snapshot(store.root) == before


def test_run_without_a_shell_in_the_base_is_a_clear_error(store: ImageStore, ctx: Path) -> None:
    store_image(store, "noshell", [tar_bytes([("file", "hello.wasm", b"\0asm")])])
    write(ctx, "FROM noshell\nRUN echo hi\n")
    with pytest.raises(BuildError) as err:
        build(ctx, tag="x", run_step=lambda *a: 0)
    assert "/bin/sh is not in the image" in err.value.message


def test_run_without_a_runner_and_failing_runs(store: ImageStore, ctx: Path) -> None:
    shell_base(store)
    before = snapshot(store.root)
    write(ctx, "FROM shell-base\nRUN false\n")
    with pytest.raises(BuildError, match="needs a runner"):
        build(ctx, tag="x")
    with pytest.raises(BuildError) as err:
        build(ctx, tag="x", run_step=lambda *a: 3)
    assert "exited with code 3" in err.value.message and "line 2" in err.value.message
    assert snapshot(store.root) == before


def test_run_leaves_no_temp_directories(store: ImageStore, ctx: Path, tmp_path: Path) -> None:
    shell_base(store)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    write(ctx, "FROM shell-base\nRUN true\n")
    build(ctx, tag="ok", run_step=lambda *a: 0, tmpdir=str(scratch))
    with pytest.raises(BuildError):
        build(ctx, tag="bad", run_step=lambda *a: 1, tmpdir=str(scratch))
    assert list(scratch.iterdir()) == []


# -- failures leave the store as it was ---------------------------------------------------------


@pytest.mark.parametrize(("containerfile", "message", "hint"), [
    ("FROM scratch\nCOPY hello.wasm /\nCMD [\"/hello.wasm\"\n", "line 3: CMD looks like the JSON exec form",
     "closing ]"),
    ("FROM scratch\nCOPY hello.wasm\n", "line 2", "SOURCE"),
    ("FROM scratch\nCOPPY hello.wasm /\n", "line 2: unknown instruction 'COPPY'", "COPY"),
    ("FROM scratch\nCOPY missing.wasm /\n", "line 2: COPY source 'missing.wasm' not found",
     ".containerignore"),
    ("FROM scratch\nCOPY ../outside.txt /\n",
     "line 2: COPY source '../outside.txt' is outside the build context", "inside the context"),
    ("FROM scratch\nCOPY escape /\n", "outside the build context (through a symlink)", "inside the context"),
    ("FROM no-such-base\nCOPY hello.wasm /\n", "line 1: base image 'no-such-base' is not in the image store",
     "pull"),
    ("FROM scratch\nCOPY --chown=bob hello.wasm /\n", "uses names", "numeric"),
    ("FROM scratch\nCOPY *.nothing /\n", "matches no files", "pattern"),
])
def test_bad_builds_fail_clearly_and_leave_the_store_byte_identical(
        store: ImageStore, ctx: Path, containerfile: str, message: str | None, hint: str | None) -> None:
    build(ctx, tag="existing", annotations=COMPAT)
    (ctx.parent / "outside.txt").write_text("secret")
    (ctx / "escape").symlink_to(ctx.parent / "outside.txt")
    before = snapshot(store.root)
    write(ctx, containerfile)
    with pytest.raises(BuildError) as err:
        build(ctx, tag="mywasm-image", annotations=COMPAT)
    if message is not None:
        assert message in err.value.message
    if hint is not None:
        assert hint in err.value.hint
    assert err.value.hint and "\n" not in err.value.message
    assert snapshot(store.root) == before


def test_missing_containerfile_and_context(store: ImageStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BuildError) as err:
        build(tmp_path / "empty", tag="x")
    assert "no Containerfile" in err.value.message and "-f" in err.value.hint
    with pytest.raises(BuildError, match="not a directory"):
        build(tmp_path / "nowhere", tag="x")
    with pytest.raises(BuildError, match="not found"):
        build(tmp_path / "empty", "Nope", tag="x")


def test_invalid_tag_is_refused_before_building(store: ImageStore, ctx: Path) -> None:
    with pytest.raises(ImageError, match="lowercase"):
        build(ctx, tag="MyImage")
    assert not store.root.exists()


def test_containerfile_can_live_outside_the_context(store: ImageStore, ctx: Path, tmp_path: Path) -> None:
    other = tmp_path / "files" / "Wasmfile"
    other.parent.mkdir()
    other.write_text("FROM scratch\nCOPY hello.wasm /x.wasm\n")
    build(ctx, other, tag="x")
    assert "x.wasm" in tar_names(image_parts(store, "x")[2][0])
    assert json.loads(store.index_path.read_bytes())["manifests"]
    assert os.listdir(store.staging_dir) == []


def _build_and_hang(ctx: str, home: str, tmpdir: str, ready: Any) -> None:
    os.environ["WASMLAB_HOME"] = home

    def run_step(rootfs: Path, argv: list[str], env: list[str], cwd: str) -> int:
        (rootfs / "half-written").write_bytes(b"x" * 100_000)
        ready.set()
        time.sleep(60)
        return 0

    build(ctx, tag="killed", run_step=run_step, tmpdir=tmpdir)


def test_a_build_killed_midway_leaves_the_store_as_it_was(store: ImageStore, ctx: Path, tmp_path: Path) -> None:
    shell_base(store)
    write(ctx, "FROM shell-base\nCOPY hello.wasm /\nRUN make\n")
    before = snapshot(store.root)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    mp = multiprocessing.get_context("fork")
    ready = mp.Event()
    proc = mp.Process(target=_build_and_hang, args=(str(ctx), os.environ["WASMLAB_HOME"], str(scratch), ready))
    proc.start()
    assert ready.wait(20)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert snapshot(store.root) == before
    validate_layout(store.root)
    with pytest.raises(ImageError):
        store.resolve("killed")
    build(ctx, tag="after", run_step=lambda *a: 0)  # the store still works
    assert store.resolve("after")
