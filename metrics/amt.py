"""AMT-S (Li et al., CVPR 2023, "AMT: All-Pairs Multi-Field Transforms for Efficient Frame
Interpolation"): the frame interpolator of VBench's motion smoothness.

Given two frames and a time ``embt`` in (0, 1), the network predicts the frame in between:

1. a RAFT-style feature encoder (1/8 resolution, instance norm) builds an all-pairs correlation
   volume between the two frames, pooled into a 4-level pyramid;
2. a 4-level IFRNet-style context pyramid of each frame (1/2 .. 1/16) feeds coarse-to-fine
   decoders that predict the flows from time t to frame 0 and to frame 1 plus a feature of the
   intermediate frame; after the decoders at 1/8, 1/4 and 1/2 an update block looks the flows up
   in the correlation pyramid (a 7x7 window per level) and refines flows and feature;
3. the last decoder outputs 3 flow pairs ("multi-field") at full resolution, each with a blend
   mask and an RGB residual; the 3 candidate frames are averaged and corrected by a small conv.

Parameter names and shapes are those of the official ``amt-s.pth`` (AMT release, also what VBench
downloads), a torch file holding ``{"state_dict": <state dict>}``; :func:`load_amt_s` loads it
strictly. Only the evaluation path at ``scale_factor=1.0`` exists here: VBench's scale is 1 on
CPU, and on GPU whenever H*W <= 1024*512*sqrt((VRAM - 2500 MiB) / 1500 MiB) (about 1 MP on an
8 GiB card, 2 MP on 24 GiB), i.e. for every VBench video size; it never downscales those.

What changes numbers (float32 CPU: bitwise equal to the reference at the same batch size):

- Each pair is centred by its own scalar mean over both frames (channel, then rows, then columns)
  before everything, and the mean is added back to every warped candidate frame.
- Correlation is ``f0^T f1 / sqrt(84)``; the pyramid is 2x2 average pooling; lookups are bilinear
  ``grid_sample`` (zero padding, align_corners=True) at ``coords / 2**level + offset``, where the
  first offset axis (the slower one in the 49 channels) moves x, the second y (RAFT's layout).
- The lookup points are ``grid + flow_t1 / t`` for frame 0's volume and ``grid + flow_t0 / (1-t)``
  for the transposed one (flows t->1 and t->0 rescaled to 0->1 and 1->0, linear motion).
- Flows coarser than 1/8 are brought to 1/8 by bilinear resizing (align_corners=False) and
  multiplying by the scale; update outputs are resized back the same way.
- Warping is bilinear ``grid_sample`` with border padding and align_corners=True on the grid
  ``linspace(-1, 1, W) + flow_x / ((W-1)/2)`` (likewise y).
- The output is clamped to [0, 1].
- The network amplifies float32 rounding: with random weights, other kernels (batch size, thread
  count, float64) move outputs by ~2e-5. VBench runs one pair per call, and so does
  :meth:`AmtS.forward` (a loop), which makes batches bitwise equal to one pair at a time.
- Every side must be a multiple of 16 (the caller pads; VBench pads replicating edges to the next
  multiple of 16) and at least :data:`MIN_SIDE`: with fewer than 128 pixels the coarsest
  correlation level is 1 pixel wide, the lookup normalisation divides by zero and the reference
  returns NaN. Callers must refuse or upscale such frames; :class:`AmtS` raises ValueError.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_FILENAME = "amt-s.pth"
WEIGHTS_URL = "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"
MIN_SIDE = 128  # padded height and width below this make the coarsest correlation level 1 pixel: NaN
MULTIPLE = 16  # the context pyramid halves the frame 4 times

PYRAMID = (20, 32, 44, 56)  # context channels at 1/2, 1/4, 1/8, 1/16
SKIP = 20  # channels of the side branch in each decoder's residual block
NUM_FLOWS = 3
CORR_LEVELS = 4
CORR_RADIUS = 3
CORR_DIM = 84  # feature encoder output channels


def _conv_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.PReLU(cout))


def _resize(x: Tensor, scale: float) -> Tensor:
    # scale_factor (not size) sets the sampling positions; with powers of two they coincide anyway
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def _warp(image: Tensor, flow: Tensor) -> Tensor:
    """``image`` sampled at ``x + flow(x)`` (bilinear, edge pixels repeat outside the frame)."""
    _, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w).to(image).view(1, 1, w)
    ys = torch.linspace(-1.0, 1.0, h).to(image).view(1, h, 1)
    gx = xs + flow[:, 0] / ((w - 1.0) / 2.0)
    gy = ys + flow[:, 1] / ((h - 1.0) / 2.0)
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)


class Bottleneck(nn.Module):
    """Bottleneck (1x1, 3x3, 1x1 convs, each instance-normed without affine parameters, then ReLU)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout // 4, 1)
        self.conv2 = nn.Conv2d(cout // 4, cout // 4, 3, stride, 1)
        self.conv3 = nn.Conv2d(cout // 4, cout, 1)
        self.downsample = None
        if stride != 1:  # the shortcut is normalised too
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.InstanceNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(F.instance_norm(self.conv1(x)))
        y = F.relu(F.instance_norm(self.conv2(y)))
        y = F.relu(F.instance_norm(self.conv3(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + y)


class FeatureEncoder(nn.Module):
    """Frame -> 84-channel features at 1/8 resolution, for the correlation volume."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3)
        self.layer1 = nn.Sequential(Bottleneck(32, 32, 1), Bottleneck(32, 32, 1))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, 2), Bottleneck(64, 64, 1))
        self.layer3 = nn.Sequential(Bottleneck(64, 96, 2), Bottleneck(96, 96, 1))
        self.conv2 = nn.Conv2d(96, CORR_DIM, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(F.instance_norm(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class ContextEncoder(nn.Module):
    """Frame -> features at 1/2, 1/4, 1/8, 1/16 (two conv+PReLU per level, the first strided)."""

    def __init__(self) -> None:
        super().__init__()
        for level, (cin, cout) in enumerate(zip((3,) + PYRAMID[:-1], PYRAMID), 1):
            block = nn.Sequential(_conv_prelu(cin, cout, 3, 2), _conv_prelu(cout, cout))
            self.register_module(f"pyramid{level}", block)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in range(1, len(PYRAMID) + 1):
            x = getattr(self, f"pyramid{level}")(x)
            features.append(x)
        return features


class SideResBlock(nn.Module):
    """Residual block whose last ``side`` channels get an extra conv after each of two convs."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv1 = _conv_prelu(channels, channels)
        self.conv2 = _conv_prelu(side, side)
        self.conv3 = _conv_prelu(channels, channels)
        self.conv4 = _conv_prelu(side, side)
        self.conv5 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu = nn.PReLU(channels)

    def _side(self, x: Tensor, conv: nn.Module) -> Tensor:
        return torch.cat([x[:, :-self.side], conv(x[:, -self.side:])], 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3(self._side(self.conv1(x), self.conv2))
        y = self.conv5(self._side(y, self.conv4))
        return self.prelu(x + y)


class Decoder(nn.Module):
    """conv+PReLU, side residual block, then a 2x transposed conv: one level up the pyramid."""

    def __init__(self, cin: int, width: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(_conv_prelu(cin, width), SideResBlock(width, SKIP),
                                       nn.ConvTranspose2d(width, cout, 4, 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.convblock(x)


class UpdateBlock(nn.Module):
    """Correlation + flow + feature -> residuals of feature and both flows (RAFT's small update,
    without recurrence). ``scale`` > 1: the decoder runs finer than the 1/8 correlation grid, so
    the block works at 1/8 and its outputs are upsampled."""

    def __init__(self, feature_dim: int, scale: int = 1) -> None:
        super().__init__()
        hidden, corr_planes = 76, 2 * CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.scale = scale
        self.convc1 = nn.Conv2d(corr_planes, 64, 1)
        self.convf1 = nn.Conv2d(4, 40, 7, padding=3)
        self.convf2 = nn.Conv2d(40, 20, 3, padding=1)
        self.conv = nn.Conv2d(64 + 20, 68, 3, padding=1)

        def head(cin: int, cout: int) -> nn.Sequential:  # index 1 is the activation, as in the file
            return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(hidden, cout, 3, padding=1))

        self.gru = head(68 + 4 + feature_dim, hidden)  # named gru in the file; plain convs
        self.feat_head = head(hidden, feature_dim)
        self.flow_head = head(hidden, 4)

    def forward(self, feature: Tensor, flow: Tensor, corr: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale != 1:
            feature = _resize(feature, 1 / self.scale)
        c = F.leaky_relu(self.convc1(corr), 0.1)
        f = F.leaky_relu(self.convf2(F.leaky_relu(self.convf1(flow), 0.1)), 0.1)
        x = F.leaky_relu(self.conv(torch.cat([c, f], 1)), 0.1)
        x = self.gru(torch.cat([x, flow, feature], 1))
        d_feature, d_flow = self.feat_head(x), self.flow_head(x)
        if self.scale != 1:
            d_feature = _resize(d_feature, self.scale)
            d_flow = self.scale * _resize(d_flow, self.scale)
        return d_feature, d_flow


class CorrPyramid:
    """All-pairs correlation of two 1/8 feature maps, both ways, pooled ``CORR_LEVELS`` times."""

    def __init__(self, fmap0: Tensor, fmap1: Tensor) -> None:
        b, d, h, w = fmap0.shape
        corr = torch.matmul(fmap0.view(b, d, h * w).transpose(1, 2), fmap1.view(b, d, h * w))
        corr = corr / torch.tensor(float(d)).sqrt()  # float32 sqrt, as the reference divides
        # forward: for each pixel of frame 0 a map over frame 1; backward: the transpose
        self.forward_levels = [corr.reshape(b * h * w, 1, h, w)]
        self.backward_levels = [corr.transpose(1, 2).reshape(b * h * w, 1, h, w)]
        for _ in range(CORR_LEVELS - 1):
            self.forward_levels.append(F.avg_pool2d(self.forward_levels[-1], 2, 2))
            self.backward_levels.append(F.avg_pool2d(self.backward_levels[-1], 2, 2))
        r = torch.arange(-CORR_RADIUS, CORR_RADIUS + 1, dtype=fmap0.dtype, device=fmap0.device)
        # offsets[i, j] = (r[i], r[j]) added to (x, y): the slower window axis moves x
        self.offsets = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).view(1, len(r), len(r), 2)

    @staticmethod
    def _sample(volume: Tensor, points: Tensor) -> Tensor:
        h, w = volume.shape[-2:]
        x, y = points.split(1, -1)
        grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], -1)  # w == 1 gives inf/NaN
        return F.grid_sample(volume, grid, align_corners=True)

    def lookup(self, coords0: Tensor, coords1: Tensor) -> Tensor:
        """Windows around ``coords0`` in the forward and ``coords1`` in the backward volume,
        (B, 2 * levels * 49, h, w); coords are pixel (x, y) at 1/8, shaped (B, 2, h, w)."""
        b, _, h, w = coords0.shape
        out = []
        for levels, coords in ((self.forward_levels, coords0), (self.backward_levels, coords1)):
            centres = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
            for i, volume in enumerate(levels):
                out.append(self._sample(volume, centres / 2**i + self.offsets).view(b, h, w, -1))
        return torch.cat(out, -1).permute(0, 3, 1, 2).contiguous()


class AmtS(nn.Module):
    """AMT-S: ``forward(img0, img1, embt)`` -> the frame at time ``embt`` between them.

    Frames are float (B, 3, H, W) RGB in [0, 1] with H and W multiples of 16, at least 128
    (pad first); ``embt`` is a float or a tensor of 1 or B values in (0, 1) (VBench: 0.5).
    Each pair is computed independently of the others in the batch.
    """

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4 = PYRAMID
        self.feat_encoder = FeatureEncoder()
        self.encoder = ContextEncoder()
        self.decoder4 = Decoder(2 * c4 + 1, 2 * c4, c3 + 4)  # input: both 1/16 features and t
        self.decoder3 = Decoder(3 * c3 + 4, 3 * c3, c2 + 4)  # input: feature, 2 warped features, 2 flows
        self.decoder2 = Decoder(3 * c2 + 4, 3 * c2, c1 + 4)
        self.decoder1 = Decoder(3 * c1 + 4, 3 * c1, 8 * NUM_FLOWS)  # flows 2+2, mask 1, RGB 3 per field
        self.update4 = UpdateBlock(c3)  # at 1/8: the correlation grid
        self.update3 = UpdateBlock(c2, 2)  # at 1/4
        self.update2 = UpdateBlock(c1, 4)  # at 1/2
        self.comb_block = nn.Sequential(nn.Conv2d(3 * NUM_FLOWS, 6 * NUM_FLOWS, 3, 1, 1), nn.PReLU(6 * NUM_FLOWS),
                                        nn.Conv2d(6 * NUM_FLOWS, 3, 3, 1, 1))

    @staticmethod
    def _refine(update: UpdateBlock, corr: CorrPyramid, grid: Tensor, t: Tensor,
                flow0: Tensor, flow1: Tensor, feature: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One correlation lookup + update at the resolution 1/8 * 1/update.scale."""
        if update.scale != 1:  # flows to the 1/8 grid, in 1/8 pixels
            flow0 = 1 / update.scale * _resize(flow0, 1 / update.scale)
            flow1 = 1 / update.scale * _resize(flow1, 1 / update.scale)
        # flow t->1 scaled by 1/t is 0->1 (frame 0's volume); t->0 scaled by 1/(1-t) is 1->0
        corr_feat = corr.lookup(grid + flow1 * (1.0 / t), grid + flow0 * (1.0 / (1.0 - t)))
        d_feature, d_flow = update(feature, torch.cat([flow0, flow1], 1), corr_feat)
        return d_feature, d_flow[:, :2], d_flow[:, 2:]

    def forward(self, img0: Tensor, img1: Tensor, embt: Tensor | float) -> Tensor:
        b, _, h, w = img0.shape
        if img1.shape != img0.shape or h % MULTIPLE or w % MULTIPLE or min(h, w) < MIN_SIDE:
            raise ValueError(f"AMT-S needs two frames of one shape (B, 3, H, W), H and W multiples of {MULTIPLE} "
                             f"and >= {MIN_SIDE}; got {tuple(img0.shape)} and {tuple(img1.shape)}")
        t = torch.as_tensor(embt, dtype=img0.dtype, device=img0.device).reshape(-1, 1, 1, 1).expand(b, 1, 1, 1)
        # One pair at a time, as VBench calls it: convolution kernels round differently for other
        # batch sizes, and this network amplifies float32 rounding (~2e-5 at the output with random
        # weights), so only per-pair calls are batch-invariant and bitwise equal to VBench's.
        return torch.cat([self._interpolate(img0[i:i + 1], img1[i:i + 1], t[i:i + 1]) for i in range(b)])

    def _interpolate(self, img0: Tensor, img1: Tensor, t: Tensor) -> Tensor:
        """The network on a batch (B, 3, H, W) with t (B, 1, 1, 1); see :meth:`forward`."""
        b, _, h, w = img0.shape
        # per-pair scalar mean over both frames, reduced as the reference does (C, then H, then W)
        mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean, img1 - mean

        fmap0, fmap1 = self.feat_encoder(torch.cat([img0, img1])).split(b)
        corr = CorrPyramid(fmap0, fmap1)
        ys, xs = torch.meshgrid(torch.arange(h // 8, device=img0.device), torch.arange(w // 8, device=img0.device),
                                indexing="ij")
        grid = torch.stack([xs, ys]).to(img0.dtype).expand(b, 2, h // 8, w // 8)  # pixel (x, y) at 1/8
        ctx0, ctx1 = self.encoder(img0), self.encoder(img1)

        # 1/16 -> 1/8: flows t->0, t->1 and the intermediate frame's feature
        out = self.decoder4(torch.cat([ctx0[3], ctx1[3], t.expand(b, 1, h // 16, w // 16)], 1))
        flow0, flow1, feature = out[:, :2], out[:, 2:4], out[:, 4:]
        for update, decoder, level in ((self.update4, self.decoder3, 2), (self.update3, self.decoder2, 1),
                                       (self.update2, self.decoder1, 0)):
            d_feature, d_flow0, d_flow1 = self._refine(update, corr, grid, t, flow0, flow1, feature)
            flow0, flow1, feature = flow0 + d_flow0, flow1 + d_flow1, feature + d_feature
            out = decoder(torch.cat([feature, _warp(ctx0[level], flow0), _warp(ctx1[level], flow1), flow0, flow1], 1))
            # decoders predict residuals over the 2x upsampled flows (last one: one per field)
            up0, up1 = 2.0 * _resize(flow0, 2.0), 2.0 * _resize(flow1, 2.0)
            if level > 0:
                flow0, flow1, feature = out[:, :2] + up0, out[:, 2:4] + up1, out[:, 4:]
        n = NUM_FLOWS
        d_flow0, d_flow1, mask, residual = out.split([2 * n, 2 * n, n, 3 * n], 1)
        flow0 = d_flow0 + up0.repeat(1, n, 1, 1)
        flow1 = d_flow1 + up1.repeat(1, n, 1, 1)
        return self._combine(img0, img1, mean, flow0, flow1, torch.sigmoid(mask), residual).clamp(0, 1)

    def _combine(self, img0: Tensor, img1: Tensor, mean: Tensor, flow0: Tensor, flow1: Tensor,
                 mask: Tensor, residual: Tensor) -> Tensor:
        """Warp both (centred) frames with each field's flows, blend by its mask, add the mean and
        its residual; average the fields and add a conv correction computed from all of them."""
        b, _, h, w = img0.shape
        n = NUM_FLOWS

        def per_field(x: Tensor) -> Tensor:  # (B, ...) -> (B*n, ...), each pair repeated n times
            return x.unsqueeze(1).expand(b, n, *x.shape[1:]).reshape(b * n, *x.shape[1:])

        warped0 = _warp(per_field(img0), flow0.reshape(b * n, 2, h, w))
        warped1 = _warp(per_field(img1), flow1.reshape(b * n, 2, h, w))
        m = mask.reshape(b * n, 1, h, w)
        fields = m * warped0 + (1 - m) * warped1 + per_field(mean) + residual.reshape(b * n, 3, h, w)
        fields = fields.view(b, n, 3, h, w)
        return fields.mean(1) + self.comb_block(fields.view(b, n * 3, h, w))


def amt_s_template() -> dict[str, dict[str, Tensor]]:
    """The official file's layout, ``{"state_dict": ...}``, filled with a fresh module's tensors."""
    return {"state_dict": AmtS().state_dict()}


def _hint() -> str:
    return (f"expected {WEIGHTS_FILENAME} from the AMT release ({WEIGHTS_URL}), "
            "a torch file holding {'state_dict': ...}")


def load_amt_s(path: str | Path, device: str | torch.device = "cpu") -> AmtS:
    """AMT-S from ``amt-s.pth`` (strictly, eval mode, on ``device``); never downloads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AMT-S weights not found at {path}; {_hint()}")
    try:
        container = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean: not the file we want
        raise ValueError(f"{path} is not a torch file loadable with weights_only=True ({exc}); {_hint()}") from exc
    if not isinstance(container, dict) or not isinstance(container.get("state_dict"), dict):
        if not isinstance(container, dict):
            found = type(container).__name__
        elif container and all(isinstance(v, Tensor) for v in container.values()):
            found = f"a bare state dict of {len(container)} tensors, not wrapped in {{'state_dict': ...}}"
        else:
            found = f"keys {sorted(map(str, container))[:5]}"
        raise ValueError(f"{path} has no 'state_dict' entry (found {found}); {_hint()}")
    state = container["state_dict"]
    model = AmtS()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not match AMT-S: {len(missing)} missing keys {missing[:5]}, "
                         f"{len(unexpected)} unexpected keys {unexpected[:5]}; {_hint()}")
    wrong = [f"{k} {tuple(getattr(state[k], 'shape', ()))} (want {tuple(v.shape)})" for k, v in expected.items()
             if not isinstance(state[k], Tensor) or state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path} does not match AMT-S: {len(wrong)} tensors of the wrong shape, e.g. {wrong[:3]}; "
                         f"{_hint()}")
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
