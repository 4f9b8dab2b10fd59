# %% [markdown]
# # unetkit from Python
#
# Train, load, predict and evaluate without the command line. This example makes its own data
# (generated cell-like blobs) and trains a few steps of a tiny network, so it runs in seconds on a
# CPU; for a real model give a dataset folder and a time budget (`time="10m"`) and leave the rest
# to the plan.

# %%
from pathlib import Path

import numpy as np

import unetkit
from unetkit.data.synthetic import generate_dataset

work = Path("unetkit-example")
data = generate_dataset(work / "data", n_images=8, size=40, seed=0)  # images/, masks/, instances/
held_out = generate_dataset(work / "held-out", n_images=4, size=40, seed=1)

# %% [markdown]
# ## Plan
# What `train` would choose for this data on this machine, every choice with its reason. Settings
# you give (a flag's name as a keyword) are kept.

# %%
plan = unetkit.plan(data, steps=4, base_width=4, workers=0)
for choice in plan.choices[:5]:
    print(f"{choice.path} = {choice.value}: {choice.reason}")

# %% [markdown]
# ## Train
# `train` returns the run: its folder, its best checkpoint and the last validation's figures.
# `use_plan=False` trains with the defaults and the settings given, skipping the speed
# measurements (leave it out for a planned run): here 60 steps of a narrow network, one validation.

# %%
run = unetkit.train(data, work / "run", use_plan=False, steps=60, val_every=60, lr=0.03, base_width=4, depth=2,
                    workers=0, samples=0)
print(run.folder, run.best_checkpoint, f"val Dice {run.metrics['val_dice']:.3f}")

# %% [markdown]
# ## Predict
# `load` takes a run, a checkpoint or a run of folds (their ensemble). Calling the model on an
# image (an array or a file) gives the mask, the probabilities and, when first read, the objects.

# %%
model = unetkit.load(run, device="cpu")
result = model(held_out / "images" / "blobs_0000.png")
print(result.mask.shape, result.mask.dtype, result.probabilities.shape)
print("objects:", len(np.unique(result.instances)) - 1)

# %% [markdown]
# ## Evaluate
# Per-class Dice, IoU and pixel accuracy on a dataset with masks, image by image and pooled.

# %%
report = unetkit.evaluate(model, held_out)
print(f"held-out Dice {report['dice']:.3f} over {len(report['images'])} images")
