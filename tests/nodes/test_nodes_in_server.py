"""These nodes through a real server: validation of their inputs (v3-style COMBO options included), list
inputs and outputs, and their results in history."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")


def _run(server, prompt):
    status, body = server.post_json("/prompt", {"prompt": prompt})
    assert status == 200, body
    entry = server.wait_history(body["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"]


def test_image_pipeline_and_text_preview(server):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 3, "color": 0xFF8000}},
        "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "lanczos",
                                                        "scale_by": 0.5}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 1, "sigma": 1.0}},
        "4": {"class_type": "RebatchImages", "inputs": {"images": ["3", 0], "batch_size": 2}},
        "5": {"class_type": "GetImageSize", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "7": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "8": {"class_type": "MaskPreview", "inputs": {"mask": ["7", 0]}},
        "9": {"class_type": "StringConcatenate", "inputs": {"string_a": "a", "string_b": "b", "delimiter": "-"}},
        "10": {"class_type": "CaseConverter", "inputs": {"string": ["9", 0], "mode": "UPPERCASE"}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["10", 0]}},
    }
    outputs = _run(server, prompt)
    # the rebatched list [2 images, 1 image] maps GetImageSize and PreviewAny over both entries
    assert outputs["6"]["text"] == ["16", "16"]
    assert outputs["11"]["text"] == ["A-B"]
    assert len(outputs["8"]["images"]) == 3 and outputs["8"]["images"][0]["type"] == "temp"


def test_bad_combo_value_is_a_validation_error(server):
    prompt = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
        "2": {"class_type": "CaseConverter", "inputs": {"string": ["1", 0], "mode": "SHOUT"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    status, body = server.post_json("/prompt", {"prompt": prompt})
    assert status == 400
    errors = body["node_errors"]["2"]["errors"]
    assert errors[0]["type"] == "value_not_in_list" and errors[0]["extra_info"]["input_name"] == "mode"
