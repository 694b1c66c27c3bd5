"""The seed workflows as one call each (the CLI has the same as commands).

    from nodus import workflows
    r = workflows.insert_nodule("models/nodule-demo", image="cxr.dcm", center=(480, 400), diameter=24,
                                adapters={"calcified": 0.7}, seed=0, steps=50, output_dir="out/")
    r = workflows.follow_up(unet, vae, baseline="slice.dcm", context="emb.npy", samples=20, seed=0,
                            output_dir="out/")

They need the ``nodus[medical]`` extra for DICOM and PNG files.
"""

from .follow_up import follow_up
from .nodule_insertion import insert_nodule
from .nodule_model import NoduleModel

__all__ = ["NoduleModel", "follow_up", "insert_nodule"]
