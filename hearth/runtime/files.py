"""Reading weight files safely.

``.safetensors`` files are validated by safetensors and read lazily with positioned reads, one tensor at a
time and straight into the precision it is computed in (``TensorRef``, ``read_tensors``), so loading a
checkpoint never holds two copies of it. Pickle-based files (``.ckpt .pt .pth .bin``) are read only through
``torch.load(weights_only=True)``: a file that needs arbitrary unpickling (a class, a function, a
``__reduce__`` payload) is refused with ``UnsafeFileError`` naming the file, and nothing in it runs.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


class WeightFileError(ValueError):
    """A weight file that cannot be read (missing, corrupt, or of an unknown kind)."""


class UnsafeFileError(WeightFileError):
    """A pickle file that would need arbitrary code to load; it was not loaded."""


# safetensors dtype names -> torch dtype names (read with positioned reads; others go through safetensors)
_PREAD_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                 "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


class LazyStateDict(Mapping):
    """A read-only ``{name: tensor}`` view of a safetensors file; tensors are read on access.

    safetensors validates the file and gives names and shapes; each tensor is then read with positioned
    reads into memory of its own. Reading through safetensors' memory map would leave every page touched
    resident in the process while the map lives: loading a 2 GB fp16 checkpoint for fp32 compute would
    hold the file's 2 GB on top of the 4 GB of converted weights.
    """

    def __init__(self, path: str | os.PathLike, handle: Any | None = None, keys: list[str] | None = None,
                 prefix: str = "", index: dict | None = None) -> None:
        from safetensors import safe_open

        self.path = str(path)
        self._handle = handle if handle is not None else safe_open(self.path, framework="pt", device="cpu")
        self._prefix = prefix
        all_keys = keys if keys is not None else list(self._handle.keys())
        self._keys = [k[len(prefix):] for k in all_keys if k.startswith(prefix)]
        self._key_set = set(self._keys)
        self._index = index if index is not None else _safetensors_index(self.path)

    def __getitem__(self, key: str):
        ref = self.ref(key)
        return ref.read() if isinstance(ref, TensorRef) else ref

    def ref(self, key: str):
        """A ``TensorRef`` for ``key`` (read later, converting as it reads), or the tensor when it cannot wait."""
        if key not in self._key_set:
            raise KeyError(key)
        name = self._prefix + key
        entry = self._index.get(name)
        if entry is None:
            return self._handle.get_tensor(name)
        return TensorRef(self.path, *entry)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(self._prefix + key).get_shape())

    def metadata(self) -> dict[str, str]:
        return dict(self._handle.metadata() or {})


def _safetensors_index(path: str) -> dict[str, tuple]:
    """{name: (torch dtype name, shape, absolute offset, byte count)} from the header safetensors validated."""
    import json
    import struct

    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    index = {}
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict) or info.get("dtype") not in _PREAD_DTYPES:
            continue
        begin, end = info["data_offsets"]
        index[name] = (_PREAD_DTYPES[info["dtype"]], tuple(info["shape"]), 8 + length + begin, end - begin)
    return index


_CHUNK_BYTES = 16 << 20  # converting reads go through a scratch buffer of this size, reused


class TensorRef:
    """A tensor of a safetensors file, not read yet: its shape, and a read that converts as it goes.

    Reading a float16 tensor for float32 compute straight into the float32 result, through a small
    reused buffer, skips a full-size float16 copy: on a 2 GB checkpoint that copy's fresh pages cost
    about as much time as the conversion itself, and it raised peak memory.
    """

    __slots__ = ("path", "dtype_name", "shape", "offset", "nbytes")

    def __init__(self, path: str, dtype_name: str, shape: tuple, offset: int, nbytes: int) -> None:
        self.path, self.dtype_name, self.shape, self.offset, self.nbytes = path, dtype_name, shape, offset, nbytes

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self, dtype=None, scratch=None):
        """The tensor, as ``dtype`` (default: as stored). ``scratch`` is a uint8 tensor to convert through."""
        import torch

        stored = getattr(torch, self.dtype_name)
        dtype = dtype or stored
        out = torch.empty(self.shape, dtype=dtype)
        if self.nbytes == 0:
            return out
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if dtype == stored:
                _pread_exact(fd, memoryview(out.reshape(-1).view(torch.uint8).numpy()), self.offset, self.path)
                return out
            if scratch is None or scratch.numel() < min(self.nbytes, _CHUNK_BYTES):
                scratch = torch.empty(min(self.nbytes, _CHUNK_BYTES), dtype=torch.uint8)
            flat, size = out.reshape(-1), stored.itemsize
            view = memoryview(scratch.numpy())
            for start in range(0, self.nbytes, _CHUNK_BYTES):
                n = min(_CHUNK_BYTES, self.nbytes - start)
                _pread_exact(fd, view[:n], self.offset + start, self.path)
                flat[start // size:(start + n) // size].copy_(scratch[:n].view(stored))
            return out
        finally:
            os.close(fd)


def _pread_exact(fd: int, view: memoryview, offset: int, path: str) -> None:
    done, total = 0, len(view)
    while done < total:
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise WeightFileError(f"{os.path.basename(path)} ends inside a tensor")
        done += n


def deferred(sd: Mapping, key: str):
    """``sd[key]``, left unread (a ``TensorRef``) when ``sd`` is a lazy file view."""
    return sd.ref(key) if isinstance(sd, LazyStateDict) else sd[key]


def read_tensors(values: Mapping[str, Any], dtype, via=None, workers: int | None = None) -> dict[str, Any]:
    """``{name: tensor as dtype}`` for values that are tensors or ``TensorRef``s, read by a few threads.

    ``via`` rounds through a coarser precision first (e.g. float16 weights computed in float32).
    Reads and conversions release the GIL, so threads overlap file reads with the page faults of the
    fresh result memory, which dominate loading on small machines.
    """
    import torch

    workers = workers or min(2, os.cpu_count() or 1)
    lanes: list[list[str]] = [[] for _ in range(workers)]
    load = [0] * workers
    for name in sorted(values, key=lambda k: -_nbytes(values[k])):
        i = load.index(min(load))
        lanes[i].append(name)
        load[i] += _nbytes(values[name])

    def convert(value, scratch):
        if isinstance(value, TensorRef):
            # rounding through the precision a tensor is already stored in changes nothing: skip the copy
            stored_as_via = via is not None and getattr(torch, value.dtype_name) == via
            value = value.read(dtype if via is None or stored_as_via else via, scratch)
        elif via is not None:
            value = value.to(via)
        return value.to(dtype)

    def run(names: list[str]) -> dict[str, Any]:
        # one scratch buffer per lane; lanes are sorted biggest first, so names[0] sizes it
        scratch = torch.empty(min(_nbytes(values[names[0]]), _CHUNK_BYTES), dtype=torch.uint8)
        return {n: convert(values[n], scratch) for n in names}

    lanes = [lane for lane in lanes if lane]
    if len(lanes) <= 1:
        return run(lanes[0]) if lanes else {}
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, Any] = {}
    with ThreadPoolExecutor(len(lanes), thread_name_prefix="hearth-read") as pool:
        for part in pool.map(run, lanes):
            out.update(part)
    return out


def _nbytes(value) -> int:
    if isinstance(value, TensorRef):
        return value.nbytes
    return value.numel() * value.element_size()


def tensor_shape(sd: Mapping, key: str) -> tuple[int, ...]:
    """The shape of ``sd[key]`` without reading the tensor when the mapping is lazy."""
    if isinstance(sd, LazyStateDict):
        return sd.shape(key)
    return tuple(sd[key].shape)


def load_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """Open a weight file as a mapping of tensor names to tensors (lazy for safetensors)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {name}")
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            return LazyStateDict(path)
        except Exception as exc:  # safetensors raises its own error types
            raise WeightFileError(f"{name} is not a valid safetensors file: {exc}") from exc
    return _load_pickle(path)


def _load_pickle(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    name = path.name
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"refusing to load {name}: it is a pickle that needs arbitrary code to unpickle, which could run "
            f"anything on this machine. Convert it to .safetensors with a tool you trust. ({_first_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise WeightFileError(f"cannot read {name}: {_first_line(exc)}") from None
    if isinstance(data, dict):
        for nested in ("state_dict", "module"):
            inner = data.get(nested)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                data = inner
                break
        return {k: v for k, v in data.items() if isinstance(k, str)}
    raise WeightFileError(f"{name} does not contain a dictionary of tensors")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_any(path: str | os.PathLike) -> Any:
    """Like ``load_state_dict`` but returns whatever a weights-only pickle holds (lists for some embeddings)."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return load_state_dict(path)
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(f"refusing to load {path.name}: it needs arbitrary unpickling "
                              f"({_first_line(exc)})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise WeightFileError(f"cannot read {path.name}: {_first_line(exc)}") from None


def materialize(sd: Mapping[str, Any], keys: list[str] | None = None, rename=None) -> dict[str, Any]:
    """Read tensors out of a (possibly lazy) mapping into a plain dict, optionally renaming keys."""
    out: dict[str, Any] = {}
    for k in (keys if keys is not None else list(sd.keys())):
        out[rename(k) if rename else k] = sd[k]
    return out
