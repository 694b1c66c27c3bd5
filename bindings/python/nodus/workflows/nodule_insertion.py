"""``insert_nodule``: the seed's nodule-insertion workflow on one radiograph."""

import os

import numpy as np

from .. import medical
from .._lib import VERSION
from .intensity import IntensityMapping
from .nodule_model import NoduleModel
from .output_files import OutputFiles
from .patch_placement import PatchPlacement
from .provenance import file_sha256, write_json


def insert_nodule(model, image, center, diameter=None, mask=None, adapters=None, subtlety=None, seed=0, steps=50,
                  output_dir=".", name=None, scheduler=None, guidance_scale=None, threads=None):
    """Inserts a synthetic nodule into a radiograph and writes the result beside its
    mask and a JSON sidecar.

    Args:
        model: a nodule model folder (see ``NoduleModel``) or a loaded ``NoduleModel``
            (a batch worker loads it once).
        image: a grayscale DICOM or PNG radiograph.
        center: (x, y) = (column, row) of the nodule, in pixels of `image`.
        diameter: the nodule's diameter in pixels of `image` (a disk mask); or
        mask: a DICOM or PNG file of `image`'s size, nonzero where the nodule goes.
        adapters: LoRA weights by characteristic, {"calcified": 0.7}.
        subtlety: the slider level s: the subtlety adapter at weight 2^(2 + s).
        seed: the seed of the initial noise (``nodus.randn``).
        steps: sampler steps.
        output_dir: where the files go (created if missing).
        name: the output files' stem (default: the input's stem + "-nodule").
        scheduler: None (the folder's), a scheduler class name on the folder's
            training betas ("DPMSolverMultistepScheduler": DPM-Solver++ 2M), or a config dict.
        guidance_scale: CFG scale (default: the folder's workflow.json, else 4.0).
        threads: worker threads when `model` is a folder.

    The radiograph is mapped linearly to the model's [-1, 1] pixels (its first
    window, else its storage's range; MONOCHROME1 flipped), the patch around the
    centre is resampled from the image as resized to the model's standard size,
    painted, and resampled back with a feathered seam. The output has the input's
    size, bit depth and format: a DICOM in gives a derived DICOM out (and the mask
    as a DICOM SEG referencing it), a PNG a PNG (and a PNG mask, 0 / 255). Pixels
    outside the patch keep their stored values exactly.

    Returns:
        {"image": path, "mask": path, "sidecar": path}.
    Raises:
        ValueError: an unreadable, colour or compressed-undecodable image, a centre
            outside it, a mask of another size or reaching into the seam, an unknown
            adapter. Nothing is written then, nor when writing fails (a full disk).
    """
    if (diameter is None) == (mask is None):
        raise ValueError("give the nodule's diameter or a mask file, one of them")
    steps_value = int(steps)
    if steps_value != steps or steps_value < 1:
        raise ValueError(f"steps must be a positive integer, not {steps!r}")
    nodule_model = model if isinstance(model, NoduleModel) else NoduleModel(model, threads=threads,
                                                                           scheduler=scheduler)
    if isinstance(model, NoduleModel) and scheduler is not None:
        raise ValueError("a loaded NoduleModel keeps its scheduler: pass scheduler= when loading it")
    image_path = os.fspath(image)
    radiograph = medical.read_image(image_path)
    is_dicom = not image_path.lower().endswith(".png")
    height, width = radiograph.values.shape
    placement = PatchPlacement(height, width, nodule_model.standard_size, nodule_model.patch_size,
                               (float(center[0]), float(center[1])))
    if diameter is not None:
        if not float(diameter) > 0:
            raise ValueError(f"the diameter must be positive, got {diameter!r}")
        full_mask = placement.disk_mask_full(float(diameter))
        patch_mask = placement.disk_mask(float(diameter))
    else:
        mask_image = medical.read_image(os.fspath(mask))
        if mask_image.values.shape != (height, width):
            raise ValueError(f"the mask '{os.fspath(mask)}' is {mask_image.values.shape[1]}x{mask_image.values.shape[0]}, "
                             f"the image '{image_path}' is {width}x{height}; they must be the same size")
        full_mask = (mask_image.values > 0).astype(np.uint8)
        patch_mask = (placement.cut(full_mask) >= 0.5).astype(np.float32)
    if not full_mask.any() or not patch_mask.any():
        raise ValueError("the nodule mask is empty")
    if (full_mask.astype(bool) & ~placement.region(core=True)).any():
        raise ValueError(f"the nodule mask reaches beyond the model's {nodule_model.patch_size}-pixel patch around "
                         f"({center[0]}, {center[1]}) (at the standard size {nodule_model.standard_size}, inside its "
                         "feathered seam): use a smaller nodule or a mask around the centre")
    weights = nodule_model.adapter_weights(adapters, subtlety)

    mapping = IntensityMapping.of(radiograph)
    patch = np.clip(placement.cut(mapping.to_pixels(radiograph.values.astype(np.float64))), -1, 1)
    painted = nodule_model.paint(patch, patch_mask, weights, seed=int(seed), steps=steps_value,
                                 guidance_scale=guidance_scale)
    values = placement.paste(radiograph.values, mapping.to_values(np.clip(painted.astype(np.float64), -1, 1)))

    stem = name or os.path.splitext(os.path.basename(image_path))[0] + "-nodule"
    os.makedirs(output_dir, exist_ok=True)
    extension = ".dcm" if is_dicom else ".png"
    paths = {"image": os.path.join(output_dir, stem + extension),
             "mask": os.path.join(output_dir, stem + "-mask" + extension),
             "sidecar": os.path.join(output_dir, stem + ".json")}
    digests = nodule_model.digests()
    provenance = {
        "workflow": "insert_nodule",
        "nodus_version": VERSION,
        "model": {"path": nodule_model.folder, "dit_sha256": digests["dit"], "vae_sha256": digests["vae"],
                  "standard_size": nodule_model.standard_size, "patch_size": nodule_model.patch_size,
                  "class_label": nodule_model.class_label},
        "adapters": {adapter: {"weight": weight, "sha256": digests["adapters"][adapter]}
                     for adapter, weight in weights.items()},
        "subtlety": subtlety,
        "seed": int(seed),
        "steps": steps_value,
        "scheduler": nodule_model.scheduler.class_name,
        "scheduler_config": nodule_model.scheduler_config,
        "guidance_scale": nodule_model.guidance_scale if guidance_scale is None else float(guidance_scale),
        "input": {"path": image_path, "sha256": file_sha256(image_path), "width": width, "height": height},
        "center": [float(center[0]), float(center[1])],
        "diameter": None if diameter is None else float(diameter),
        "mask_input": None if mask is None else {"path": os.fspath(mask), "sha256": file_sha256(mask)},
        "patch_origin": list(placement.origin),
        "intensity": {"lower": mapping.lower, "upper": mapping.upper, "inverted": mapping.inverted},
        "outputs": {key: os.path.basename(path) for key, path in paths.items()},
    }
    description = (f"Nodus {VERSION} insert_nodule: a synthetic nodule at ({center[0]:g}, {center[1]:g}), seed "
                   f"{int(seed)}, {steps_value} {nodule_model.scheduler.class_name} steps, adapters "
                   f"{weights or 'none'}, model DiT sha256 {digests['dit'][:16]}")
    with OutputFiles() as outputs:
        if is_dicom:
            medical.write_derived_dicom(values, image_path, outputs.add(paths["image"]), description[:1024])
            medical.write_segmentation(full_mask, paths["image"], outputs.add(paths["mask"]))
        else:
            stored = radiograph.storage.stored(values)
            bits = radiograph.storage.bits_allocated
            medical.write_png(outputs.add(paths["image"]), samples=stored, bits=bits)
            medical.write_png(outputs.add(paths["mask"]), samples=full_mask * 255, bits=8)
        write_json(outputs.add(paths["sidecar"]), provenance)
    return paths
