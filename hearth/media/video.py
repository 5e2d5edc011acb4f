"""VIDEO values: a video file or a video built from frames, read and written with PyAV.

A VIDEO is either ``VideoFromFile`` (a path or an in-memory file, decoded when asked) or
``VideoFromComponents`` (IMAGE frames [N, H, W, C] in 0..1, an optional AUDIO ``{"waveform": [B, C, T],
"sample_rate": int}`` and a frame rate). Both offer what ComfyUI's VIDEO values offer to nodes:
``get_components()``, ``get_dimensions()``, ``get_duration()`` and ``save_to(path, format, codec, metadata)``.

Neither torch nor av is imported until a method needs them.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

CONTAINERS = ["auto", "mp4"]  # SaveVideo's "format" choices (ComfyUI's VideoContainer)
CODECS = ["auto", "h264"]  # SaveVideo's "codec" choices (ComfyUI's VideoCodec)


class VideoError(ValueError):
    """A file that is not a readable video, or a video that cannot be written as asked."""


def _value(choice) -> str:
    """'mp4' from 'mp4' or from an enum member whose value is 'mp4'."""
    return str(getattr(choice, "value", choice)).lower()


def container_extension(fmt) -> str:
    fmt = _value(fmt)
    if fmt in ("auto", "mp4"):
        return "mp4"
    raise VideoError(f"unknown video format {fmt!r}; choose one of {CONTAINERS}")


@dataclass
class VideoComponents:
    images: Any  # IMAGE [N, H, W, C]
    frame_rate: Fraction
    audio: dict | None = None  # AUDIO
    metadata: dict | None = None


def _source_name(source) -> str:
    return os.path.basename(str(source)) if isinstance(source, (str, os.PathLike)) else "<in-memory video>"


def _rgb_frames(images):
    """IMAGE [N, H, W, C] -> uint8 numpy [N, H, W, 3] (values truncated, as ComfyUI does)."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        shape = list(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise VideoError(f"video frames must be an IMAGE batch [frames, height, width, channels], got {shape}")
    if images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    elif images.shape[-1] not in (3, 4):
        raise VideoError(f"video frames need 1, 3 or 4 channels, not {images.shape[-1]}")
    return torch.clamp(images[..., :3] * 255, min=0, max=255).to(device="cpu", dtype=torch.uint8).numpy()


def _audio_samples(frame):
    """One decoded audio frame -> float32 numpy [channels, samples] in -1..1."""
    import numpy as np

    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # interleaved: [1, samples * channels]
        data = data.reshape(-1, channels).T
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        data = data.astype(np.float32) / 2147483648.0
    elif data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128.0) / 128.0
    return data.astype(np.float32, copy=False)


class Video:
    """What every VIDEO value offers."""

    def get_components(self) -> VideoComponents:
        raise NotImplementedError

    def save_to(self, path, format="auto", codec="auto", metadata: dict | None = None) -> None:
        raise NotImplementedError

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height)."""
        images = self.get_components().images
        return int(images.shape[2]), int(images.shape[1])

    def get_duration(self) -> float:
        components = self.get_components()
        return float(components.images.shape[0] / components.frame_rate)

    def get_stream_source(self):
        """A file path or a BytesIO with the video encoded (what upload helpers read)."""
        buffer = io.BytesIO()
        self.save_to(buffer)
        buffer.seek(0)
        return buffer


class VideoFromFile(Video):
    def __init__(self, file) -> None:
        self._file = os.fspath(file) if isinstance(file, os.PathLike) else file

    def __repr__(self) -> str:
        return f"<VideoFromFile {_source_name(self._file)}>"

    def get_stream_source(self):
        if isinstance(self._file, io.BytesIO):
            self._file.seek(0)
        return self._file

    def _open(self):
        import av

        if isinstance(self._file, io.BytesIO):
            self._file.seek(0)
        try:
            return av.open(self._file, mode="r")
        except av.FFmpegError as exc:
            raise VideoError(f"{_source_name(self._file)} is not a video file that can be read "
                             f"({exc.strerror or exc})") from None

    def get_dimensions(self) -> tuple[int, int]:
        with self._open() as container:
            for stream in container.streams.video:
                return int(stream.width), int(stream.height)
        raise VideoError(f"no video stream found in {_source_name(self._file)}")

    def get_duration(self) -> float:
        import av

        with self._open() as container:
            if container.duration is not None:
                return float(container.duration / av.time_base)
            stream = next(iter(container.streams.video), None)
            if stream is not None and stream.average_rate:
                if stream.frames:
                    return float(stream.frames / stream.average_rate)
                count = sum(1 for _ in container.decode(stream))
                if count:
                    return float(count / stream.average_rate)
        raise VideoError(f"could not determine the duration of {_source_name(self._file)}")

    def get_container_format(self) -> str:
        with self._open() as container:
            return container.format.name

    def _components(self, container) -> VideoComponents:
        import av
        import numpy as np
        import torch

        video = next(iter(container.streams.video), None)
        if video is None:
            raise VideoError(f"no video stream found in {_source_name(self._file)}")
        audio_streams = list(container.streams.audio)
        audio_stream = audio_streams[-1] if audio_streams else None  # the last one, as ComfyUI keeps
        frames, samples = [], []
        try:
            for packet in container.demux(*([video] + ([audio_stream] if audio_stream is not None else []))):
                for frame in packet.decode():
                    if packet.stream is video:
                        frames.append(frame.to_ndarray(format="rgb24"))
                    else:
                        samples.append(_audio_samples(frame))
        except av.FFmpegError as exc:
            raise VideoError(f"{_source_name(self._file)} could not be decoded ({exc.strerror or exc})") from None
        if frames:
            images = torch.from_numpy(np.stack(frames)).to(torch.float32) / 255.0
        else:
            images = torch.zeros((0, int(video.height or 0), int(video.width or 0), 3))
        rate = Fraction(video.average_rate) if video.average_rate else Fraction(1)
        audio = None
        if samples:
            waveform = torch.from_numpy(np.concatenate(samples, axis=1)).unsqueeze(0)
            audio = {"waveform": waveform, "sample_rate": int(audio_stream.sample_rate or 1)}
        return VideoComponents(images=images, frame_rate=rate, audio=audio, metadata=dict(container.metadata))

    def get_components(self) -> VideoComponents:
        with self._open() as container:
            return self._components(container)

    def save_to(self, path, format="auto", codec="auto", metadata: dict | None = None) -> None:
        import av
        from av.subtitles.stream import SubtitleStream

        fmt, codec = _value(format), _value(codec)
        with self._open() as container:
            container_format = container.format.name
            video_codec = container.streams.video[0].codec.name if container.streams.video else None
            remux = (fmt == "auto" or fmt in container_format.split(",")) and (
                codec == "auto" or video_codec is None or codec == video_codec)
            if not remux:
                VideoFromComponents(self._components(container)).save_to(path, fmt, codec, metadata)
                return
            kwargs: dict[str, Any] = {"mode": "w", "options": {"movflags": "use_metadata_tags"}}
            if isinstance(path, io.BytesIO):  # no file name to guess the container from
                kwargs["format"] = (container_format if fmt == "auto" else fmt).split(",")[0]
            with av.open(path, **kwargs) as output:
                for key, value in container.metadata.items():
                    if metadata is None or key not in metadata:
                        output.metadata[key] = value
                for key, value in (metadata or {}).items():
                    output.metadata[key] = value if isinstance(value, str) else json.dumps(value)
                mapping = {}
                for stream in container.streams:
                    if isinstance(stream, (av.VideoStream, av.AudioStream, SubtitleStream)):
                        mapping[stream] = output.add_stream_from_template(template=stream, opaque=True)
                for packet in container.demux():
                    if packet.stream in mapping and packet.dts is not None:
                        packet.stream = mapping[packet.stream]
                        output.mux(packet)


class VideoFromComponents(Video):
    def __init__(self, components: VideoComponents) -> None:
        self._components = components

    def __repr__(self) -> str:
        images = self._components.images
        return f"<VideoFromComponents {getattr(images, 'shape', '?')} @ {float(self._components.frame_rate):g} fps>"

    def get_components(self) -> VideoComponents:
        c = self._components
        return VideoComponents(images=c.images, frame_rate=c.frame_rate, audio=c.audio)

    def save_to(self, path, format="auto", codec="auto", metadata: dict | None = None) -> None:
        """MP4 with H.264 video (yuv420p) and, when there is audio, AAC audio cut to the video's length."""
        import av
        import torch

        fmt, codec = _value(format), _value(codec)
        if fmt not in ("auto", "mp4"):
            raise VideoError("Only MP4 format is supported for now")
        if codec not in ("auto", "h264"):
            raise VideoError("Only H264 codec is supported for now")
        frames = _rgb_frames(self._components.images)
        count, height, width = frames.shape[:3]
        if width % 2 or height % 2:
            raise VideoError(f"H.264 (yuv420p) needs an even width and height; these frames are {width}x{height}")
        rate = Fraction(round(Fraction(self._components.frame_rate) * 1000), 1000)
        if rate <= 0:
            raise VideoError(f"the frame rate must be positive, not {float(self._components.frame_rate)}")
        audio = self._components.audio
        kwargs: dict[str, Any] = {"mode": "w", "options": {"movflags": "use_metadata_tags"}}
        if isinstance(path, io.BytesIO):
            kwargs["format"] = "mp4"
        with av.open(path, **kwargs) as output:
            for key, value in (metadata or {}).items():
                output.metadata[key] = json.dumps(value)
            stream = output.add_stream("h264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            audio_stream = None
            if audio:
                sample_rate = int(audio["sample_rate"])
                audio_stream = output.add_stream("aac", rate=sample_rate)
            for array in frames:
                frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p")
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))
            if audio_stream is not None:
                waveform = audio["waveform"]
                if waveform.ndim == 3:
                    waveform = waveform[0]  # the first clip of an AUDIO batch
                if waveform.ndim != 2 or waveform.shape[0] < 1:
                    raise VideoError(f"AUDIO waveform must be [batch, channels, samples], got "
                                     f"{list(audio['waveform'].shape)}")
                waveform = waveform[:2]  # mono or stereo
                waveform = waveform[:, :math.ceil(sample_rate / rate * count)]
                interleaved = waveform.movedim(1, 0).reshape(1, -1).to(device="cpu", dtype=torch.float32)
                sound = av.AudioFrame.from_ndarray(interleaved.numpy(), format="flt",
                                                   layout="mono" if waveform.shape[0] == 1 else "stereo")
                sound.sample_rate = sample_rate
                sound.pts = 0
                output.mux(audio_stream.encode(sound))
                output.mux(audio_stream.encode(None))


def save_webm(path: str, images, codec: str, fps: float, crf: float, metadata: dict[str, str] | None = None) -> None:
    """WEBM with VP9 (yuv420p) or AV1 (SVT-AV1, 10-bit yuv420p) at constant quality ``crf``."""
    import av

    encoders = {"vp9": "libvpx-vp9", "av1": "libsvtav1"}
    if codec not in encoders:
        raise VideoError(f"unknown WEBM codec {codec!r}; choose vp9 or av1")
    frames = _rgb_frames(images)
    height, width = frames.shape[1:3]
    if codec == "av1" and (width % 2 or height % 2):
        raise VideoError(f"AV1 (yuv420p10le) needs an even width and height; these frames are {width}x{height}")
    with av.open(path, mode="w") as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(encoders[codec], rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p10le" if codec == "av1" else "yuv420p"
        stream.bit_rate = 0
        stream.options = {"crf": str(crf)}
        if codec == "av1":
            stream.options["preset"] = "6"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        container.mux(stream.encode())
