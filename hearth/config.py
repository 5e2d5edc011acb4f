"""Command-line flags (ComfyUI's main.py flags, so launch scripts keep working) and the Config they build.

One Config is built per process and passed explicitly; nothing reads flags from globals.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

DEFAULT_PORT = 8188
MIB = 1024 * 1024


class FlagError(Exception):
    """An invalid command line; the message says which flag."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits by default; we want a clean, testable error
        raise FlagError(message)


def build_parser(prog: str = "hearth") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Hearth: a ComfyUI-compatible server.", allow_abbrev=False)
    net = p.add_argument_group("network")
    net.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1", metavar="IP[,IP]",
                     help="address(es) to listen on; bare flag = all interfaces")
    net.add_argument("--port", type=int, default=DEFAULT_PORT)
    net.add_argument("--tls-keyfile")
    net.add_argument("--tls-certfile")
    net.add_argument("--enable-cors-header", nargs="?", const="*", default=None, metavar="ORIGIN")
    net.add_argument("--max-upload-size", type=float, default=100, metavar="MB")
    net.add_argument("--enable-compress-response-body", action="store_true")
    net.add_argument("--dont-print-server", action="store_true")
    net.add_argument("--comfy-api-base", default="https://api.comfy.org")
    net.add_argument("--api-token", default=None,
                     help="token required when listening beyond loopback (generated if not given)")

    d = p.add_argument_group("directories")
    d.add_argument("--base-directory")
    d.add_argument("--extra-model-paths-config", action="append", nargs="+", default=[], metavar="PATH")
    d.add_argument("--output-directory")
    d.add_argument("--temp-directory")
    d.add_argument("--input-directory")
    d.add_argument("--user-directory")
    d.add_argument("--database-url", default=None)
    d.add_argument("--history-max-items", type=int, default=10000)

    fe = p.add_argument_group("frontend")
    fe.add_argument("--front-end-version", default=None)
    fe.add_argument("--front-end-root", default=None)
    fe.add_argument("--auto-launch", action="store_true")
    fe.add_argument("--disable-auto-launch", action="store_true")
    fe.add_argument("--windows-standalone-build", action="store_true")

    dev = p.add_argument_group("device")
    dev.add_argument("--cuda-device", type=int)
    dev.add_argument("--default-device", type=int)
    cm = dev.add_mutually_exclusive_group()
    cm.add_argument("--cuda-malloc", action="store_true")
    cm.add_argument("--disable-cuda-malloc", action="store_true")
    dev.add_argument("--directml", nargs="?", const=-1, type=int)
    dev.add_argument("--oneapi-device-selector")
    dev.add_argument("--disable-ipex-optimize", action="store_true")

    vram = p.add_argument_group("memory").add_mutually_exclusive_group()
    for flag in ("--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"):
        vram.add_argument(flag, action="store_true")
    mem = p.add_argument_group("memory options")
    mem.add_argument("--reserve-vram", type=float)
    mem.add_argument("--async-offload", action="store_true")
    mem.add_argument("--force-non-blocking", action="store_true")
    mem.add_argument("--disable-smart-memory", action="store_true")
    mem.add_argument("--mmap-torch-files", action="store_true")
    mem.add_argument("--disable-mmap", action="store_true")

    prec = p.add_argument_group("precision")
    g = prec.add_mutually_exclusive_group()
    g.add_argument("--force-fp32", action="store_true")
    g.add_argument("--force-fp16", action="store_true")
    g = prec.add_mutually_exclusive_group()
    for flag in ("--fp32-unet", "--fp64-unet", "--bf16-unet", "--fp16-unet", "--fp8_e4m3fn-unet",
                 "--fp8_e5m2-unet", "--fp8_e8m0fnu-unet"):
        g.add_argument(flag, action="store_true")
    g = prec.add_mutually_exclusive_group()
    for flag in ("--fp16-vae", "--fp32-vae", "--bf16-vae"):
        g.add_argument(flag, action="store_true")
    prec.add_argument("--cpu-vae", action="store_true")
    g = prec.add_mutually_exclusive_group()
    for flag in ("--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc", "--fp16-text-enc", "--fp32-text-enc",
                 "--bf16-text-enc"):
        g.add_argument(flag, action="store_true")
    prec.add_argument("--supports-fp8-compute", action="store_true")
    prec.add_argument("--force-channels-last", action="store_true")

    att = p.add_argument_group("attention")
    g = att.add_mutually_exclusive_group()
    for flag in ("--use-split-cross-attention", "--use-quad-cross-attention", "--use-pytorch-cross-attention",
                 "--use-sage-attention", "--use-flash-attention"):
        g.add_argument(flag, action="store_true")
    att.add_argument("--disable-xformers", action="store_true")
    g = att.add_mutually_exclusive_group()
    g.add_argument("--force-upcast-attention", action="store_true")
    g.add_argument("--dont-upcast-attention", action="store_true")

    cache = p.add_argument_group("execution cache").add_mutually_exclusive_group()
    cache.add_argument("--cache-classic", action="store_true")
    cache.add_argument("--cache-lru", type=int, default=0, metavar="N")
    cache.add_argument("--cache-none", action="store_true")
    cache.add_argument("--cache-ram", nargs="?", const=4.0, type=float, default=None, metavar="GB",
                       help="keep results until free RAM drops under GB (default 4)")

    pv = p.add_argument_group("previews")
    pv.add_argument("--preview-method", choices=["none", "auto", "latent2rgb", "taesd"], default="none")
    pv.add_argument("--preview-size", type=int, default=512)

    perf = p.add_argument_group("performance")
    perf.add_argument("--fast", nargs="*", default=None)
    perf.add_argument("--deterministic", action="store_true")
    perf.add_argument("--default-hashing-function", choices=["md5", "sha1", "sha256", "sha512"],
                      default="sha256")

    cn = p.add_argument_group("custom nodes")
    cn.add_argument("--disable-all-custom-nodes", action="store_true")
    cn.add_argument("--whitelist-custom-nodes", nargs="+", default=[])
    cn.add_argument("--disable-api-nodes", action="store_true")

    p.add_argument("--multi-user", action="store_true")
    p.add_argument("--disable-metadata", action="store_true")
    p.add_argument("--verbose", nargs="?", const="DEBUG", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
    p.add_argument("--log-stdout", action="store_true")
    p.add_argument("--quick-test-for-ci", action="store_true")
    return p


# Flags accepted for compatibility whose effect does not exist (yet) on this build: one warning each.
NOT_APPLICABLE = (
    "tls_keyfile", "tls_certfile", "enable_compress_response_body", "cuda_device", "default_device", "cuda_malloc",
    "disable_cuda_malloc", "directml", "oneapi_device_selector", "disable_ipex_optimize", "reserve_vram",
    "async_offload", "force_non_blocking", "disable_smart_memory", "mmap_torch_files", "disable_mmap",
    "fp8_e4m3fn_unet", "fp8_e5m2_unet", "fp8_e8m0fnu_unet", "fp8_e4m3fn_text_enc", "fp8_e5m2_text_enc",
    "supports_fp8_compute", "use_split_cross_attention", "use_quad_cross_attention", "use_sage_attention",
    "use_flash_attention", "disable_xformers", "fast", "front_end_version", "auto_launch",
    "windows_standalone_build", "quick_test_for_ci",
)


@dataclass
class CacheSettings:
    kind: str = "classic"  # classic | lru | none | ram
    lru_size: int = 0
    ram_headroom_gb: float = 4.0


@dataclass
class Config:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = DEFAULT_PORT
    base_directory: Path = field(default_factory=Path.cwd)
    output_directory: Path | None = None
    input_directory: Path | None = None
    temp_directory: Path | None = None
    user_directory: Path | None = None
    extra_model_paths: list[Path] = field(default_factory=list)
    database_url: str | None = None
    history_max_items: int = 10000
    max_upload_size: int = 100 * MIB
    cors_origin: str | None = None
    api_token: str | None = None
    front_end_root: Path | None = None
    cache: CacheSettings = field(default_factory=CacheSettings)
    preview_method: str = "none"
    preview_size: int = 512
    disable_all_custom_nodes: bool = False
    whitelist_custom_nodes: list[str] = field(default_factory=list)
    multi_user: bool = False
    disable_metadata: bool = False
    verbose: str = "INFO"
    dont_print_server: bool = False
    cpu: bool = False
    vram_mode: str | None = None
    precision: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def loopback_only(self) -> bool:
        return all(_is_loopback(h) for h in self.listen)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name: it may resolve anywhere
        return False


def config_from_args(argv: Sequence[str]) -> Config:
    """Parse ComfyUI-compatible flags into a Config. Raises FlagError on a bad command line."""
    parser = build_parser()
    ns = parser.parse_args(list(argv))
    cfg = Config(argv=list(argv))
    cfg.listen = [h.strip() for h in ns.listen.split(",") if h.strip()] or ["127.0.0.1"]
    if not 0 < ns.port < 65536:
        raise FlagError(f"--port must be between 1 and 65535, got {ns.port}")
    cfg.port = ns.port
    base = Path(ns.base_directory).expanduser() if ns.base_directory else Path.cwd()
    cfg.base_directory = base.resolve()
    for name in ("output_directory", "input_directory", "temp_directory", "user_directory"):
        value = getattr(ns, name)
        if value:
            setattr(cfg, name, Path(value).expanduser().resolve())
    cfg.extra_model_paths = [Path(p).expanduser() for group in ns.extra_model_paths_config for p in group]
    cfg.database_url = ns.database_url
    if ns.history_max_items < 1:
        raise FlagError("--history-max-items must be at least 1")
    cfg.history_max_items = ns.history_max_items
    if ns.max_upload_size <= 0:
        raise FlagError("--max-upload-size must be positive")
    cfg.max_upload_size = int(ns.max_upload_size * MIB)
    cfg.cors_origin = ns.enable_cors_header
    cfg.api_token = ns.api_token or os.environ.get("HEARTH_API_TOKEN") or None
    cfg.front_end_root = Path(ns.front_end_root).expanduser().resolve() if ns.front_end_root else None
    if ns.cache_none:
        cfg.cache = CacheSettings("none")
    elif ns.cache_lru:
        if ns.cache_lru < 0:
            raise FlagError("--cache-lru takes a positive number of entries")
        cfg.cache = CacheSettings("lru", lru_size=ns.cache_lru)
    elif ns.cache_ram is not None:
        cfg.cache = CacheSettings("ram", ram_headroom_gb=ns.cache_ram)
    cfg.preview_method = ns.preview_method
    cfg.preview_size = ns.preview_size
    cfg.disable_all_custom_nodes = ns.disable_all_custom_nodes
    cfg.whitelist_custom_nodes = list(ns.whitelist_custom_nodes)
    cfg.multi_user = ns.multi_user
    cfg.disable_metadata = ns.disable_metadata
    cfg.verbose = ns.verbose
    cfg.dont_print_server = ns.dont_print_server
    cfg.cpu = ns.cpu
    for mode in ("gpu_only", "highvram", "normalvram", "lowvram", "novram"):
        if getattr(ns, mode):
            cfg.vram_mode = mode
    for flag in ("force_fp32", "force_fp16", "fp32_unet", "fp64_unet", "bf16_unet", "fp16_unet", "fp16_vae",
                 "fp32_vae", "bf16_vae", "cpu_vae", "fp16_text_enc", "fp32_text_enc", "bf16_text_enc",
                 "force_channels_last", "force_upcast_attention", "dont_upcast_attention",
                 "use_pytorch_cross_attention", "deterministic"):
        if getattr(ns, flag):
            cfg.precision[flag] = "on"
    for name in NOT_APPLICABLE:
        if getattr(ns, name) != parser.get_default(name):
            cfg.warnings.append(f"--{name.replace('_', '-')} is accepted for compatibility but has no effect here")
    return cfg
