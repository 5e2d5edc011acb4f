"""ComfyUI's command-line flags map onto Config; bad command lines are clear errors."""
from __future__ import annotations

import pytest

from hearth.config import FlagError, config_from_args


def test_defaults():
    cfg = config_from_args([])
    assert cfg.listen == ["127.0.0.1"] and cfg.port == 8188 and cfg.loopback_only
    assert cfg.cache.kind == "classic" and cfg.max_upload_size == 100 * 1024 * 1024


def test_bare_listen_means_all_interfaces():
    cfg = config_from_args(["--listen"])
    assert cfg.listen == ["0.0.0.0", "::"] and not cfg.loopback_only
    assert config_from_args(["--listen", "127.0.0.1,::1"]).loopback_only


@pytest.mark.parametrize("args,kind", [(["--cache-lru", "5"], "lru"), (["--cache-none"], "none"),
                                       (["--cache-ram", "2"], "ram"), (["--cache-ram"], "ram"),
                                       (["--cache-classic"], "classic")])
def test_cache_flags(args, kind):
    assert config_from_args(args).cache.kind == kind


def test_cache_flags_are_exclusive():
    with pytest.raises(FlagError):
        config_from_args(["--cache-none", "--cache-lru", "3"])


@pytest.mark.parametrize("args", [["--bogus"], ["--port", "x"], ["--port", "70000"], ["--max-upload-size", "0"],
                                  ["--preview-method", "magic"], ["--lowvram", "--highvram"]])
def test_bad_command_lines(args):
    with pytest.raises(FlagError):
        config_from_args(args)


def test_not_applicable_flags_warn_once_each():
    cfg = config_from_args(["--use-sage-attention", "--fast", "--cuda-device", "0"])
    assert len(cfg.warnings) == 3
    assert config_from_args(["--cpu", "--fp32-vae"]).warnings == []


def test_cors_and_paths(tmp_path):
    cfg = config_from_args(["--enable-cors-header", "--base-directory", str(tmp_path),
                            "--extra-model-paths-config", "a.yaml", "b.yaml", "--extra-model-paths-config", "c.yaml"])
    assert cfg.cors_origin == "*" and cfg.base_directory == tmp_path.resolve()
    assert [p.name for p in cfg.extra_model_paths] == ["a.yaml", "b.yaml", "c.yaml"]

