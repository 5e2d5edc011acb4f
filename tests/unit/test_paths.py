"""hearth.paths: name checks, safe joins, the model folder registry and ComfyUI's extra_model_paths.yaml."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hearth.config import config_from_args
from hearth.paths import DIRECTORY_TYPES, Folders, PathError, check_name, is_inside, safe_join


def folders_for(base: Path, *yaml_files: Path, extra: list[str] | None = None) -> Folders:
    args = ["--base-directory", str(base)]
    for y in yaml_files:
        args += ["--extra-model-paths-config", str(y)]
    return Folders.from_config(config_from_args(args + (extra or [])))


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- check_name ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "a.png", "sub/a.png", "deep/er/a.safetensors", "a..b.png", "..a", "a..", ".hidden", "ünïcode ✓.png",
    "with space (1).png", "x" * 255, "/".join(["d" * 200] * 20), "a/./b", "trailing/",
])
def test_check_name_accepts(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", [
    "..", "../x", "x/..", "a/../b", "a/../../b",
    "/abs", "/", "//server/share",
    "a\\b", "..\\x", "\\\\server\\share",
    "C:", "c:x.png", "C:\\x", "Z:/x",
    "a\x00b", "\x00",
    "a\nb", "x\r\nSet-Cookie: y", "~", "~/x", "~root/x",
    "x" * 256, "é" * 128,  # 256 UTF-8 bytes in one piece
    "/".join(["d" * 200] * 21),  # more than 4096 characters
])
def test_check_name_rejects(name):
    with pytest.raises(PathError) as info:
        check_name(name)
    assert info.value.status == 400


def test_check_name_slash_option_and_types():
    with pytest.raises(PathError):
        check_name("a/b", allow_slash=False)
    assert check_name("ab", allow_slash=False) == "ab"
    with pytest.raises(PathError):
        check_name(None)  # type: ignore[arg-type]
    with pytest.raises(PathError):
        check_name(b"bytes")  # type: ignore[arg-type]


# --- safe_join / is_inside -------------------------------------------------------------------------
def test_safe_join_inside(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("x")
    assert safe_join(root, "sub", "f.txt") == Path(os.path.realpath(root / "sub" / "f.txt"))
    assert safe_join(root, "", "sub/f.txt") == safe_join(root, "sub", "f.txt")
    assert safe_join(root) == Path(os.path.realpath(root))
    assert safe_join(root, "not", "yet", "there.txt") == Path(os.path.realpath(root)) / "not/yet/there.txt"
    assert safe_join(root, "sub/./f.txt") == safe_join(root, "sub", "f.txt")


@pytest.mark.parametrize("parts", [("..",), ("sub", ".."), ("../x",), ("/etc/passwd",), ("a\\b",), ("C:x",),
                                   ("a\x00",), ("sub", "/abs")])
def test_safe_join_rejects_bad_parts_with_400(tmp_path, parts):
    (tmp_path / "sub").mkdir()
    with pytest.raises(PathError) as info:
        safe_join(tmp_path, *parts)
    assert info.value.status == 400


def test_safe_join_refuses_links_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside / "secret", root / "file_link")
    os.symlink(outside, root / "dir_link")
    for parts in (("file_link",), ("dir_link",), ("dir_link", "secret"), ("dir_link/new.txt",)):
        with pytest.raises(PathError) as info:
            safe_join(root, *parts)
        assert info.value.status == 403
    with pytest.raises(PathError) as info:
        safe_join(root, "file_link", status=404)
    assert info.value.status == 404


def test_safe_join_follows_links_that_stay_inside(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f").write_text("x")
    os.symlink(root / "real", root / "alias")
    os.symlink("real/f", root / "rel_alias")
    assert safe_join(root, "alias", "f") == Path(os.path.realpath(root / "real" / "f"))
    assert safe_join(root, "rel_alias") == Path(os.path.realpath(root / "real" / "f"))


def test_safe_join_root_that_is_a_link(tmp_path):
    real = tmp_path / "real_root"
    real.mkdir()
    (real / "f").write_text("x")
    os.symlink(real, tmp_path / "linked_root")
    assert safe_join(tmp_path / "linked_root", "f") == Path(os.path.realpath(real / "f"))


def test_safe_join_sibling_with_common_prefix_is_outside(tmp_path):
    root = tmp_path / "base"
    sibling = tmp_path / "base2"
    root.mkdir()
    sibling.mkdir()
    (sibling / "f").write_text("x")
    os.symlink(sibling / "f", root / "link")
    with pytest.raises(PathError):
        safe_join(root, "link")
    assert not is_inside(root, sibling / "f")
    assert is_inside(root, root / "anything")
    assert is_inside(root, root)


def test_symlink_loop_is_refused_or_contained(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(root / "b", root / "a")
    os.symlink(root / "a", root / "b")
    try:
        path = safe_join(root, "a")
    except PathError:
        return
    assert is_inside(root, path)


# --- folder registry -------------------------------------------------------------------------------
def test_default_folders(tmp_path):
    f = folders_for(tmp_path)
    assert f.input == tmp_path / "input" and f.output == tmp_path / "output" and f.temp == tmp_path / "temp"
    assert f.user == tmp_path / "user" and f.custom_nodes == [tmp_path / "custom_nodes"]
    assert list(f.model_folders)[:6] == ["checkpoints", "configs", "loras", "vae", "text_encoders",
                                         "diffusion_models"]
    assert f.model_folders["text_encoders"].paths == [tmp_path / "models" / "text_encoders",
                                                      tmp_path / "models" / "clip"]
    assert f.model_folders["diffusion_models"].paths == [tmp_path / "models" / "unet",
                                                         tmp_path / "models" / "diffusion_models"]
    assert f.folder("clip") is f.folder("text_encoders")
    assert f.folder("unet") is f.folder("diffusion_models")
    assert f.folder("nope") is None
    assert [f.directory(k) for k in DIRECTORY_TYPES] == [f.output, f.input, f.temp]
    assert f.directory("user") is None and f.directory("models") is None


def test_directory_flags(tmp_path):
    f = folders_for(tmp_path / "base", extra=["--input-directory", str(tmp_path / "in"),
                                              "--output-directory", str(tmp_path / "out"),
                                              "--temp-directory", str(tmp_path / "tmp"),
                                              "--user-directory", str(tmp_path / "usr")])
    assert (f.input, f.output, f.temp, f.user) == (tmp_path / "in", tmp_path / "out", tmp_path / "tmp",
                                                  tmp_path / "usr")


def test_create_makes_the_fresh_install_layout(tmp_path):
    f = folders_for(tmp_path)
    f.create()
    for d in (f.input, f.output, f.temp, f.user, tmp_path / "custom_nodes", tmp_path / "models" / "checkpoints"):
        assert d.is_dir()
    f.create()  # idempotent


def test_annotated_names(tmp_path):
    f = folders_for(tmp_path)
    assert f.annotated("a.png") == ("a.png", f.input)
    assert f.annotated("a.png [output]") == ("a.png", f.output)
    assert f.annotated("a.png [temp]") == ("a.png", f.temp)
    assert f.annotated("a.png [input]") == ("a.png", f.input)
    assert f.annotated("a.png[output]") == ("a.png[output]", f.input)


# --- extra_model_paths.yaml ------------------------------------------------------------------------
def test_extra_paths_base_path_and_multiline_lists(tmp_path):
    other = tmp_path / "a1111"
    y = write_yaml(tmp_path / "conf" / "extra_model_paths.yaml", f"""
        a111:
            base_path: {other}
            checkpoints: models/Stable-diffusion
            configs: models/Stable-diffusion
            vae: models/VAE/
            loras: |
                 models/Lora

                 models/LyCORIS
            upscale_models: |
                          models/ESRGAN
                          models/RealESRGAN
            embeddings: embeddings
            controlnet: {tmp_path / "absolute" / "cn"}
        """)
    f = folders_for(tmp_path / "base", y)
    models = tmp_path / "base" / "models"
    assert f.model_folders["checkpoints"].paths == [models / "checkpoints", other / "models/Stable-diffusion"]
    assert f.model_folders["configs"].paths[-1] == other / "models/Stable-diffusion"
    assert f.model_folders["vae"].paths[-1] == other / "models/VAE"  # trailing slash normalised
    assert f.model_folders["loras"].paths == [models / "loras", other / "models/Lora", other / "models/LyCORIS"]
    assert f.model_folders["upscale_models"].paths[1:] == [other / "models/ESRGAN", other / "models/RealESRGAN"]
    assert f.model_folders["embeddings"].paths[-1] == other / "embeddings"
    assert f.model_folders["controlnet"].paths[-1] == tmp_path / "absolute" / "cn"  # absolute stays absolute


def test_extra_paths_relative_base_path_and_entries(tmp_path):
    conf = tmp_path / "conf"
    y = write_yaml(conf / "paths.yaml", """
        rel_base:
            base_path: ../shared
            checkpoints: ckpts
        no_base:
            loras: my_loras
            vae: ../../elsewhere/vae
        """)
    f = folders_for(tmp_path / "base", y)
    assert f.model_folders["checkpoints"].paths[-1] == tmp_path / "shared" / "ckpts"
    assert f.model_folders["loras"].paths[-1] == conf / "my_loras"  # relative to the YAML's folder
    assert f.model_folders["vae"].paths[-1] == Path(os.path.normpath(conf / "../../elsewhere/vae"))


def test_extra_paths_is_default_goes_first(tmp_path):
    y = write_yaml(tmp_path / "p.yaml", f"""
        comfy:
            base_path: {tmp_path / "central"}
            is_default: true
            checkpoints: models/checkpoints/
            clip: models/clip/
            diffusion_models: |
                models/diffusion_models
                models/unet
        later:
            base_path: {tmp_path / "other"}
            is_default: false
            checkpoints: ckpt
        """)
    f = folders_for(tmp_path / "base", y)
    central = tmp_path / "central" / "models"
    ckpts = f.model_folders["checkpoints"].paths
    assert ckpts[0] == central / "checkpoints"
    assert ckpts[-1] == tmp_path / "other" / "ckpt"
    assert tmp_path / "base" / "models" / "checkpoints" in ckpts
    assert f.model_folders["text_encoders"].paths[0] == central / "clip"  # legacy name 'clip'
    assert set(f.model_folders["diffusion_models"].paths[:2]) == {central / "diffusion_models", central / "unet"}


def test_extra_paths_custom_nodes_and_new_folder_names(tmp_path):
    y = write_yaml(tmp_path / "p.yaml", f"""
        other_ui:
            base_path: {tmp_path / "ui"}
            custom_nodes: path/custom_nodes
            gligen: models/gligen
            brand_new_kind: models/new
        """)
    f = folders_for(tmp_path / "base", y)
    assert f.custom_nodes == [tmp_path / "base" / "custom_nodes", tmp_path / "ui" / "path" / "custom_nodes"]
    assert "custom_nodes" not in f.model_folders
    assert f.model_folders["gligen"].paths[-1] == tmp_path / "ui" / "models" / "gligen"
    assert f.folder("brand_new_kind").paths == [tmp_path / "ui" / "models" / "new"]


def test_extra_paths_expands_user_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HEARTH_TEST_MODELS", str(tmp_path / "from_env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    y = write_yaml(tmp_path / "p.yaml", """
        env:
            base_path: $HEARTH_TEST_MODELS
            loras: l
        home:
            base_path: ~/models
            vae: v
        """)
    f = folders_for(tmp_path / "base", y)
    assert f.model_folders["loras"].paths[-1] == tmp_path / "from_env" / "l"
    assert f.model_folders["vae"].paths[-1] == tmp_path / "home" / "models" / "v"


def test_extra_paths_null_sections_and_values(tmp_path):
    y = write_yaml(tmp_path / "p.yaml", """
        empty_section:
        partial:
            base_path: /srv
            loras:
            vae: v
        """)
    f = folders_for(tmp_path / "base", y)
    assert f.model_folders["loras"].paths == [tmp_path / "base" / "models" / "loras"]
    assert f.model_folders["vae"].paths[-1] == Path("/srv/v")


def test_extra_paths_several_files_in_order(tmp_path):
    y1 = write_yaml(tmp_path / "one.yaml", f"a:\n  loras: {tmp_path / 'l1'}\n")
    y2 = write_yaml(tmp_path / "two.yaml", f"b:\n  loras: {tmp_path / 'l2'}\n")
    f = folders_for(tmp_path / "base", y1, y2)
    assert f.model_folders["loras"].paths[-2:] == [tmp_path / "l1", tmp_path / "l2"]


@pytest.mark.parametrize("text", ["a: [unclosed", "- just\n- a list\n", "plain string"])
def test_extra_paths_bad_files_raise_value_error(tmp_path, text):
    y = tmp_path / "bad.yaml"
    y.write_text(text)
    with pytest.raises(ValueError):
        folders_for(tmp_path / "base", y)


def test_extra_paths_missing_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError):
        folders_for(tmp_path / "base", tmp_path / "missing.yaml")


def test_empty_yaml_adds_nothing(tmp_path):
    y = write_yaml(tmp_path / "empty.yaml", "")
    assert folders_for(tmp_path / "base", y).model_folders == folders_for(tmp_path / "base").model_folders


# --- file listings ---------------------------------------------------------------------------------
def test_filenames_lists_recursively_filtered_and_sorted(tmp_path):
    f = folders_for(tmp_path)
    ckpt = tmp_path / "models" / "checkpoints"
    (ckpt / "sdxl" / "deeper").mkdir(parents=True)
    for name in ("b.safetensors", "a.ckpt", "UPPER.SAFETENSORS", "notes.txt", "sdxl/x.sft",
                 "sdxl/deeper/y.pth", "config.yaml"):
        (ckpt / name).write_bytes(b"x")
    assert f.filenames("checkpoints") == ["UPPER.SAFETENSORS", "a.ckpt", "b.safetensors", "sdxl/deeper/y.pth",
                                          "sdxl/x.sft"]
    (tmp_path / "models" / "configs").mkdir(parents=True)
    (tmp_path / "models" / "configs" / "v1.yaml").write_text("x")
    (tmp_path / "models" / "configs" / "v1.safetensors").write_text("x")
    assert f.filenames("configs") == ["v1.yaml"]


def test_filenames_sees_files_dropped_in_later(tmp_path):
    f = folders_for(tmp_path)
    assert f.filenames("loras") == []  # folder absent
    loras = tmp_path / "models" / "loras"
    loras.mkdir(parents=True)
    assert f.filenames("loras") == []
    (loras / "first.safetensors").write_bytes(b"x")
    assert f.filenames("loras") == ["first.safetensors"]
    (loras / "new").mkdir()
    (loras / "new" / "second.safetensors").write_bytes(b"x")
    assert f.filenames("loras") == ["first.safetensors", "new/second.safetensors"]
    (loras / "first.safetensors").unlink()
    assert f.filenames("loras") == ["new/second.safetensors"]


def test_filenames_merge_every_path_of_a_folder(tmp_path):
    f = folders_for(tmp_path)
    (tmp_path / "models" / "clip").mkdir(parents=True)
    (tmp_path / "models" / "text_encoders").mkdir(parents=True)
    (tmp_path / "models" / "clip" / "t5.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "clip" / "both.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "text_encoders" / "both.safetensors").write_bytes(b"y")
    assert f.filenames("text_encoders") == ["both.safetensors", "t5.safetensors"]
    assert f.filenames("clip") == f.filenames("text_encoders")
    # the first path that holds a name wins
    assert f.full_path("clip", "both.safetensors") == Path(
        os.path.realpath(tmp_path / "models" / "text_encoders" / "both.safetensors"))
    assert f.full_path("text_encoders", "t5.safetensors") == Path(
        os.path.realpath(tmp_path / "models" / "clip" / "t5.safetensors"))


def test_filenames_of_extra_paths(tmp_path):
    shared = tmp_path / "shared"
    (shared / "Lora").mkdir(parents=True)
    (shared / "Lora" / "style.safetensors").write_bytes(b"x")
    y = write_yaml(tmp_path / "p.yaml", f"s:\n  base_path: {shared}\n  loras: Lora\n")
    f = folders_for(tmp_path / "base", y)
    assert f.filenames("loras") == ["style.safetensors"]
    assert f.full_path("loras", "style.safetensors") == Path(os.path.realpath(shared / "Lora" / "style.safetensors"))


def test_filenames_unknown_folder_and_diffusers(tmp_path):
    f = folders_for(tmp_path)
    assert f.filenames("nope") == []
    diffusers = tmp_path / "models" / "diffusers"
    (diffusers / "sd15" / "unet").mkdir(parents=True)
    (diffusers / "sd15" / "model_index.json").write_text("{}")
    (diffusers / "other").mkdir()
    assert f.filenames("diffusers") == ["other", "sd15"]
    assert f.full_path("diffusers", "sd15") == Path(os.path.realpath(diffusers / "sd15"))


def test_full_path_never_leaves_the_folder(tmp_path):
    f = folders_for(tmp_path)
    ckpt = tmp_path / "models" / "checkpoints"
    ckpt.mkdir(parents=True)
    (tmp_path / "outside.safetensors").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.safetensors", ckpt / "link.safetensors")
    (ckpt / "real.safetensors").write_bytes(b"x")
    assert f.full_path("checkpoints", "real.safetensors") is not None
    assert "link.safetensors" not in f.filenames("checkpoints")  # only what full_path would load is listed
    for name in ("../../outside.safetensors", "/etc/passwd", "link.safetensors", "..\\x", "C:x", "a\x00",
                 "missing.safetensors", "", "."):
        assert f.full_path("checkpoints", name) is None, name
    assert f.full_path("nope", "real.safetensors") is None


def test_add_model_path_order(tmp_path):
    f = folders_for(tmp_path)
    first, last = tmp_path / "first", tmp_path / "last"
    f.add_model_path("loras", last)
    f.add_model_path("loras", first, first=True)
    paths = f.model_folders["loras"].paths
    assert paths[0] == first and paths[-1] == last
    f.add_model_path("loras", last, first=True)  # an existing path marked default moves to the front
    assert f.model_folders["loras"].paths[0] == last
    assert f.model_folders["loras"].paths.count(last) == 1


def test_save_counters_skip_the_scan_only_while_the_folder_is_ours(tmp_path):
    from hearth.paths import SaveCounters, save_image_path

    counters = SaveCounters()
    folder, name, counter, sub, _ = save_image_path("img", tmp_path, counters=counters)
    assert counter == 1
    (tmp_path / "img_00001_.png").write_bytes(b"x")
    counters.saved(folder, name, 2)
    assert save_image_path("img", tmp_path, counters=counters)[2] == 2
    # someone else writes into the folder: its mtime changes, so the folder is scanned again
    import os
    import time
    time.sleep(0.01)
    (tmp_path / "img_00007_.png").write_bytes(b"x")
    os.utime(tmp_path, None)
    assert save_image_path("img", tmp_path, counters=counters)[2] == 8
