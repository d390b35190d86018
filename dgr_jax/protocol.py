"""Protocol constants, each named once with its source.

Nothing else in the repository writes these numbers: evaluators, data builders, losses, the
experiment configs (`configs/`, which import the library, never the reverse) and tests import
them from here. Sources are the PyTorch hosts we are compared with (commits in
`shared/notes/peers.md`): BTS (cleinc/bts), NeWCRFs (aliyun/NeWCRFs), PixelFormer
(ashutosh1807/PixelFormer), and the spec `shared/paper/method.md` section 5.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Depth ranges.
# --------------------------------------------------------------------------------------------
# Evaluation: valid ground truth is MIN_DEPTH_EVAL < gt < max (strict), predictions clamped to
# [MIN_DEPTH_EVAL, max]. NeWCRFs newcrfs/eval.py L43-46, L89-94.
MIN_DEPTH_EVAL = 1e-3
NYU_MAX_DEPTH = 10.0  # NeWCRFs configs/arguments_*_nyu.txt (max_depth, max_depth_eval)
KITTI_MAX_DEPTH = 80.0  # NeWCRFs configs/arguments_*_kittieigen.txt

# Training loss masks: SILog is computed on gt > these values (NeWCRFs newcrfs/train.py L298-303).
NYU_MIN_DEPTH_LOSS = 0.1
KITTI_MIN_DEPTH_LOSS = 1.0

# SILog training loss variance focus (BTS/NeWCRFs `variance_focus`) and the x10 scale of the
# training loss, 10 * sqrt(mean d^2 - 0.85 mean(d)^2) (BTS bts.py silog_loss, NeWCRFs utils.py).
SILOG_VARIANCE_FOCUS = 0.85
SILOG_SCALE = 10.0

# Weight of the OT depth loss beside SILog (lambda_ot, `loss.terms.otdl`), ours, for every
# config that trains with OTDL. OTDL is a squared transport distance in units of the OT grid's
# longer side (dgr_jax/losses/ot.py), so its size does not depend on the input resolution, the
# grid or the depth unit (the masses are normalised), and one weight means the same on the
# synthetic data, NYU and KITTI. 500 was chosen by the share of the gradient it contributes:
# the norm of OTDL's gradient with respect to the predicted depth is 1.6e-4 to 1.2e-3 times
# SILog's on indoor depth maps with errors from SILog 0.3 to 2.4, so at 500 OTDL gives 8% to
# 58% of SILog's gradient (more for worse predictions): a real term that does not take over.
# Measured in dgr_jax/losses/ot.py's docstring, re-measured by benchmarks/otdl.py. The authors'
# weight 1.0 multiplied a cost in pixel units (x L^2, L the side in pixels); in these units it
# would leave OTDL at ~0.1% of the gradient, i.e. no effect.
OTDL_WEIGHT = 500.0

# --------------------------------------------------------------------------------------------
# Image geometry.
# --------------------------------------------------------------------------------------------
NYU_HEIGHT, NYU_WIDTH = 480, 640
# NYU focal length in pixels at 480x640, as written in the BTS split lists (third column).
NYU_FOCAL = 518.8579
# KITTI focal of the Eigen split lists (2011_09_26 calibration), at full resolution (~375x1242).
KITTI_FOCAL = 721.5377

# KITTI KB crop (Kitti benchmark crop; BTS/NeWCRFs `--do_kb_crop`): a 352x1216 window whose
# bottom edge is the image's bottom edge, centred horizontally:
#   top = H - 352, left = int((W - 1216) / 2).
KB_CROP_HEIGHT, KB_CROP_WIDTH = 352, 1216
# KITTI frame without the KB crop: the 375x1242 frames of the 2011_09_26 drives (the other
# calibration days' frames are 370x1224 to 376x1241). Used only where no KB crop is taken.
KITTI_FULL_FRAME = (375, 1242)
# KITTI training random crop after the KB crop (NeWCRFs/PixelFormer arguments_train_kittieigen).
KITTI_TRAIN_CROP = (352, 1120)

# NYU Eigen evaluation crop on the 480x640 ground truth: rows 45:471, cols 41:601 (end
# exclusive). NeWCRFs newcrfs/eval.py L96-109 (`--eigen_crop`), BTS bts_eval.py.
EIGEN_CROP_NYU = (45, 471, 41, 601)  # (top, bottom, left, right)

# Training-time NYU valid region: NeWCRFs dataloaders/dataloader.py zeroes GT outside
# rows 45:472, cols 43:608 of the 480x640 frame before training (the white border of the
# projected Kinect depth).
NYU_TRAIN_VALID_BOX = (45, 472, 43, 608)
# NYU official test images as BTS extracts them from nyu_depth_v2_labeled.mat
# (utils/extract_official_train_test_set_from_mat.py): the RGB is kept inside rows 7:474,
# cols 7:632 of the 480x640 frame and set to black outside it (the registration border).
NYU_TEST_RGB_BOX = (7, 474, 7, 632)  # (top, bottom, left, right)

# KITTI Garg crop (Garg et al., ECCV 2016) as fractions of the ground-truth size; pixel box is
# int(fraction * size). NeWCRFs eval.py `--garg_crop`.
GARG_CROP_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # (top, bottom, left, right)
# KITTI "eigen crop" variant of the same code path (rarely used).
KITTI_EIGEN_CROP_FRACTIONS = (0.3324324, 0.91351351, 0.0359477, 0.96405229)

# --------------------------------------------------------------------------------------------
# Flip test-time augmentation (NeWCRFs utils.py post_process_depth, after Monodepth):
# the left FLIP_TTA_PURE fraction of columns take the flipped prediction only, the right ones the
# original only, each followed by a linear ramp of the same width, the mean in the middle.
# --------------------------------------------------------------------------------------------
FLIP_TTA_PURE = 0.05

# --------------------------------------------------------------------------------------------
# Augmentation (NeWCRFs/PixelFormer dataloaders/dataloader.py; method.md section 5).
# --------------------------------------------------------------------------------------------
NYU_ROTATE_DEGREES = 2.5
KITTI_ROTATE_DEGREES = 1.0
AUG_PROBABILITY = 0.5
GAMMA_RANGE = (0.9, 1.1)
NYU_BRIGHTNESS_RANGE = (0.75, 1.25)
KITTI_BRIGHTNESS_RANGE = (0.9, 1.1)
COLOUR_RANGE = (0.9, 1.1)
# CutDepth (Ishii & Yamashita 2021), as PixelFormer applies it to every NYU training sample
# (dataloaders/dataloader.py): the pasted rectangle's sides are U(0, 1) * CUTDEPTH_SIZE_FACTOR
# of the room left after its random corner.
CUTDEPTH_SIZE_FACTOR = 0.75

# ImageNet normalisation used by every host (torchvision convention), RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# --------------------------------------------------------------------------------------------
# Optimisation recipe of the hosts: lr_t = (lr0 - lr_end) (1 - t/T)^POLY_POWER + lr_end,
# lr_end = POLY_END_FACTOR * lr0 (NeWCRFs train.py).
# --------------------------------------------------------------------------------------------
POLY_POWER = 0.9
POLY_END_FACTOR = 0.1
NEWCRFS_LR = 2e-5
NEWCRFS_EPOCHS = 50  # NeWCRFs configs/arguments_train_{nyu,kittieigen}.txt num_epochs
PIXELFORMER_LR = 4e-5  # PixelFormer configs/arguments_train_{nyu,kittieigen}.txt learning_rate
PIXELFORMER_EPOCHS = 20  # PixelFormer's training length (NeWCRFs: 50)
# PixelFormer's bin-centre predictor spans (PIXELFORMER_MIN_DEPTH, max_depth): the constructor
# default min_depth=0.1 of `PixelFormer` / `BCP` (networks/PixelFormer.py), which no script
# overrides, so it is 0.1 m for KITTI too (max_depth: NYU_MAX_DEPTH / KITTI_MAX_DEPTH).
PIXELFORMER_MIN_DEPTH = 0.1

# --------------------------------------------------------------------------------------------
# Dataset sizes, to warn when a user's copy differs (shared/notes/peers.md section 2.5).
# --------------------------------------------------------------------------------------------
NYU_TRAIN_COUNT_BTS = 24_231
NYU_TRAIN_COUNT_DENSE = 36_253
NYU_TEST_COUNT = 654
KITTI_EIGEN_TRAIN_COUNT = 23_158
KITTI_EIGEN_TEST_LINES = 697
KITTI_EIGEN_TEST_WITH_GT = 652

# Depth PNG scales: metres = png / scale.
NYU_DEPTH_PNG_SCALE = 1000.0
KITTI_DEPTH_PNG_SCALE = 256.0

# --------------------------------------------------------------------------------------------
# Standard metrics (BTS utils/eval_with_pngs.py compute_errors, NeWCRFs newcrfs/utils.py
# compute_errors; method.md section 5).
# --------------------------------------------------------------------------------------------
# delta_k: fraction of valid pixels with max(g/p, p/g) < DELTA_THRESHOLD ** k, k = 1, 2, 3.
DELTA_THRESHOLD = 1.25
# SILog metric: SILOG_METRIC_SCALE * sqrt(mean(e^2) - mean(e)^2), e = log p - log g.
SILOG_METRIC_SCALE = 100.0

# --------------------------------------------------------------------------------------------
# Edge metrics (method.md section 6).
# --------------------------------------------------------------------------------------------
# Hu et al. (ICCV 2019) Sobel depth-edge thresholds, on unnormalised Sobel magnitudes of depth in
# metres at the reference width below (NYU maps of about 228x304, Hu et al.'s evaluation size).
EDGE_THRESHOLDS = (0.25, 0.5, 1.0)
# Ours (issue 29): the thresholds scale with the map's width W as t * EDGE_REFERENCE_WIDTH / W,
# so a slanted surface is an "edge" or not independently of the resolution (a per-pixel depth
# change shrinks as 1 / W); at the reference width they are Hu et al.'s numbers.
EDGE_REFERENCE_WIDTH = 304
# Continuity metrics (issue 29, `evaluators/continuity.py`): the ViT recipes' patch size for
# seam_ratio, and the relative inverse-depth curvature that marks a ground-truth discontinuity.
CONTINUITY_PATCH = 16
CONTINUITY_DISC_REL = 0.05
# seam_ratio's floor on both mean steps, relative to the image's mean depth (0.1%).
CONTINUITY_SEAM_FLOOR_REL = 1e-3
# Depth Pro scale-invariant boundary F1: thresholds linspace(1.05, 1.25, 10), weights ~ t.
BOUNDARY_F1_T_MIN, BOUNDARY_F1_T_MAX, BOUNDARY_F1_NUM = 1.05, 1.25, 10
# Depth Pro invert_depth: inverse depth = 1 / max(depth, BOUNDARY_F1_DEPTH_EPS).
BOUNDARY_F1_DEPTH_EPS = 1e-6

# --------------------------------------------------------------------------------------------
# Published numbers (method.md section 5), for report tables. abs_rel / rmse / d1.
# --------------------------------------------------------------------------------------------
PUBLISHED = {
    "nyu": {
        "NeWCRFs (paper)": {"abs_rel": 0.095, "rmse": 0.334, "d1": 0.922},
        "NeWCRFs (released ckpt)": {"abs_rel": 0.0952, "rmse": 0.3310, "d1": 0.923},
        "PixelFormer (paper)": {"abs_rel": 0.090, "rmse": 0.322, "d1": 0.929},
        "BTS DenseNet-161": {"abs_rel": 0.110, "rmse": 0.392, "d1": 0.885},
    },
    "kitti": {
        "NeWCRFs (paper)": {"abs_rel": 0.052, "rmse": 2.129, "d1": 0.974},
        "NeWCRFs (released ckpt)": {"abs_rel": 0.0520, "rmse": 2.0716, "d1": 0.975},
        "PixelFormer (paper)": {"abs_rel": 0.051, "rmse": 2.081, "d1": 0.976},
        "BTS DenseNet-161": {"abs_rel": 0.060, "rmse": 2.798, "d1": 0.955},
    },
}

# The protocols under which the PUBLISHED numbers were measured (NeWCRFs/PixelFormer eval.py with
# their arguments_eval_*.txt; shared/notes/peers.md section 2.1). Reports put the published
# numbers beside ours only when an evaluation matches one of these exactly. BTS's KITTI row was
# measured on the full-resolution GT without flip TTA; the report says so in a note.
STANDARD_PROTOCOLS = {
    "nyu": {
        "split": "test",
        "crop": "eigen",
        "kb_crop": False,
        "min_depth": MIN_DEPTH_EVAL,
        "max_depth": NYU_MAX_DEPTH,
        "flip_tta": "blend",
        "resize": "none",  # the 480x640 frame as read (their eval dataloaders never resize)
        "num_images": NYU_TEST_COUNT,
    },
    "kitti": {
        "split": "test",
        "crop": "garg",
        "kb_crop": True,
        "min_depth": MIN_DEPTH_EVAL,
        "max_depth": KITTI_MAX_DEPTH,
        "flip_tta": "blend",
        "resize": "none",  # the KB-cropped 352x1216 frame as read
        "num_images": KITTI_EIGEN_TEST_WITH_GT,
    },
}

# --------------------------------------------------------------------------------------------
# Depth Anything V2 metric fine-tuning (DepthAnything/Depth-Anything-V2 a561b84,
# metric_depth/train.py, dist_train.sh, util/loss.py, dataset/*.py).
# --------------------------------------------------------------------------------------------
DA2_ENCODER_LR = 5e-6  # --lr: the DINOv2 encoder ("pretrained" parameters)
DA2_HEAD_LR_SCALE = 10.0  # everything else (the DPT head) at 10x --lr
DA2_WEIGHT_DECAY = 0.01  # AdamW(betas=(0.9, 0.999), weight_decay=0.01)
DA2_POLY_END_FACTOR = 0.0  # lr * (1 - iters / total_iters) ** 0.9: down to 0, no warm-up
DA2_SILOG_LAMBDA = 0.5  # SiLogLoss(lambd=0.5)
DA2_MIN_DEPTH_LOSS = 1e-3  # --min-depth: loss on min_depth <= gt <= max_depth
DA2_CROP = 518  # --img-size: resize keeping aspect to >= 518 (multiples of 14), random crop
DA2_PATCH = 14  # DINOv2 patch; every model input side is a multiple of it
DA2_BATCH = 32  # --bs 4 on 8 GPUs (dist_train.sh)

# Depth Anything V1's metric fine-tunes (ViT-L encoder, ZoeDepth head) on NYU / KITTI,
# LiheYoung/Depth-Anything 1d03336 metric_depth/README.md; the V2 paper's NYU / KITTI rows come
# from the same kind of fine-tune (not released). Shown beside the Depth Anything V2 recipes'
# numbers, whose recipe (metric_depth/ of V2 applied to NYU / KITTI) is ours.
REFERENCE_NUMBERS = {
    "depth_anything_v1_metric": {
        "nyu": {"Depth Anything V1 metric (ViT-L)": {"abs_rel": 0.056, "rmse": 0.206, "d1": 0.984}},
        "kitti": {
            "Depth Anything V1 metric (ViT-L)": {"abs_rel": 0.046, "rmse": 1.896, "d1": 0.982}
        },
    },
}
